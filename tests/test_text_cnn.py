"""The text CNN lays a batch's documents end to end with zeros between them: each document
must come out exactly as it does alone (no leak across documents, for any kernel sizes)."""
import pytest
import torch

from spacy_crf_ner.models.pytorch_text_cnn import TextCNN


@pytest.mark.parametrize("kernel_sizes", [(3,), (1,), (2, 5), (4, 3, 7)])
@pytest.mark.parametrize("normalize", ["pre", "post", "none"])
def test_each_document_comes_out_as_it_does_alone(kernel_sizes, normalize):
    torch.manual_seed(0)
    cnn = TextCNN(16, 16, 8, kernel_sizes, residual=normalize != "none",
                  normalize=normalize).eval()
    lengths = torch.tensor([5, 1, 0, 7, 2, 0])
    flat = torch.randn(int(lengths.sum()), 16, requires_grad=True)
    batch = cnn(flat, lengths)
    assert batch.shape == (int(lengths.sum()), 16)
    start = 0
    for n in lengths.tolist():
        alone = cnn(flat[start : start + n].detach(), torch.tensor([n]))
        torch.testing.assert_close(batch[start : start + n], alone, atol=1e-6, rtol=1e-5)
        start += n
    # A token's output depends on its own document only.
    (batch[0] * torch.randn(16)).sum().backward()  # (a plain sum is flat after a LayerNorm)
    reached = flat.grad.abs().sum(-1) > 0
    assert reached[:5].any() and not reached[5:].any()


def test_empty_batches():
    cnn = TextCNN(4, 4, 4, (3,))
    assert cnn(torch.zeros(0, 4), torch.tensor([0, 0])).shape == (0, 4)
    assert cnn(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long)).shape == (0, 4)
