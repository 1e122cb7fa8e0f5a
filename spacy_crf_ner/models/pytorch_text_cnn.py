"""A text CNN that re-contextualises token vectors, one document per batch row.

Parallel centred 1-D convolutions (one per kernel size) are concatenated, passed through the
activation, dropout and a linear projection; with ``residual`` the result is added to the
input. ``normalize`` places a LayerNorm before the residual sum ("pre"), after it ("post"),
or nowhere ("none"). Padding positions are zeroed before and after, so documents padded
into one batch never see each other or the padding.

Shapes: tokens back to back [N, D_in] with lengths [B] -> [N, D_out].
"""
from typing import Sequence

import torch
from torch import nn

from .padding import pad_flat, unpad

ACTIVATIONS = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "silu": nn.SiLU,
    "identity": nn.Identity,
}
NORMALIZE = ("pre", "post", "none")


class TextCNN(nn.Module):
    def __init__(
        self,
        input_size: int,
        output_size: int,
        out_channels: int,
        kernel_sizes: Sequence[int] = (3,),
        activation: str = "relu",
        residual: bool = True,
        normalize: str = "pre",
        dropout: float = 0.0,
    ):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"Unknown activation {activation!r}; choose from {sorted(ACTIVATIONS)}")
        if normalize not in NORMALIZE:
            raise ValueError(f"Unknown normalize {normalize!r}; choose from {NORMALIZE}")
        if residual and output_size != input_size:
            raise ValueError(
                f"A residual text CNN needs output_size == input size ({output_size} != {input_size})"
            )
        if not kernel_sizes or any(k < 1 for k in kernel_sizes):
            raise ValueError(f"kernel_sizes must be positive integers, got {list(kernel_sizes)}")
        self.residual = residual
        self.normalize = normalize
        self.convs = nn.ModuleList(
            nn.Conv1d(input_size, out_channels, kernel_size=k, padding="same") for k in kernel_sizes
        )
        self.activation = ACTIVATIONS[activation]()
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(out_channels * len(kernel_sizes), output_size)
        self.norm = nn.LayerNorm(output_size) if normalize != "none" else nn.Identity()

    def forward(self, flat: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Tokens back to back [N, D_in] and lengths [B] -> [N, D_out]."""
        x, mask = pad_flat(flat, lengths)
        return unpad(self.forward_padded(x, mask), mask)

    def forward_padded(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x [B, T, D_in], mask [B, T] -> [B, T, D_out]."""
        keep = mask.unsqueeze(-1).to(x.dtype)  # [B, T, 1]
        x = x * keep
        h = x.transpose(1, 2)  # [B, D_in, T]
        h = torch.cat([conv(h) for conv in self.convs], dim=1).transpose(1, 2)  # [B, T, C*k]
        h = self.linear(self.dropout(self.activation(h)))  # [B, T, D_out]
        if self.residual:
            h = x + self.norm(h) if self.normalize == "pre" else self.norm(x + h)
        else:
            h = self.norm(h)
        return h * keep

