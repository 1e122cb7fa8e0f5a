"""A linear-chain CRF over BIOUL tags, one independent chain per label.

Each label gets its own 5-tag chain (O, I, B, L, U), so entities of different labels may
overlap. Hard BIOUL constraints (forbidden transitions, start and end states) are applied on
top of learnable transition scores. Everything is in log space and vectorised over
documents x labels; the only Python loop is the recursion over time.

Shapes used throughout:
    B: documents in the batch, T: tokens (padded), L: labels, K = 5 tags.
    emissions: [B, T, L, K] float,  mask: [B, T] bool (right padded),  tags: [B, T, L] long.
"""
from typing import Tuple

import torch
from torch import nn

O, I, B, L, U = range(5)
NUM_TAGS = 5
TAG_NAMES = ("O", "I", "B", "L", "U")

# Score given to a forbidden transition where gradients flow (training, marginals). A finite
# value keeps log-sum-exp free of NaN gradients; exp(-1e4) is exactly 0 in float32/64.
# Viterbi uses -inf instead, so a forbidden path can never be decoded.
FORBIDDEN = -1e4

_ALLOWED_NEXT = {O: (O, B, U), I: (I, L), B: (I, L), L: (O, B, U), U: (O, B, U)}
_ALLOWED_START = (O, B, U)
_ALLOWED_END = (O, L, U)


# Nesting: the tags a chain of level k may take under each tag of level k-1 (same label).
# Outside an outer span (O) and under a one-token outer span (U, which has no proper
# sub-span) only O; at the outer span's first token (B) nothing may continue from before
# (O, B, U); at its last token (L) everything must end (O, L, U); inside it (I) anything.
_ALLOWED_UNDER = {O: (O,), I: (O, I, B, L, U), B: (O, B, U), L: (O, L, U), U: (O,)}


def nesting_constraints() -> torch.Tensor:
    """allowed[above, tag]: whether a level k tag may sit under a level k-1 tag [K, K]."""
    allowed = torch.zeros(NUM_TAGS, NUM_TAGS, dtype=torch.bool)
    for above, tags in _ALLOWED_UNDER.items():
        allowed[above, list(tags)] = True
    return allowed


