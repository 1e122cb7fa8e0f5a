"""Reduced precision (``precision`` in the transformer's config, ``--precision`` on the CLI,
``train_precision`` for training): a trained pipeline set to int8 saves, loads and predicts
as such, stays close to its float32 self; ``auto`` picks from the processor's flags (stated
here through SPACY_CRF_NER_CPU_FLAGS, so the tests hold on any CPU) and says why; bf16
predicts the float32 spans; a bf16 training step updates float32 weights; bad settings are
clear errors."""
import json

import pytest
import spacy

from spacy_crf_ner.transformer.precision import (
    FLAGS_ENV,
    choose_precision,
    choose_train_precision,
)

from cli_runner import invoke
from pipelines import tiny_transformer_nlp
from synthetic import make_corpus, make_examples, train
from test_cli_predict_evaluate import write_brat


def spans_of(docs):
    return [sorted((s.start_char, s.end_char, s.label_) for s in doc.spans["sc"]) for doc in docs]


def micro_f(nlp, examples) -> float:
    return nlp.evaluate(examples)["spans_sc_f"]


def trained_model(folder, precision: str):
    """A tiny transformer pipeline trained in float32, saved with ``precision`` in its
    config; with the examples it was trained on."""
    spacy.util.fix_random_seed(0)
    nlp = tiny_transformer_nlp(folder, transformer_settings={"precision": precision})
    examples = make_examples(nlp, 40, seed=5)
    train(nlp, examples, epochs=8, drop=0.0)
    nlp.to_disk(folder / "model")
    return folder / "model", examples


@pytest.fixture(scope="module")
def int8_model(tmp_path_factory):
    """Its config says int8 inference."""
    return trained_model(tmp_path_factory.mktemp("int8"), "int8")


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
    assert bad.exit_code == 1 and "--precision must be one of fp32, int8, bf16, fp16, auto" \
        in bad.output
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


# auto -------------------------------------------------------------------------------------
@pytest.mark.parametrize("flags, device, gpu_bf16, expected", [
    ({"sse4_2", "avx2", "fma"}, "cpu", False, "fp32"),              # AVX2 only
    ({"avx2", "avx512f", "avx512_vnni"}, "cpu", False, "int8"),     # Cascade Lake
    ({"avx2", "avx_vnni"}, "cpu", False, "int8"),                   # Alder Lake
    ({"avx512f", "avx512_vnni", "avx512_bf16"}, "cpu", False, "bf16"),  # Zen 4, Cooper Lake
    ({"avx512f", "amx_bf16", "amx_int8", "amx_tile"}, "cpu", False, "bf16"),  # Sapphire R.
    (set(), "cpu", False, "fp32"),                                   # nothing known
    (set(), "cuda", True, "bf16"),
    (set(), "cuda", False, "fp16"),
])
def test_auto_picks_from_the_flags(flags, device, gpu_bf16, expected):
    chosen, why = choose_precision(flags, device, gpu_bf16)
    assert chosen == expected and why
    train, _ = choose_train_precision(flags, device, gpu_bf16)
    assert train == ("bf16" if expected == "bf16" else "fp32")


@pytest.fixture(scope="module")
def fp32_model(tmp_path_factory):
    """Trained in float32, saved with ``precision = "auto"``."""
    return trained_model(tmp_path_factory.mktemp("auto"), "auto")


@pytest.mark.parametrize("flags, runs", [("avx2 fma", "fp32"), ("avx512f,avx512_vnni", "int8"),
                                         ("avx512f avx512_bf16", "bf16")])
def test_auto_at_load_says_what_it_chose(fp32_model, monkeypatch, capsys, flags, runs):
    path, _ = fp32_model
    monkeypatch.setenv(FLAGS_ENV, flags)
    nlp = spacy.load(path)
    model = nlp.get_pipe("transformer").model
    assert model.precision == "auto" and model.inference_precision == runs
    meta = nlp.meta["spacy_crf_ner"]["precision"]
    assert meta["configured"] == "auto" and meta["runs"] == runs and meta["why"]
    assert f"precision auto: the transformer predicts in {runs}" in capsys.readouterr().out


