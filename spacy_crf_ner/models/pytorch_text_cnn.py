"""A text CNN that re-contextualises token vectors, one document per batch row.

Parallel centred 1-D convolutions (one per kernel size) are concatenated, passed through the
activation, dropout and a linear projection; with ``residual`` the result is added to the
input. ``normalize`` places a LayerNorm before the residual sum ("pre"), after it ("post"),
or nowhere ("none"). Documents of one batch are laid end to end, separated by zeros, so
they never see each other and no padding is computed.

Shapes: tokens back to back [N, D_in] with lengths [B] -> [N, D_out].
"""
from typing import Sequence

import torch
from torch import nn


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
        self.kernel_sizes = [int(k) for k in kernel_sizes]
        self.convs = nn.ModuleList(
            nn.Conv1d(input_size, out_channels, kernel_size=k, padding="same") for k in kernel_sizes
        )
        self.activation = ACTIVATIONS[activation]()
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(out_channels * len(kernel_sizes), output_size)
        self.norm = nn.LayerNorm(output_size) if normalize != "none" else nn.Identity()

    def forward(self, flat: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Tokens back to back [N, D_in] and lengths [B] -> [N, D_out].

        The convolutions run over the documents laid end to end with ``gap`` zero rows
        between them (as many as the widest kernel reaches on either side), which is what
        each document padded on its own would see, with no padding to compute; everything
        after the convolutions is per token."""
        n_tokens = flat.shape[0]
        if n_tokens == 0:
            return flat.new_zeros((0, self.linear.out_features))
        gap = max(k // 2 for k in self.kernel_sizes)
        n_docs = int(lengths.shape[0])
        doc_of_token = torch.repeat_interleave(
            torch.arange(n_docs, device=flat.device), lengths)  # [N]
        where = torch.arange(n_tokens, device=flat.device) + doc_of_token * gap  # [N]
        spaced = flat.new_zeros((n_tokens + (n_docs - 1) * gap, flat.shape[1]))
        spaced = spaced.index_copy(0, where, flat)  # [S, D_in]
        h = spaced.t().unsqueeze(0)  # [1, D_in, S]
        h = torch.cat([conv(h) for conv in self.convs], dim=1)[0].t()  # [S, C*k]
        h = h.index_select(0, where)  # [N, C*k]
        h = self.linear(self.dropout(self.activation(h)))  # [N, D_out]
        if self.residual:
            return flat + self.norm(h) if self.normalize == "pre" else self.norm(flat + h)
        return self.norm(h)
