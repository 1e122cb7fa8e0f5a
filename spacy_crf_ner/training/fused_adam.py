"""Thinc's Adam update for one float32 CPU parameter, in torch's fused AdamW kernel.

Thinc's NumPy Adam walks a parameter in several single-threaded passes (the moments, the
step, zeroing the gradient) and its weight decay allocates a temporary the size of the
weights. Over the 23 M weights of a MiniLM that is about 0.22 s per training step on two
cores; torch's fused AdamW does the same work in one multithreaded pass, about 0.10 s.

The two compute the same update. Thinc, at step t with bias corrections c1 = 1 - b1^t and
c2 = 1 - b2^t::

    m = b1 m + (1 - b1) g;   v = b2 v + (1 - b2) g^2
    w -= lr * sqrt(c2) / c1 * m / (sqrt(v) + eps)
    w -= lr * L2 * w                                 (decoupled weight decay, after the step)

torch's AdamW: ``w *= 1 - lr * wd`` (before the step), then
``w -= lr / c1 * m / (sqrt(v) / sqrt(c2) + eps')``. With ``eps' = eps / sqrt(c2)`` the step
is Thinc's; decaying before or after the step differs by ``lr * wd * step`` (about 1e-9 of a
weight), below float32 resolution.
"""
import math
from typing import Any, Callable

import numpy


def is_cpu_float32(array: Any) -> bool:
    """A writable, C-contiguous float32 NumPy array (what ``torch.from_numpy`` can share)."""
    return (isinstance(array, numpy.ndarray) and array.dtype == numpy.float32
            and array.flags.c_contiguous and array.flags.writeable)


def adam_update(adamw: Callable, weights: Any, gradient: Any, mom1: Any, mom2: Any, *,
                step: int, learn_rate: float,
                beta1: float, beta2: float, eps: float, weight_decay: float) -> None:
    """Update ``weights``, ``mom1`` and ``mom2`` in place as Thinc's Adam would at ``step``
    (1 for the first update); ``adamw`` is torch's functional AdamW. All four arrays are
    float32 NumPy arrays of the same size (``is_cpu_float32``), ``mom1`` and ``mom2`` 1-D.
    The gradient is read (not zeroed) and must already be clipped."""
    import torch

    flat = weights.reshape(-1)
    adamw([torch.from_numpy(flat)], [torch.from_numpy(gradient.reshape(-1))],
          [torch.from_numpy(mom1)], [torch.from_numpy(mom2)], [],
          [torch.tensor(float(step - 1))],  # the kernel counts this update itself
          fused=True, amsgrad=False, maximize=False, beta1=beta1, beta2=beta2,
          lr=learn_rate, weight_decay=weight_decay,
          eps=eps / math.sqrt(1.0 - beta2 ** step))