def test_bf16_predicts_the_float32_spans(fp32_model, monkeypatch):
    """Tolerance: F1 on the training docs within 0.03 of float32's, and at least 90 % of
    the documents with exactly the same spans."""
    from spacy_crf_ner.transformer.model_class import set_precision

    path, examples = fp32_model
    monkeypatch.setenv(FLAGS_ENV, "avx2")
    nlp = spacy.load(path)
    texts = [eg.reference.text for eg in examples]
    fp32, fp32_f = spans_of(nlp.pipe(texts)), micro_f(nlp, examples)
    assert fp32_f > 0.8, "the tiny pipeline should have learned its training docs"
    set_precision(nlp, "bf16")
    bf16, bf16_f = spans_of(nlp.pipe(texts)), micro_f(nlp, examples)
    assert abs(bf16_f - fp32_f) <= 0.03, (bf16_f, fp32_f)
    assert sum(a == b for a, b in zip(bf16, fp32)) >= 0.9 * len(texts)
    assert nlp.meta["spacy_crf_ner"]["precision"]["runs"] == "bf16"


def test_cli_precision_auto_on_an_avx2_cpu_is_float32(fp32_model, tmp_path, monkeypatch):
    path, _ = fp32_model
    monkeypatch.setenv(FLAGS_ENV, "avx2")
    data = tmp_path / "gold"
    write_brat(data, make_corpus(4, seed=5))
    result = invoke("evaluate", path, data, "--precision", "auto", "--no-progress")
    assert result.exit_code == 0, result.output
    assert "precision auto: the transformer predicts in fp32, because the CPU has neither" \
        in result.output


# bf16 training ------------------------------------------------------------------------------
def test_a_bf16_training_step_updates_float32_master_weights(tmp_path):
    import torch

    from spacy_crf_ner.internals import shim_module

    spacy.util.fix_random_seed(0)
    nlp = tiny_transformer_nlp(tmp_path, transformer_settings={"train_precision": "bf16"})
    examples = make_examples(nlp, 24, seed=3)
    nlp.initialize(lambda: examples)
    module = shim_module(nlp.get_pipe("transformer").model.layers[0].shims[0])
    before = {name: p.detach().clone() for name, p in module.named_parameters()}
    seen = []
    linear = next(m for m in module.modules() if isinstance(m, torch.nn.Linear))
    handle = linear.register_forward_hook(lambda mod, args, out: seen.append(out.dtype))
    optimizer = nlp.resume_training()
    losses = {}
    # Two steps: the transformer component applies its listeners' gradients one step late.
    nlp.update(examples[:8], sgd=optimizer, losses=losses)
    nlp.update(examples[8:16], sgd=optimizer, losses=losses)
    handle.remove()
    assert seen and set(seen) == {torch.bfloat16}  # the forward ran in bf16
    assert all(p.dtype == torch.float32 for p in module.parameters())
    changed = sum(not torch.equal(before[n], p.detach()) for n, p in module.named_parameters())
    assert changed >= 0.9 * len(before)  # the float32 weights took the update
    with torch.no_grad():  # inference is float32 again (precision stays "fp32")
        seen.clear()
        handle = linear.register_forward_hook(lambda mod, args, out: seen.append(out.dtype))
        nlp("Patient with asthma .")
        handle.remove()
    assert set(seen) == {torch.float32}


def test_bf16_training_learns(tmp_path):
    spacy.util.fix_random_seed(0)
    nlp = tiny_transformer_nlp(tmp_path, transformer_settings={"train_precision": "bf16"})
    examples = make_examples(nlp, 40, seed=5)
    before = None
    nlp.initialize(lambda: examples)
    before = micro_f(nlp, examples)
    train(nlp, examples, epochs=8, drop=0.0)
    after = micro_f(nlp, examples)
    assert after > 0.8 and after > before + 0.3, (before, after)


def test_an_fp32_pipeline_on_a_bf16_cpu_gets_a_hint(tmp_path, monkeypatch):
    nlp = tiny_transformer_nlp(tmp_path / "trf")
    train(nlp, make_examples(nlp, 8), epochs=1)
    nlp.to_disk(tmp_path / "model")
    data = tmp_path / "gold"
    write_brat(data, make_corpus(3, seed=5))
    hint = "--precision auto (bf16) would predict faster"
    monkeypatch.setenv(FLAGS_ENV, "avx2 avx512f avx512_bf16")
    result = invoke("evaluate", tmp_path / "model", data, "--no-progress")
    assert result.exit_code == 0 and hint in result.output, result.output
    monkeypatch.setenv(FLAGS_ENV, "avx2")
    result = invoke("evaluate", tmp_path / "model", data, "--no-progress")
    assert result.exit_code == 0 and "--precision auto" not in result.output
