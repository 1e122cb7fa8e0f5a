"""Dropout for the transformer's training forward on CPUs, with cheaper random masks.

On a CPU, torch draws a dropout mask one random number per element (``bernoulli_``): for a
MiniLM step of 1,500 words that is about a third of the step, most of it in the attention
probabilities (windows x heads x 128 x 128 per layer), where dropout also makes
``scaled_dot_product_attention`` leave its fused kernel for its plain-math one. Here a mask
takes two elements from each 64-bit random integer of torch's generator (31 bits each,
``keep = bits >= round(p * 2**31)``), about 4x faster than ``bernoulli_``.

The distribution is dropout's: each element kept with probability 1 - p (to 2**-31), kept
elements scaled by 1 / (1 - p), the same elements zeroed in the gradient. The random stream
is another one, so a seed gives other masks than torch's own dropout, as any change of
batch shape does.

``cpu_dropout()`` routes, inside its block, ``torch.nn.functional.dropout`` (what every
``nn.Dropout`` calls) and ``torch.nn.functional.scaled_dot_product_attention`` with
``dropout_p > 0`` (what Hugging Face's "sdpa" attention calls) on CPU tensors to these masks;
every other call (no dropout, GPU tensors, causal or grouped-query attention, in-place
dropout) goes to torch unchanged. ``WindowedTransformerModel`` opens it around its training
forward only.
"""
import math
from contextlib import contextmanager
from typing import Any, Iterator, Optional, Tuple

import torch

from ..internals import patched_torch_functional

SCALE_BITS = 2 ** 31


def keep_mask(shape: torch.Size, p: float, device: torch.device) -> torch.Tensor:
    """A bool tensor of ``shape``, each element True with probability ``1 - p``."""
    n = math.prod(shape)
    bits = torch.empty((n + 1) // 2, dtype=torch.int64, device=device).random_()  # [0, 2^63)
    halves = bits.view(torch.int32)[:n]  # two 32-bit halves per draw ...
    halves.bitwise_and_(0x7FFFFFFF)  # ... 31 uniform bits each (the high half's sign is 0)
    return halves.ge(int(round(p * SCALE_BITS))).view(shape)


class _Dropout(torch.autograd.Function):
    """``x * keep / (1 - p)``; the gradient goes through the same mask (saved as bool)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, p: float) -> torch.Tensor:
        keep = keep_mask(x.shape, p, x.device)
        ctx.save_for_backward(keep)
        ctx.scale = 1.0 / (1.0 - p)
        return x.mul(keep).mul_(ctx.scale)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> Tuple[torch.Tensor, None]:
        (keep,) = ctx.saved_tensors
        return grad.mul(keep).mul_(ctx.scale), None


def dropout(x: torch.Tensor, p: float) -> torch.Tensor:
    """Training-mode dropout of ``x`` with probability ``p`` (0 < p < 1)."""
    return _Dropout.apply(x, p)


def _applies(x: torch.Tensor, p: float) -> bool:
    return 0.0 < p < 1.0 and x.device.type == "cpu" and x.is_floating_point()


def attention_with_dropout(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                           attn_mask: Optional[torch.Tensor], p: float,
                           scale: Optional[float]) -> torch.Tensor:
    """``scaled_dot_product_attention``'s math, dropout on the attention probabilities.
    Shapes: query [..., L, E], key [..., S, E], value [..., S, Ev] -> [..., L, Ev]; a float
    ``attn_mask`` is added to the scores, a bool one keeps the True positions."""
    scale = 1.0 / math.sqrt(query.shape[-1]) if scale is None else scale
    scores = torch.matmul(query, key.transpose(-2, -1)).mul_(scale)  # [..., L, S]
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attn_mask, float("-inf"))
        else:
            scores = scores.add_(attn_mask)
    return torch.matmul(dropout(torch.softmax(scores, dim=-1), p), value)


@contextmanager
def cpu_dropout() -> Iterator[None]:
    """Within the block, dropout on CPU tensors uses the masks above (see the module doc)."""
    import torch.nn.functional as F

    torch_dropout = F.dropout
    torch_attention = F.scaled_dot_product_attention

    def routed_dropout(input: torch.Tensor, p: float = 0.5, training: bool = True,
                       inplace: bool = False) -> torch.Tensor:
        if training and not inplace and _applies(input, p):
            return dropout(input, p)
        return torch_dropout(input, p, training, inplace)

    def routed_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                         attn_mask: Optional[torch.Tensor] = None, dropout_p: float = 0.0,
                         is_causal: bool = False, scale: Optional[float] = None,
                         **others: Any) -> torch.Tensor:
        if (not is_causal and not any(others.values()) and _applies(query, dropout_p)
                and key.shape[:-2] == query.shape[:-2]):
            return attention_with_dropout(query, key, value, attn_mask, dropout_p, scale)
        return torch_attention(query, key, value, attn_mask=attn_mask, dropout_p=dropout_p,
                               is_causal=is_causal, scale=scale, **others)

    with patched_torch_functional(dropout=routed_dropout,
                                  scaled_dot_product_attention=routed_attention):
        yield
