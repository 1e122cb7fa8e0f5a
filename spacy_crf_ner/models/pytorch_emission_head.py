"""Token vectors -> per-label BIOUL emission scores, with the CRF that reads them."""
from typing import List, Tuple

import torch
from torch import nn

from .padding import pad_flat
from .pytorch_crf import FORBIDDEN, NUM_TAGS, O, MultiLabelBIOULCRF, nesting_constraints


class EmissionHead(nn.Module):
    """Token vectors -> per-label BIOUL emission scores, plus the CRF that reads them.

    With ``nesting_depth`` D > 1 every label has D chains, one per nesting level, outermost
    first (chain ``k * L + l``). A level k chain is conditioned on the tags of level k-1:
    ``nesting_scores[k-1, l, above, tag]`` is added to its emissions, with the tags that
    would leave or cross the outer span forbidden (``pytorch_crf.nesting_constraints``).
    Training conditions on the gold tags of the level above, decoding on the decoded ones.

    The CRF's transition scores live here so that spaCy's optimizer updates them with the
    rest of the head; the pipe calls ``self.crf`` for losses and decoding.
    """

    def __init__(self, input_size: int, num_labels: int, learnable_transitions: bool = True,
                 dropout: float = 0.0, nesting_depth: int = 1):
        super().__init__()
        if nesting_depth < 1:
            raise ValueError(f"nesting_depth must be >= 1, got {nesting_depth}")
        self.num_labels = num_labels
        self.nesting_depth = nesting_depth
        self.num_chains = num_labels * nesting_depth
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(input_size, self.num_chains * NUM_TAGS)
        self.crf = MultiLabelBIOULCRF(self.num_chains, learnable_transitions=learnable_transitions)
        if nesting_depth > 1:
            self.register_buffer("nesting_allowed", nesting_constraints(), persistent=False)
            self.nesting_scores = nn.Parameter(
                torch.zeros(nesting_depth - 1, num_labels, NUM_TAGS, NUM_TAGS)
            )

    def forward(self, flat: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Tokens back to back [N, D] and lengths [B] -> padded emissions [B, T, C, 5],
        C = labels x nesting levels.

        Padding positions get zero emissions; the CRF ignores them through its mask.
        """
        em = self.linear(self.dropout(flat))  # [N, C * 5]
        padded, _ = pad_flat(em, lengths)  # [B, T, C * 5]
        return padded.view(padded.shape[0], padded.shape[1], self.num_chains, NUM_TAGS)

    # ------------------------------------------------------------------ nesting
    def level(self, k: int) -> slice:
        """The chains of nesting level ``k`` (0 = outermost)."""
        return slice(k * self.num_labels, (k + 1) * self.num_labels)

    def condition_level(
        self, em_level: torch.Tensor, above: torch.Tensor, k: int, forbidden: float = FORBIDDEN
    ) -> torch.Tensor:
        """Emissions of level ``k`` >= 1 [B, T, L, 5] given the tags of level k-1 [B, T, L]."""
        allowed: torch.Tensor = self.nesting_allowed  # type: ignore[assignment]  # a buffer
        table = self.nesting_scores[k - 1].masked_fill(~allowed, forbidden)
        labels = torch.arange(self.num_labels, device=em_level.device)
        return em_level + table[labels, above]  # table[l, above[b, t, l]]: [B, T, L, 5]

    def condition(self, em: torch.Tensor, tags: torch.Tensor) -> torch.Tensor:
        """Every level conditioned on the given tags of the level above (training: gold).

        em: [B, T, C, 5], tags: [B, T, C] -> [B, T, C, 5] (unchanged at depth 1).
        """
        if self.nesting_depth == 1:
            return em
        parts = [em[:, :, self.level(0)]]
        for k in range(1, self.nesting_depth):
            above = tags[:, :, self.level(k - 1)]
            parts.append(self.condition_level(em[:, :, self.level(k)], above, k))
        return torch.cat(parts, dim=2)

    def decode(
        self, em: torch.Tensor, mask: torch.Tensor, use_crf: bool
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Decode level by level, outermost first: tags [B, T, C], and the emissions
        conditioned on the decoded levels [B, T, C, 5] (for confidences).

        ``use_crf``: constrained Viterbi per level; otherwise per-token argmax.
        Forbidden tags get -inf while decoding, so they can never be chosen.
        """
        tags: List[torch.Tensor] = []
        conditioned: List[torch.Tensor] = []
        for k in range(self.nesting_depth):
            em_k = em[:, :, self.level(k)]  # [B, T, L, 5]
            if k:
                hard = self.condition_level(em_k, tags[-1], k, forbidden=float("-inf"))
                em_k = self.condition_level(em_k, tags[-1], k)
            else:
                hard = em_k
            if use_crf:
                tags_k = self.crf.viterbi(hard, mask, chains=self.level(k))
            else:
                tags_k = hard.argmax(dim=-1).masked_fill(~mask.unsqueeze(-1), O)
            tags.append(tags_k)
            conditioned.append(em_k)
        return torch.cat(tags, dim=2), torch.cat(conditioned, dim=2)
