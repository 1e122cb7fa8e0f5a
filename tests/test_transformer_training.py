"""Training with a (tiny, locally built) transformer through a listener, then reloading."""
import pytest
import spacy

from pipelines import tiny_transformer_nlp
from synthetic import make_examples, span_set, train


@pytest.mark.slow
@pytest.mark.parametrize("transformer_model", ["windowed", "span_getter"])
def test_tiny_transformer_pipeline_learns_and_reloads(tmp_path, transformer_model):
    nlp = tiny_transformer_nlp(tmp_path, transformer_model)
    examples = make_examples(nlp, 60, seed=3)
    train(nlp, examples, epochs=15, drop=0.0)
    assert nlp.evaluate(examples)["spans_sc_f"] >= 0.9
    texts = [eg.reference.text for eg in examples[:8]]
    before = [span_set(d) for d in nlp.pipe(texts)]
    nlp.to_disk(tmp_path / "model")
    loaded = spacy.load(tmp_path / "model")
    assert [span_set(d) for d in loaded.pipe(texts)] == before
