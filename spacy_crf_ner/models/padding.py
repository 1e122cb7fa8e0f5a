"""Moving a batch of documents between Thinc's list of arrays and padded torch tensors.

Thinc layers pass ``List[Floats2d]`` (one array per document). The torch modules work on
right-padded ``[N, T, ...]`` tensors with a ``[N, T]`` mask. The conversion goes through one
flat ``[W, D]`` array (all tokens of the batch, documents back to back) so that it is a single
copy and differentiable, with no Python loop over documents.
"""
from typing import Tuple

import torch


def lengths_to_mask(lengths: torch.Tensor, n_time: int) -> torch.Tensor:
    """[N] lengths -> [N, T] bool mask (True on real tokens)."""
    return torch.arange(n_time, device=lengths.device)[None, :] < lengths[:, None]


def pad_flat(flat: torch.Tensor, lengths: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """[W, ...] tokens of the batch back to back -> padded [N, T, ...] and mask [N, T].

    T is at least 1, so a batch of empty documents still has a time axis.
    """
    n_time = max(int(lengths.max()), 1) if lengths.numel() else 1
    mask = lengths_to_mask(lengths, n_time)
    padded = flat.new_zeros((lengths.shape[0], n_time) + tuple(flat.shape[1:]))
    trailing = (1,) * (flat.dim() - 1)
    padded = padded.masked_scatter(mask.view(mask.shape + trailing), flat)
    return padded, mask


def unpad(padded: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Padded [N, T, ...] -> [W, ...], documents back to back."""
    return padded[mask]
