"""A linear-chain CRF over BIOUL tags, many independent chains at once.

Each chain (one per label and nesting level, see ``spans.bioul``) is its own 5-tag CRF, so
entities of different labels may overlap. Hard BIOUL constraints (forbidden transitions,
first and last tags, from ``spans.bioul``'s table) are applied on top of learnable transition
scores. Everything is in log space and vectorised over documents x chains. The recursions
over time (forward, backward, Viterbi and its backtrace) are scans of 5 x 5 matrices in a
semiring: step by step on the CPU, where a step costs microseconds, and in blocks of about
sqrt(T) steps on a GPU, where every step is a kernel launch (about 3 sqrt(T) sequential steps
instead of T).

Shapes used throughout (letters that are never tag names):
    N: documents in the batch, T: tokens (padded), C: chains, K = 5 tags.
    emissions: [N, T, C, K] float,  mask: [N, T] bool (right padded),  tags: [N, T, C] long.
"""
import math
from typing import Tuple

import torch
from torch import nn

from ..spans.bioul import ALLOWED_FIRST, ALLOWED_LAST, ALLOWED_NEXT, ALLOWED_UNDER, NUM_TAGS, Tag

# Score given to a forbidden transition where gradients flow (training, marginals). A finite
# value keeps log-sum-exp free of NaN gradients; exp(-1e4) is exactly 0 in float32/64.
# Viterbi uses -inf instead, so a forbidden path can never be decoded.
FORBIDDEN = -1e4


def nesting_constraints() -> torch.Tensor:
    """allowed[above, tag]: whether a level k tag may sit under a level k-1 tag [K, K]."""
    allowed = torch.zeros(NUM_TAGS, NUM_TAGS, dtype=torch.bool)
    for above, tags in ALLOWED_UNDER.items():
        allowed[above, list(tags)] = True
    return allowed