def bioul_constraints() -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Boolean masks of the allowed transitions [K, K], start tags [K] and end tags [K]."""
    transitions = torch.zeros(NUM_TAGS, NUM_TAGS, dtype=torch.bool)
    for src, dsts in _ALLOWED_NEXT.items():
        transitions[src, list(dsts)] = True
    start = torch.zeros(NUM_TAGS, dtype=torch.bool)
    start[list(_ALLOWED_START)] = True
    end = torch.zeros(NUM_TAGS, dtype=torch.bool)
    end[list(_ALLOWED_END)] = True
    return transitions, start, end


class MultiLabelBIOULCRF(nn.Module):
    """One BIOUL linear-chain CRF per label, batched over documents and labels."""

    def __init__(self, num_labels: int, learnable_transitions: bool = True):
        super().__init__()
        self.num_labels = num_labels
        self.learnable_transitions = learnable_transitions
        allowed, allowed_start, allowed_end = bioul_constraints()
        self.register_buffer("allowed", allowed, persistent=False)
        self.register_buffer("allowed_start", allowed_start, persistent=False)
        self.register_buffer("allowed_end", allowed_end, persistent=False)
        # transitions[l, i, j]: score of tag i followed by tag j in label l's chain.
        shape = (num_labels, NUM_TAGS, NUM_TAGS)
        if learnable_transitions:
            self.transitions = nn.Parameter(torch.zeros(shape))
            self.start_scores = nn.Parameter(torch.zeros(num_labels, NUM_TAGS))
            self.end_scores = nn.Parameter(torch.zeros(num_labels, NUM_TAGS))
        else:
            self.register_buffer("transitions", torch.zeros(shape))
            self.register_buffer("start_scores", torch.zeros(num_labels, NUM_TAGS))
            self.register_buffer("end_scores", torch.zeros(num_labels, NUM_TAGS))

    def constrained_scores(
        self, forbidden: float = FORBIDDEN, chains: slice = slice(None)
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Transition [L, K, K], start [L, K] and end [L, K] scores with constraints applied
        (for the chains selected by ``chains``)."""
        trans = self.transitions[chains].masked_fill(~self.allowed, forbidden)
        start = self.start_scores[chains].masked_fill(~self.allowed_start, forbidden)
        end = self.end_scores[chains].masked_fill(~self.allowed_end, forbidden)
        return trans, start, end

    # ------------------------------------------------------------------ scoring
    def log_partition(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """log Z for each chain: [B, L]."""
        alphas = self._forward_alphas(emissions, mask)
        _, _, end = self.constrained_scores()
        return torch.logsumexp(alphas[:, -1] + end, dim=-1)

    def path_score(
        self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """Unnormalised score of the given tag paths: [B, L]."""
        trans, start, end = self.constrained_scores()
        n_batch, n_time, n_labels, _ = emissions.shape
        maskf = mask.to(emissions.dtype)  # [B, T]
        # Emission of the gold tag at every position: [B, T, L]
        em = emissions.gather(-1, tags.unsqueeze(-1)).squeeze(-1)
        score = (em * maskf[:, :, None]).sum(1)  # [B, L]
        labels = torch.arange(n_labels, device=emissions.device)
        score = score + start[labels, tags[:, 0]]
        if n_time > 1:
            # trans[l, tags[t-1], tags[t]] for t >= 1: [B, T-1, L]
            step = trans[labels, tags[:, :-1], tags[:, 1:]]
            score = score + (step * maskf[:, 1:, None]).sum(1)
        last = (mask.sum(1) - 1).clamp(min=0)  # [B]
        last_tags = tags[torch.arange(n_batch, device=tags.device), last]  # [B, L]
        return score + end[labels, last_tags]

    def nll(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Negative log-likelihood of the gold paths: [B, L] (0 for empty documents)."""
        nonempty = mask[:, :1].to(emissions.dtype)  # [B, 1]
        return (self.log_partition(emissions, mask) - self.path_score(emissions, tags, mask)) * nonempty

    # --------------------------------------------------------- forward-backward
    def _forward_alphas(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """alpha[b, t, l, k] = log-sum of all paths ending in tag k at t (emission included)."""
        trans, start, _ = self.constrained_scores()
        alpha = start + emissions[:, 0]  # [B, L, K]
        alphas = [alpha]
        for t in range(1, emissions.shape[1]):
            # [B, L, K_from, 1] + [L, K_from, K_to] -> logsumexp over K_from
            nxt = torch.logsumexp(alpha.unsqueeze(-1) + trans, dim=-2) + emissions[:, t]
            alpha = torch.where(mask[:, t, None, None], nxt, alpha)
            alphas.append(alpha)
        return torch.stack(alphas, dim=1)  # [B, T, L, K]

    def _backward_betas(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """beta[b, t, l, k] = log-sum of all path continuations after tag k at t."""
        trans, _, end = self.constrained_scores()
        n_batch, n_time, n_labels, _ = emissions.shape
        beta = end.expand(n_batch, n_labels, NUM_TAGS)  # [B, L, K]
        betas = [beta]
        for t in range(n_time - 2, -1, -1):
            # [L, K_from, K_to] + [B, L, 1, K_to] -> logsumexp over K_to
            nxt = torch.logsumexp(trans + (emissions[:, t + 1] + beta).unsqueeze(-2), dim=-1)
            # Past the end of a document, t is (at or after) its last token: beta = end.
            beta = torch.where(mask[:, t + 1, None, None], nxt, end.expand_as(nxt))
            betas.append(beta)
        betas.reverse()
        return torch.stack(betas, dim=1)  # [B, T, L, K]

    def forward_backward(
        self, emissions: torch.Tensor, mask: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """alphas [B, T, L, K], betas [B, T, L, K] and log Z [B, L]."""
        alphas = self._forward_alphas(emissions, mask)
        betas = self._backward_betas(emissions, mask)
        _, _, end = self.constrained_scores()
        log_z = torch.logsumexp(alphas[:, -1] + end, dim=-1)
        return alphas, betas, log_z

    def log_marginals(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """log P(tag at t = k) for each chain: [B, T, L, K] (meaningless where mask is False)."""
        alphas, betas, log_z = self.forward_backward(emissions, mask)
        return alphas + betas - log_z[:, None, :, None]

    # ------------------------------------------------------------------ decoding
    def viterbi(
        self, emissions: torch.Tensor, mask: torch.Tensor, chains: slice = slice(None)
    ) -> torch.Tensor:
        """Best valid tag path for each chain: [B, T, L] (O on padding).

        ``chains`` selects the chains whose scores to use when ``emissions`` holds only some
        of them (one nesting level at a time). Emissions may be -inf for forbidden tags, as
        long as O stays allowed.
        """
        trans, start, end = self.constrained_scores(forbidden=float("-inf"), chains=chains)
        n_batch, n_time, n_labels, _ = emissions.shape
        score = start + emissions[:, 0]  # [B, L, K]
        identity = torch.arange(NUM_TAGS, device=emissions.device).expand(n_batch, n_labels, -1)
        backpointers = []
        for t in range(1, n_time):
            # [B, L, K_from, K_to]: best predecessor for each tag.
            best, prev = (score.unsqueeze(-1) + trans).max(dim=-2)
            step_mask = mask[:, t, None, None]
            score = torch.where(step_mask, best + emissions[:, t], score)
            # On padding, point each tag to itself so the backtrace passes through.
            backpointers.append(torch.where(step_mask, prev, identity))
        tag = (score + end).argmax(-1)  # [B, L]
        path = [tag]
        for prev in reversed(backpointers):
            tag = prev.gather(-1, tag.unsqueeze(-1)).squeeze(-1)
            path.append(tag)
        path.reverse()
        tags = torch.stack(path, dim=1)  # [B, T, L]
        return tags.masked_fill(~mask[:, :, None], O)

    def span_log_probs(
        self,
        emissions: torch.Tensor,
        alphas: torch.Tensor,
        betas: torch.Tensor,
        log_z: torch.Tensor,
        spans: torch.Tensor,
    ) -> torch.Tensor:
        """log P(the chain tags exactly this span) for spans [N, 4] = (doc, label, start, end).

        ``end`` is inclusive. A one-token span is the marginal of U; a longer one is the
        probability of the path B I* L over its tokens, from the forward-backward scores.
        """
        trans, _, _ = self.constrained_scores()
        if spans.numel() == 0:
            return emissions.new_zeros((0,))
        doc, lab, start, end = spans.unbind(-1)
        length = end - start
        single = alphas[doc, start, lab, U] + betas[doc, start, lab, U]
        # Sum of I emissions strictly inside the span, via a cumulative sum over time.
        cum_i = emissions[..., I].cumsum(dim=1)  # [B, T, L]
        inner = cum_i[doc, (end - 1).clamp(min=0), lab] - cum_i[doc, start, lab]
        inner = torch.where(length >= 2, inner, torch.zeros_like(inner))
        n_inner = (length - 1).clamp(min=0).to(emissions.dtype)
        trans_path = torch.where(
            length >= 2,
            trans[lab, B, I] + (n_inner - 1).clamp(min=0) * trans[lab, I, I] + trans[lab, I, L],
            trans[lab, B, L],
        )
        multi = (
            alphas[doc, start, lab, B]
            + inner
            + trans_path
            + emissions[doc, end, lab, L]
            + betas[doc, end, lab, L]
        )
        return torch.where(length == 0, single, multi) - log_z[doc, lab]
