"""Token vectors -> per-label BIOUL emission scores, with the CRF that reads them: the loss
of every training mode and decoding to spans with confidences, all in torch."""
from contextlib import contextmanager
from typing import Iterator, List, Tuple

import numpy
import torch
from torch import nn

from ..spans.bioul import NUM_TAGS, Tag, decode_tags, properly_nested
from .modes import MODES
from .padding import pad_flat
from .pytorch_crf import FORBIDDEN, BIOULCRF, nesting_constraints


class EmissionHead(nn.Module):
    """Token vectors -> per-label BIOUL emission scores, plus the CRF that reads them.

    With ``nesting_depth`` D > 1 every label has D chains, one per nesting level, outermost
    first (chain ``k * L + l``). A level k chain is conditioned on the tags of level k-1:
    ``nesting_scores[k-1, l, above, tag]`` is added to its emissions, with the tags that
    would leave or cross the outer span forbidden (``pytorch_crf.nesting_constraints``).
    Training conditions on the gold tags of the level above, decoding on the decoded ones.

    The CRF's transition scores live here so that spaCy's optimizer updates them with the
    rest of the head. ``loss`` and ``decode_spans`` are what the ``crf_ner`` pipe uses (through
    ``models.crf_tagger``): the three training modes, and decoding as each mode was trained.
    """

    def __init__(self, input_size: int, num_labels: int, learnable_transitions: bool = True,
                 dropout: float = 0.0, nesting_depth: int = 1):
        super().__init__()
        self.num_labels = num_labels
        self.nesting_depth = nesting_depth
        self.num_chains = num_labels * nesting_depth
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(input_size, self.num_chains * NUM_TAGS)
        self.crf = BIOULCRF(self.num_chains, learnable_transitions=learnable_transitions)
        if nesting_depth > 1:
            self.register_buffer("nesting_allowed", nesting_constraints(), persistent=False)
            self.nesting_scores = nn.Parameter(
                torch.zeros(nesting_depth - 1, num_labels, NUM_TAGS, NUM_TAGS)
            )

    def forward(self, flat: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Tokens back to back [W, D] and lengths [N] -> padded emissions [N, T, C, 5],
        C = labels x nesting levels.

        Padding positions get zero emissions; the CRF ignores them through its mask.
        """
        em = self.linear(self.dropout(flat))  # [W, C * 5]
        padded, _ = pad_flat(em, lengths)  # [N, T, C * 5]
        return padded.view(padded.shape[0], padded.shape[1], self.num_chains, NUM_TAGS)

    # ------------------------------------------------------------------ nesting
    def level(self, k: int) -> slice:
        """The chains of nesting level ``k`` (0 = outermost)."""
        return slice(k * self.num_labels, (k + 1) * self.num_labels)

    def condition_level(
        self, em_level: torch.Tensor, above: torch.Tensor, k: int, forbidden: float = FORBIDDEN
    ) -> torch.Tensor:
        """Emissions of level ``k`` >= 1 [N, T, L, 5] given the tags of level k-1 [N, T, L]."""
        allowed: torch.Tensor = self.nesting_allowed  # type: ignore[assignment]  # a buffer
        table = self.nesting_scores[k - 1].masked_fill(~allowed, forbidden)
        labels = torch.arange(self.num_labels, device=em_level.device)
        return em_level + table[labels, above]  # table[l, above[n, t, l]]: [N, T, L, 5]

    def condition(self, em: torch.Tensor, tags: torch.Tensor) -> torch.Tensor:
        """Every level conditioned on the given tags of the level above (training: gold).

        em: [N, T, C, 5], tags: [N, T, C] -> [N, T, C, 5] (unchanged at depth 1).
        """
        if self.nesting_depth == 1:
            return em
        parts = [em[:, :, self.level(0)]]
        for k in range(1, self.nesting_depth):
            above = tags[:, :, self.level(k - 1)]
            parts.append(self.condition_level(em[:, :, self.level(k)], above, k))
        return torch.cat(parts, dim=2)

    def decode_levels(
        self, em: torch.Tensor, mask: torch.Tensor, use_crf: bool
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Decode level by level, outermost first: tags [N, T, C], and the emissions
        conditioned on the decoded levels [N, T, C, 5] (for confidences).

        ``use_crf``: constrained Viterbi per level; otherwise per-token argmax.
        Forbidden tags get -inf while decoding, so they can never be chosen.
        """
        tags: List[torch.Tensor] = []
        conditioned: List[torch.Tensor] = []
        for k in range(self.nesting_depth):
            em_k = em[:, :, self.level(k)]  # [N, T, L, 5]
            if k:
                hard = self.condition_level(em_k, tags[-1], k, forbidden=float("-inf"))
                em_k = self.condition_level(em_k, tags[-1], k)
            else:
                hard = em_k
            if use_crf:
                tags_k = self.crf.viterbi(hard, mask, chains=self.level(k))
            else:
                tags_k = hard.argmax(dim=-1).masked_fill(~mask.unsqueeze(-1), Tag.O)
            tags.append(tags_k)
            conditioned.append(em_k)
        return torch.cat(tags, dim=2), torch.cat(conditioned, dim=2)

    # ------------------------------------------------------------- pipe's interface
    def loss(
        self, em: torch.Tensor, gold: torch.Tensor, mask: torch.Tensor, mode: str
    ) -> torch.Tensor:
        """Summed loss of the gold tags (a scalar; the caller normalises it).

        em: [N, T, C, 5] emissions, gold: [N, T, C] tags, mask: [N, T].
        ``joint``: CRF negative log-likelihood; ``marginal``: cross-entropy on the CRF's
        posterior marginals; ``independent``: per-token softmax cross-entropy. Each nesting
        level sees the gold tags of the level above (teacher forcing).
        """
        em = self.condition(em, gold)
        if mode == "joint":
            return self.crf.nll(em, gold, mask).sum()
        if mode == "marginal":
            log_probs = self.crf.log_marginals(em, mask)
        elif mode == "independent":
            log_probs = torch.log_softmax(em, dim=-1)
        else:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        gold_lp = log_probs.gather(-1, gold.unsqueeze(-1)).squeeze(-1)  # [N, T, C]
        return -(gold_lp * mask.unsqueeze(-1)).sum()

    def loss_parameters(self, mode: str) -> List[nn.Parameter]:
        """The trainable parameters that ``loss`` reaches directly rather than through the
        emissions (CRF scores, nesting scores): their gradients come from the loss itself,
        not from backpropagating the emissions through ``forward``."""
        params = [] if mode == "independent" else [p for p in self.crf.parameters() if p.requires_grad]
        if self.nesting_depth > 1:
            params.append(self.nesting_scores)
        return params

    def decode_spans(
        self, em: torch.Tensor, mask: torch.Tensor, mode: str
    ) -> Tuple[numpy.ndarray, numpy.ndarray]:
        """Spans ``[S, 4] = (doc, chain, start, end)`` (end exclusive, sorted by doc, chain,
        start) and their confidences ``[S]`` (float32, NumPy).

        Decoding follows ``mode``: constrained Viterbi for ``joint`` and ``marginal``, and
        the span confidence is the CRF posterior that the chain tags exactly this span;
        per-token argmax for ``independent``, the confidence being the product of the
        tokens' best softmax probabilities. Inner spans are decoded given the levels above.
        """
        with torch.no_grad(), one_thread_on_cpu(em.device):
            use_crf = mode != "independent"
            # Level by level (one level at depth 1); `em` becomes the conditioned emissions.
            tags, em = self.decode_levels(em, mask, use_crf=use_crf)
            spans = decode_tags(tags.cpu().numpy())
            spans = spans[properly_nested(spans, self.num_labels)]
            idx = torch.as_tensor(spans, device=em.device)
            if len(spans) == 0:
                span_lp = em.new_zeros((0,))
            elif use_crf:
                alphas, betas, log_z = self.crf.forward_backward(em, mask)
                span_lp = self.crf.span_log_probs(em, alphas, betas, log_z, idx)
            else:
                best_lp = torch.log_softmax(em, dim=-1).max(dim=-1).values  # [N, T, C]
                cum = (best_lp * mask.unsqueeze(-1)).cumsum(dim=1)
                doc, chain, start, end = idx.unbind(-1)
                before = torch.where(
                    start > 0, cum[doc, (start - 1).clamp(min=0), chain],
                    torch.zeros_like(start, dtype=cum.dtype),
                )
                span_lp = cum[doc, end - 1, chain] - before
            confidences = span_lp.exp().clamp(max=1.0).float().cpu().numpy()
        return spans, confidences


@contextmanager
def one_thread_on_cpu(device: torch.device) -> Iterator[None]:
    """Run torch on one thread inside the block, on the CPU only. CRF decoding is hundreds
    of small tensor ops per batch: intra-op threads barely help them, and every parallel
    region waits for all threads, which gets slow as soon as other processes compete for
    the cores."""
    before = torch.get_num_threads()
    if device.type != "cpu" or before == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