def bioul_constraints() -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Boolean masks of the allowed transitions [K, K], first tags [K] and last tags [K]."""
    transitions = torch.zeros(NUM_TAGS, NUM_TAGS, dtype=torch.bool)
    for src, dsts in ALLOWED_NEXT.items():
        transitions[src, list(dsts)] = True
    first = torch.zeros(NUM_TAGS, dtype=torch.bool)
    first[list(ALLOWED_FIRST)] = True
    last = torch.zeros(NUM_TAGS, dtype=torch.bool)
    last[list(ALLOWED_LAST)] = True
    return transitions, first, last


class BIOULCRF(nn.Module):
    """One BIOUL linear-chain CRF per chain, batched over documents and chains."""

    allowed: torch.Tensor  # buffers (register_buffer): typed for the checker
    allowed_start: torch.Tensor
    allowed_end: torch.Tensor

    def __init__(self, num_chains: int, learnable_transitions: bool = True, scan_mode: str = "auto"):
        super().__init__()
        if scan_mode not in SCAN_MODES:
            raise ValueError(f"scan_mode must be one of {SCAN_MODES}, got {scan_mode!r}")
        self.num_chains = num_chains
        self.learnable_transitions = learnable_transitions
        # How the recursions over time run (see `scan`): "auto" picks by device.
        self.scan_mode = scan_mode
        allowed, allowed_start, allowed_end = bioul_constraints()
        self.register_buffer("allowed", allowed, persistent=False)
        self.register_buffer("allowed_start", allowed_start, persistent=False)
        self.register_buffer("allowed_end", allowed_end, persistent=False)
        # transitions[c, i, j]: score of tag i followed by tag j in chain c.
        shape = (num_chains, NUM_TAGS, NUM_TAGS)
        if learnable_transitions:
            self.transitions = nn.Parameter(torch.zeros(shape))
            self.start_scores = nn.Parameter(torch.zeros(num_chains, NUM_TAGS))
            self.end_scores = nn.Parameter(torch.zeros(num_chains, NUM_TAGS))
        else:
            self.register_buffer("transitions", torch.zeros(shape))
            self.register_buffer("start_scores", torch.zeros(num_chains, NUM_TAGS))
            self.register_buffer("end_scores", torch.zeros(num_chains, NUM_TAGS))

    def constrained_scores(
        self, forbidden: float = FORBIDDEN, chains: slice = slice(None)
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Transition [C, K, K], start [C, K] and end [C, K] scores with constraints applied
        (for the chains selected by ``chains``)."""
        trans = self.transitions[chains].masked_fill(~self.allowed, forbidden)
        start = self.start_scores[chains].masked_fill(~self.allowed_start, forbidden)
        end = self.end_scores[chains].masked_fill(~self.allowed_end, forbidden)
        return trans, start, end

    # ------------------------------------------------------------------ scoring
    def log_partition(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """log Z for each chain: [N, C]."""
        trans, start, end = self.constrained_scores()
        steps = step_matrices(trans, emissions, mask)  # [T-1, N, C, K, K]
        last = scan(start + emissions[:, 0], steps, _logsumexp, self.scan_mode, keep_all=False)
        return torch.logsumexp(last + end, dim=-1)

    def path_score(
        self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """Unnormalised score of the given tag paths: [N, C]."""
        trans, start, end = self.constrained_scores()
        n_batch, n_time, n_chains, _ = emissions.shape
        maskf = mask.to(emissions.dtype)  # [N, T]
        # Emission of the gold tag at every position: [N, T, C]
        em = emissions.gather(-1, tags.unsqueeze(-1)).squeeze(-1)
        score = (em * maskf[:, :, None]).sum(1)  # [N, C]
        chains = torch.arange(n_chains, device=emissions.device)
        score = score + start[chains, tags[:, 0]]
        if n_time > 1:
            # trans[c, tags[t-1], tags[t]] for t >= 1: [N, T-1, C]
            step = trans[chains, tags[:, :-1], tags[:, 1:]]
            score = score + (step * maskf[:, 1:, None]).sum(1)
        last = (mask.sum(1) - 1).clamp(min=0)  # [N]
        last_tags = tags[torch.arange(n_batch, device=tags.device), last]  # [N, C]
        return score + end[chains, last_tags]

    def nll(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Negative log-likelihood of the gold paths: [N, C] (0 for empty documents)."""
        nonempty = mask[:, :1].to(emissions.dtype)  # [N, 1]
        return (self.log_partition(emissions, mask) - self.path_score(emissions, tags, mask)) * nonempty

    # --------------------------------------------------------- forward-backward
    def forward_backward(
        self, emissions: torch.Tensor, mask: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """alphas [N, T, C, K], betas [N, T, C, K] and log Z [N, C].

        alpha[b, t, l, k]: log-sum of all paths ending in tag k at t (emission included);
        beta[b, t, l, k]: log-sum of all continuations after tag k at t (``end`` from a
        document's last token on).
        """
        trans, start, end = self.constrained_scores()
        n_batch, _, n_chains, _ = emissions.shape
        steps = step_matrices(trans, emissions, mask)  # [T-1, N, C, K, K]
        alphas = scan(start + emissions[:, 0], steps, _logsumexp, self.scan_mode)
        # Backwards: beta_t = steps_t (x) beta_t+1, i.e. a forward scan over the reversed,
        # transposed steps.
        rev = steps.flip(0).transpose(-1, -2)
        betas = scan(end.expand(n_batch, n_chains, NUM_TAGS), rev, _logsumexp,
                     self.scan_mode).flip(0)
        log_z = torch.logsumexp(alphas[-1] + end, dim=-1)
        return alphas.transpose(0, 1), betas.transpose(0, 1), log_z

    def log_marginals(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """log P(tag at t = k) for each chain: [N, T, C, K] (meaningless where mask is False)."""
        alphas, betas, log_z = self.forward_backward(emissions, mask)
        return alphas + betas - log_z[:, None, :, None]

    # ------------------------------------------------------------------ decoding
    def viterbi(
        self, emissions: torch.Tensor, mask: torch.Tensor, chains: slice = slice(None)
    ) -> torch.Tensor:
        """Best valid tag path for each chain: [N, T, C] (O on padding).

        ``chains`` selects the chains whose scores to use when ``emissions`` holds only some
        of them (one nesting level at a time). Emissions may be -inf for forbidden tags, as
        long as O stays allowed.
        """
        trans, start, end = self.constrained_scores(forbidden=float("-inf"), chains=chains)
        steps = step_matrices(trans, emissions, mask)  # [T-1, N, C, K, K]
        # delta[t, b, l, k]: score of the best path ending in tag k at t.
        deltas = scan(start + emissions[:, 0], steps, _max, self.scan_mode)  # [T, N, C, K]
        # Best predecessor of each tag, all steps at once; on padding each tag points to
        # itself (the identity step), so the backtrace passes through.
        back = (deltas[:-1, ..., None] + steps).max(dim=-2).indices  # [T-1, N, C, K]
        last = (deltas[-1] + end).argmax(dim=-1)  # [N, C]
        tags = backtrack(last, back, self.scan_mode).transpose(0, 1)  # [N, T, C]
        return tags.masked_fill(~mask[:, :, None], Tag.O)

    def span_log_probs(
        self,
        emissions: torch.Tensor,
        alphas: torch.Tensor,
        betas: torch.Tensor,
        log_z: torch.Tensor,
        spans: torch.Tensor,
    ) -> torch.Tensor:
        """log P(the chain tags exactly this span) for spans [S, 4] = (doc, chain, start, end),
        ``end`` exclusive (as ``spans.bioul.decode_tags`` gives them).

        A one-token span is the marginal of U; a longer one is the probability of the path
        B I* L over its tokens, from the forward-backward scores.
        """
        trans, _, _ = self.constrained_scores()
        if spans.numel() == 0:
            return emissions.new_zeros((0,))
        doc, chain, start, end = spans.unbind(-1)
        last = end - 1
        n_inside = last - start  # tokens after the first one
        single = alphas[doc, start, chain, Tag.U] + betas[doc, start, chain, Tag.U]
        # Sum of I emissions strictly inside the span, via a cumulative sum over time.
        cum_i = emissions[..., Tag.I].cumsum(dim=1)  # [N, T, C]
        inner = cum_i[doc, (last - 1).clamp(min=0), chain] - cum_i[doc, start, chain]
        inner = torch.where(n_inside >= 2, inner, torch.zeros_like(inner))
        n_inner = (n_inside - 1).clamp(min=0).to(emissions.dtype)
        trans_path = torch.where(
            n_inside >= 2,
            trans[chain, Tag.B, Tag.I]
            + (n_inner - 1).clamp(min=0) * trans[chain, Tag.I, Tag.I]
            + trans[chain, Tag.I, Tag.L],
            trans[chain, Tag.B, Tag.L],
        )
        multi = (
            alphas[doc, start, chain, Tag.B]
            + inner
            + trans_path
            + emissions[doc, last, chain, Tag.L]
            + betas[doc, last, chain, Tag.L]
        )
        return torch.where(n_inside == 0, single, multi) - log_z[doc, chain]


# ------------------------------------------------------------------------------- scans
# A step of the recursion over time is a product in a semiring: (log-sum-exp, +) for the
# forward and backward algorithms, (max, +) for Viterbi. Writing the step from t-1 to t as a
# [K, K] matrix (transition + emission of the destination tag) makes the recursion a chain of
# matrix products, which can be regrouped: that is what the blocked scan does.
SCAN_MODES = ("auto", "sequential", "blocked")


def _logsumexp(x: torch.Tensor, dim: int) -> torch.Tensor:
    return torch.logsumexp(x, dim=dim)


def _max(x: torch.Tensor, dim: int) -> torch.Tensor:
    return x.amax(dim=dim)


def identity_step(like: torch.Tensor) -> torch.Tensor:
    """The identity of both semirings [K, K]: 0 on the diagonal, -inf elsewhere.

    Only padding steps are identities, and a product of identities is the only place a row
    can be all -inf; its (NaN) gradient lands on the padding, which ``torch.where`` cuts off.
    """
    eye = like.new_full((NUM_TAGS, NUM_TAGS), float("-inf"))
    return eye.fill_diagonal_(0.0)


def step_matrices(trans: torch.Tensor, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The step from t-1 to t as a matrix, for t >= 1, time first: [T-1, N, C, K_from, K_to].

    ``trans[l, i, j] + emissions[b, t, l, j]`` on real tokens; the identity on padding, so
    that the scores of a document stay those of its last token. Time first keeps each step
    contiguous for the loops below.
    """
    em = emissions[:, 1:].transpose(0, 1)  # [T-1, N, C, K]
    steps = trans + em[..., None, :]
    keep = mask[:, 1:].transpose(0, 1)[..., None, None, None]  # [T-1, N, 1, 1, 1]
    return torch.where(keep, steps, identity_step(steps)).contiguous()


def _vec_mat(x: torch.Tensor, m: torch.Tensor, reduce) -> torch.Tensor:
    """x [..., K] (x) m [..., K, K] -> [..., K]."""
    return reduce(x.unsqueeze(-1) + m, -2)


def _mat_mat(a: torch.Tensor, b: torch.Tensor, reduce) -> torch.Tensor:
    """a [..., K, K] (x) b [..., K, K] -> [..., K, K]."""
    return reduce(a.unsqueeze(-1) + b.unsqueeze(-3), -2)


def _use_blocks(mode: str, x: torch.Tensor) -> bool:
    return mode == "blocked" or (mode == "auto" and x.device.type != "cpu")


def _blocking(n_steps: int) -> Tuple[int, int, int]:
    """(steps per block S ~ sqrt(N), blocks C, identity steps padded at the end)."""
    size = max(1, math.ceil(math.sqrt(n_steps)))
    n_blocks = math.ceil(n_steps / size)
    return size, n_blocks, n_blocks * size - n_steps


def scan(
    first: torch.Tensor, steps: torch.Tensor, reduce, mode: str = "auto", keep_all: bool = True
) -> torch.Tensor:
    """x_0 = first [N, C, K], x_t = x_t-1 (x) steps[t-1] for steps [M, N, C, K, K].

    Returns every x_t, time first [M+1, N, C, K], or only x_N [N, C, K] (``keep_all`` False).

    Blocked: the N steps are cut into C blocks of S ~ sqrt(N). (1) The product of each block's
    matrices, all blocks at once (S - 1 matrix products); (2) x at each block's start, block
    after block (C vector-matrix products); (3) with ``keep_all``, x inside all blocks at once
    from their starts (S products). The result equals the sequential one up to rounding.
    Steps are taken with ``unbind`` (one gradient copy in all, not one per step).
    """
    n_steps, n_batch, n_chains, k, _ = steps.shape
    if not _use_blocks(mode, first) or n_steps <= 1:
        xs = [first]
        for step in steps.unbind(0):
            xs.append(_vec_mat(xs[-1], step, reduce))
        return torch.stack(xs) if keep_all else xs[-1]
    size, n_blocks, pad = _blocking(n_steps)
    if pad:  # identity steps at the end change nothing
        eye = identity_step(steps).expand(pad, n_batch, n_chains, k, k)
        steps = torch.cat([steps, eye])
    # [S, G, N, C, K, K]: step s of every block.
    blocks = steps.view(n_blocks, size, n_batch, n_chains, k, k).transpose(0, 1).unbind(0)
    # (1) [G, N, C, K, K]: product of the steps of each block.
    product = blocks[0]
    for block_step in blocks[1:]:
        product = _mat_mat(product, block_step, reduce)
    # (2) x at the start of each block.
    x, starts = first, []
    for block_product in product.unbind(0):
        starts.append(x)
        x = _vec_mat(x, block_product, reduce)
    if not keep_all:
        return x
    # (3) x after each step of every block, from the block starts: [G, N, C, K] per step.
    x, per_step = torch.stack(starts), []
    for block_step in blocks:
        x = _vec_mat(x, block_step, reduce)
        per_step.append(x)
    inside = torch.stack(per_step, dim=1).reshape(n_blocks * size, n_batch, n_chains, k)
    return torch.cat([first.unsqueeze(0), inside[:n_steps]])


def backtrack(last: torch.Tensor, back: torch.Tensor, mode: str = "auto") -> torch.Tensor:
    """Tag paths, time first [M+1, N, C], from the last tags [N, C] and back pointers
    [M, N, C, K].

    ``back[t, b, l, k]`` is the tag at t of the best path through tag k at t + 1. Each back
    pointer is a map from tags to tags; blocked, the maps of each block are composed first
    (all blocks at once), then applied block after block, then inside all blocks at once.
    """
    n_steps, n_batch, n_chains, k = back.shape
    if not _use_blocks(mode, back) or n_steps <= 1:
        tags = [last]
        for pointers in reversed(back.unbind(0)):
            tags.append(pointers.gather(-1, tags[-1].unsqueeze(-1)).squeeze(-1))
        tags.reverse()
        return torch.stack(tags)
    size, n_blocks, pad = _blocking(n_steps)
    if pad:  # identity maps after the last token
        ident = torch.arange(k, device=back.device).expand(pad, n_batch, n_chains, k)
        back = torch.cat([back, ident])
    blocks = back.view(n_blocks, size, n_batch, n_chains, k).transpose(0, 1).unbind(0)
    # (1) [G, N, C, K]: tag at a block's start as a function of the tag after its end.
    composed = blocks[-1]
    for pointers in reversed(blocks[:-1]):
        composed = pointers.gather(-1, composed)
    # (2) the tag after the end of each block, last block first.
    tag, after = last, []
    for block_map in reversed(composed.unbind(0)):
        after.append(tag)
        tag = block_map.gather(-1, tag.unsqueeze(-1)).squeeze(-1)
    after.reverse()
    # (3) every tag inside every block, from the tag after it: [G, N, C] per step.
    tag, per_step = torch.stack(after), []
    for s in range(size - 1, -1, -1):
        tag = blocks[s].gather(-1, tag.unsqueeze(-1)).squeeze(-1)
        per_step.append(tag)
    per_step.reverse()
    inside = torch.stack(per_step, dim=1).reshape(n_blocks * size, n_batch, n_chains)
    return torch.cat([inside[:n_steps], last.unsqueeze(0)])
