"""Opt-in reduced precision (``precision`` in the transformer's config, ``--precision`` on the
CLI): a trained pipeline set to int8 saves, loads and predicts as such, stays close to its
float32 self, and bad settings are clear errors."""
import json

import pytest
import spacy

from cli_runner import invoke
from pipelines import tiny_transformer_nlp
from synthetic import make_corpus, make_examples, train
from test_cli_predict_evaluate import write_brat


def spans_of(docs):
    return [sorted((s.start_char, s.end_char, s.label_) for s in doc.spans["sc"]) for doc in docs]


def micro_f(nlp, examples) -> float:
    return nlp.evaluate(examples)["spans_sc_f"]


@pytest.fixture(scope="module")
def int8_model(tmp_path_factory):
    """A tiny transformer pipeline trained in float32, whose config says int8 inference."""
    folder = tmp_path_factory.mktemp("int8")
    spacy.util.fix_random_seed(0)
    nlp = tiny_transformer_nlp(folder, transformer_settings={"precision": "int8"})
    examples = make_examples(nlp, 40, seed=5)
    train(nlp, examples, epochs=8, drop=0.0)
    nlp.to_disk(folder / "model")
    return folder / "model", examples


def test_an_int8_pipeline_saves_loads_and_predicts_close_to_float32(int8_model):
    path, examples = int8_model
    nlp = spacy.load(path)
    assert nlp.config["components"]["transformer"]["model"]["precision"] == "int8"
    assert nlp.get_pipe("transformer").model.precision == "int8"
    texts = [eg.reference.text for eg in examples]
    int8 = spans_of(nlp.pipe(texts))
    again = spacy.load(path)
    assert spans_of(again.pipe(texts)) == int8  # quantization is deterministic
    int8_f = micro_f(nlp, examples)

    from spacy_crf_ner.transformer.model_class import set_precision

    assert set_precision(again, "fp32") == 1
    fp32 = spans_of(again.pipe(texts))
    fp32_f = micro_f(again, examples)
    assert fp32_f > 0.8, "the tiny pipeline should have learned its training docs"
    assert abs(int8_f - fp32_f) <= 0.05, (int8_f, fp32_f)
    same = sum(a == b for a, b in zip(int8, fp32))
    assert same >= 0.8 * len(texts)


def test_precision_flag_of_evaluate(int8_model, tmp_path):
    path, _ = int8_model
    data = tmp_path / "gold"
    write_brat(data, make_corpus(12, seed=5))
    scores = {}
    for precision in ("int8", "fp32"):
        out = tmp_path / f"{precision}.json"
        result = invoke("evaluate", path, data, "--precision", precision, "-o", out,
                        "--no-progress")
        assert result.exit_code == 0, result.output
        scores[precision] = json.loads(out.read_text())["exact"]["micro"]["f"]
    assert scores["fp32"] > 0.5 and abs(scores["int8"] - scores["fp32"]) <= 0.1, scores


def test_bad_precisions_are_one_line_errors(int8_model, tmp_path):
    path, _ = int8_model
    data = tmp_path / "gold"
    write_brat(data, make_corpus(3, seed=5))
    bad = invoke("evaluate", path, data, "--precision", "int4", "--no-progress")
    assert bad.exit_code == 1 and "--precision must be one of fp32, int8, bf16, fp16" in bad.output
    gpu = invoke("predict", path, data, tmp_path / "out", "--precision", "int8",
                 "--gpu-id", "0", "--no-progress")
    assert gpu.exit_code == 1 and "runs on the CPU only" in gpu.output
    assert "Traceback" not in bad.output + gpu.output


def test_precision_needs_the_windowed_transformer(tmp_path):
    from spacy_crf_ner.transformer.model_class import set_precision

    nlp = spacy.blank("en")
    nlp.add_pipe("crf_ner")
    train(nlp, make_examples(nlp, 8), epochs=1)
    with pytest.raises(ValueError, match="WindowedTransformerModel"):
        set_precision(nlp, "int8")
    nlp.to_disk(tmp_path / "cnn")
    data = tmp_path / "gold"
    write_brat(data, make_corpus(3, seed=5))
    result = invoke("evaluate", tmp_path / "cnn", data, "--precision", "int8", "--no-progress")
    assert result.exit_code == 1 and "only that transformer architecture" in result.output
