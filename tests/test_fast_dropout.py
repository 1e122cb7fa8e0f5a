"""The transformer's training dropout on CPUs (``transformer/fast_dropout.py``): dropout's
distribution from cheaper random draws, routed from ``nn.Dropout`` and attention only inside
the transformer's training forward."""
import pytest
import spacy
import torch
import torch.nn.functional as F

import spacy_crf_ner.transformer.fast_dropout as fast_dropout
from spacy_crf_ner.transformer.fast_dropout import (
    attention_with_dropout, cpu_dropout, dropout, keep_mask,
)

from pipelines import tiny_transformer_nlp
from synthetic import make_examples


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_masks_keep_each_element_with_probability_one_minus_p(p):
    torch.manual_seed(0)
    n = 1_000_001  # odd: the last 64-bit draw gives one half only
    keep = keep_mask(torch.Size([n]), p, torch.device("cpu")).float()
    assert keep.shape == (n,)
    sigma = (p * (1 - p) / (n / 2)) ** 0.5
    # Each half of the 64-bit draws on its own: the high halves carry the draw's sign bit
    # (always 0), the low halves do not; both must keep 1 - p.
    for half in (keep[0::2], keep[1::2]):
        assert abs(half.mean().item() - (1 - p)) < 5 * sigma
    # neighbours (the two halves of one draw) are independent
    both = (keep[0:-1:2] * keep[1::2]).mean().item()
    assert abs(both - (1 - p) ** 2) < 5 * sigma


def test_dropout_scales_what_it_keeps_and_masks_the_gradient_alike():
    torch.manual_seed(1)
    x = torch.randn(300, 200, requires_grad=True)
    y = dropout(x, 0.2)
    kept = y != 0
    assert 0.78 < kept.float().mean().item() < 0.82
    assert torch.allclose(y[kept], x[kept] / 0.8)
    (y * 3).sum().backward()
    assert torch.allclose(x.grad, kept.float() * 3 / 0.8)


@pytest.mark.parametrize("bool_mask", [False, True])
def test_attention_is_scaled_dot_product_attention_with_dropout_on_the_probabilities(bool_mask):
    torch.manual_seed(2)
    q, k, v = (torch.randn(2, 3, 10, 8) for _ in range(3))
    allowed = torch.ones(2, 1, 1, 10, dtype=torch.bool)
    allowed[0, ..., 7:] = False  # padding of the first sequence
    mask = allowed if bool_mask else torch.zeros(2, 1, 1, 10).masked_fill(
        ~allowed, torch.finfo(torch.float32).min)
    want = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    assert torch.allclose(attention_with_dropout(q, k, v, mask, 1e-12, None), want, atol=1e-6)
    # With dropout: the probabilities of the same seed's mask, rescaled, times the values.
    torch.manual_seed(3)
    got = attention_with_dropout(q, k, v, mask, 0.5, None)
    torch.manual_seed(3)
    scores = (q @ k.transpose(-2, -1)) / 8 ** 0.5
    scores = scores.masked_fill(~allowed, float("-inf"))
    probs = torch.softmax(scores, -1)
    keep = keep_mask(probs.shape, 0.5, probs.device)
    assert torch.allclose(got, (probs * keep / 0.5) @ v, atol=1e-5)


def test_routing_lasts_the_block_and_leaves_other_calls_to_torch():
    own_dropout, own_attention = F.dropout, F.scaled_dot_product_attention
    x = torch.randn(50, 40)
    layer = torch.nn.Dropout(0.3).train()
    q, k, v = (torch.randn(1, 2, 6, 4) for _ in range(3))
    with cpu_dropout():
        torch.manual_seed(4)
        routed = layer(x)
        # no dropout, or eval mode: torch's own result
        exact = F.scaled_dot_product_attention(q, k, v, dropout_p=0.0)
        assert torch.equal(exact, own_attention(q, k, v))
        assert torch.equal(F.dropout(x, 0.3, training=False), x)
        causal = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        assert torch.equal(causal, own_attention(q, k, v, is_causal=True))
    assert F.dropout is own_dropout and F.scaled_dot_product_attention is own_attention
    torch.manual_seed(4)
    assert torch.equal(routed, dropout(x, 0.3))  # the block's nn.Dropout drew our mask


@pytest.mark.parametrize("fast", [True, False])
def test_transformer_training_forward_uses_the_masks_unless_turned_off(tmp_path, monkeypatch,
                                                                        fast):
    nlp = tiny_transformer_nlp(tmp_path, transformer_settings={"fast_cpu_dropout": fast})
    examples = make_examples(nlp, 8, seed=1)
    nlp.initialize(lambda: examples)
    drawn = []
    real = fast_dropout.keep_mask
    monkeypatch.setattr(fast_dropout, "keep_mask",
                        lambda *a: drawn.append(a[0]) or real(*a))
    own_dropout = F.dropout
    nlp.update(examples, sgd=nlp.create_optimizer())
    assert F.dropout is own_dropout
    if fast:
        # hidden states and attention probabilities (4 dims) of every layer
        assert any(len(shape) == 4 for shape in drawn) and any(len(s) == 3 for s in drawn)
    else:
        assert drawn == []
    drawn.clear()
    list(nlp.pipe([eg.reference.text for eg in examples]))  # prediction: no dropout
    assert drawn == []
    assert spacy.util.load_config_from_str(nlp.config.to_str())["components"]["transformer"][
        "model"]["fast_cpu_dropout"] is fast
