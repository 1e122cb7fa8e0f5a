"""The model follows spaCy's current ops: its torch weights, its CRF buffers and its outputs
live on the CPU by default and on the GPU under ``pytest --gpu-id N`` (see conftest.py)."""
from thinc.api import get_current_ops

from pipelines import tiny_transformer_nlp
from spacy_crf_ner.models.crf_tagger import get_emission_head
from synthetic import make_examples, train


def expected_device() -> str:
    return "cuda" if type(get_current_ops()).__name__ == "CupyOps" else "cpu"


def test_weights_buffers_and_outputs_live_on_the_current_device(tmp_path):
    nlp = tiny_transformer_nlp(tmp_path)
    examples = make_examples(nlp, 40, seed=3)
    train(nlp, examples, epochs=12, drop=0.0)
    device = expected_device()

    head = get_emission_head(nlp.get_pipe("crf_ner").model)
    tensors = list(head.named_parameters()) + list(head.named_buffers())
    assert tensors and {t.device.type for _, t in tensors} == {device}, tensors
    hf_model = nlp.get_pipe("transformer").model.transformer
    assert next(hf_model.parameters()).device.type == device

    ops = get_current_ops()
    docs = [eg.predicted for eg in examples[:4]]
    vectors = nlp.get_pipe("crf_ner").model.get_ref("tok2vec").predict(
        list(nlp.get_pipe("transformer").pipe(docs)))
    assert all(isinstance(v, ops.xp.ndarray) for v in vectors)

    # Training and decoding on that device work: the model learned the training docs.
    assert nlp.evaluate(examples)["spans_sc_f"] >= 0.8
