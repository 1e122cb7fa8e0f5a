"""Token vectors -> per-label BIOUL emission scores, with the CRF that reads them."""
import torch
from torch import nn

from .padding import pad_flat
from .pytorch_crf import NUM_TAGS, MultiLabelBIOULCRF


class EmissionHead(nn.Module):
    """Token vectors -> per-label BIOUL emission scores, plus the CRF that reads them.

    The CRF's transition scores live here so that spaCy's optimizer updates them with the
    rest of the head; the pipe calls ``self.crf`` for losses and decoding.
    """

    def __init__(self, input_size: int, num_labels: int, learnable_transitions: bool = True,
                 dropout: float = 0.0):
        super().__init__()
        self.num_labels = num_labels
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(input_size, num_labels * NUM_TAGS)
        self.crf = MultiLabelBIOULCRF(num_labels, learnable_transitions=learnable_transitions)

    def forward(self, flat: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Tokens back to back [N, D] and lengths [B] -> padded emissions [B, T, L, 5].

        Padding positions get zero emissions; the CRF ignores them through its mask.
        """
        em = self.linear(self.dropout(flat))  # [N, L * 5]
        padded, _ = pad_flat(em, lengths)  # [B, T, L * 5]
        return padded.view(padded.shape[0], padded.shape[1], self.num_labels, NUM_TAGS)
