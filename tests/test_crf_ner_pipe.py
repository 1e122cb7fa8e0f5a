"""The crf_ner pipe in a spaCy pipeline: labels, training, decoding, saving, loading."""
import warnings

import numpy
import pytest
import spacy
from spacy import displacy
from spacy.training import Example

from synthetic import make_examples, span_set, train

SC_F = "spans_sc_f"


def new_nlp(**cfg):
    nlp = spacy.blank("en")
    nlp.add_pipe("crf_ner", config=cfg)
    return nlp


@pytest.fixture(scope="module")
def trained():
    """A tok2vec pipeline trained on the synthetic corpus (joint mode), shared by tests."""
    nlp = new_nlp()
    examples = make_examples(nlp, 60, seed=1)
    train(nlp, examples, epochs=12)
    return nlp, examples


def test_importing_the_factory_module_is_cheap():
    import subprocess
    import sys

    code = (
        "import sys; import spacy_crf_ner.pipeline.crf_ner; "
        "bad = [m for m in ('transformers', 'spacy_transformers', 'spacy_crf_ner.models.pytorch_crf') "
        "if m in sys.modules]; print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_labels_inferred_from_examples_and_fixed_after_initialize():
    nlp = new_nlp()
    examples = make_examples(nlp, 10)
    nlp.initialize(lambda: examples)
    ner = nlp.get_pipe("crf_ner")
    assert ner.labels == ("ANATOMY", "DISEASE", "DRUG")
    assert ner.label_data == ["ANATOMY", "DISEASE", "DRUG"]
    assert ner.add_label("DRUG") == 0
    with pytest.raises(ValueError, match="already initialized"):
        ner.add_label("NEW")


def test_labels_given_to_initialize_win():
    nlp = new_nlp()
    examples = make_examples(nlp, 10)
    nlp.config["initialize"]["components"]["crf_ner"] = {"labels": ["DRUG"]}
    nlp.initialize(lambda: examples)
    assert nlp.get_pipe("crf_ner").labels == ("DRUG",)


def test_no_labels_is_a_clear_error():
    nlp = new_nlp(target_span_getter="missing")
    examples = make_examples(nlp, 5)
    with pytest.raises(ValueError, match="found no labels"):
        nlp.initialize(lambda: examples)


def test_bad_options_are_clear_errors():
    with pytest.raises(ValueError, match="mode must be one of"):
        new_nlp(mode="crf")
    with pytest.raises(ValueError, match="confidence_threshold"):
        new_nlp(confidence_threshold=2.0)
    with pytest.raises(ValueError, match="activation"):
        spacy.blank("en").add_pipe(
            "crf_ner", config={"model": {"tok2vec": {"activation": "nope"}}}
        )


def test_untrained_is_at_chance_and_training_learns_overlaps(trained):
    nlp, examples = trained
    untrained = new_nlp()
    untrained.initialize(lambda: examples)
    before = untrained.evaluate(examples)[SC_F] or 0.0
    scores = nlp.evaluate(examples)
    assert before < 0.3
    assert scores[SC_F] >= 0.9
    # Overlapping spans of different labels are predicted together.
    doc = nlp("The patient has lung cancer and takes aspirin daily .")
    assert {("lung cancer", "DISEASE"), ("lung", "ANATOMY"), ("aspirin", "DRUG")} <= {
        (s.text, s.label_) for s in doc.spans["sc"]
    }
    # doc.ents holds a non-overlapping subset of them.
    ents = list(doc.ents)
    assert ents and all(a.end <= b.start for a, b in zip(ents, ents[1:]))
    assert {(e.text, e.label_) for e in ents} <= {(s.text, s.label_) for s in doc.spans["sc"]}


def test_confidences_are_probabilities_and_threshold_filters(trained):
    nlp, _ = trained
    doc = nlp("History of colon tumour treated with cisplatin in 2019 .")
    scores = doc.spans["sc"].attrs["scores"]
    assert len(scores) == len(doc.spans["sc"]) > 0
    assert ((scores > 0) & (scores <= 1)).all()
    assert scores.min() > 0.5  # confident on training-like text
    ner = nlp.get_pipe("crf_ner")
    ner.cfg["confidence_threshold"] = 1.0
    try:
        kept = nlp("History of colon tumour treated with cisplatin in 2019 .").spans["sc"]
        assert len(kept) == int((scores >= 1.0).sum())
    finally:
        ner.cfg["confidence_threshold"] = 0.0


def test_save_and_load_predict_identically(trained, tmp_path):
    nlp, examples = trained
    texts = [eg.reference.text for eg in examples[:10]] + ["", "aspirin"]
    before = [(span_set(d), d.spans["sc"].attrs["scores"]) for d in nlp.pipe(texts)]
    nlp.to_disk(tmp_path / "model")
    loaded = spacy.load(tmp_path / "model")
    after = [(span_set(d), d.spans["sc"].attrs["scores"]) for d in loaded.pipe(texts)]
    for (s1, c1), (s2, c2) in zip(before, after):
        assert s1 == s2
        numpy.testing.assert_allclose(c1, c2, rtol=1e-5)
    from_bytes = new_nlp().from_bytes(nlp.to_bytes())
    docs = list(from_bytes.pipe(texts))
    assert [span_set(d) for d in docs] == [b[0] for b in before]


def test_n_process_2_gives_the_same_entities(trained, tmp_path):
    """Worker processes are forked, and CUDA does not survive a fork (spaCy's W114): this runs
    on the CPU, from a reloaded copy when the suite runs on a GPU (``pytest --gpu-id``)."""
    nlp, examples = trained
    nlp.to_disk(tmp_path / "model")
    spacy.require_cpu()
    nlp = spacy.load(tmp_path / "model")
    texts = [eg.reference.text for eg in examples[:16]]
    single = [span_set(d) for d in nlp.pipe(texts)]
    multi = [span_set(d) for d in nlp.pipe(texts, n_process=2, batch_size=4)]
    assert multi == single


def test_span_setter_targets_and_scorer_keys(trained, tmp_path):
    nlp, examples = trained
    nlp.to_disk(tmp_path / "m")
    other = spacy.load(tmp_path / "m", config={"components": {"crf_ner": {"span_setter": ["*", "mine"]}}})
    doc = other("Known skin lesion ; metformin started today .")
    assert {s.label_ for s in doc.spans["DRUG"]} == {"DRUG"}
    assert span_set(doc, "mine") == {
        (s.start_char, s.end_char, s.label_) for lab in ("ANATOMY", "DISEASE", "DRUG") for s in doc.spans[lab]
    }
    assert not doc.ents  # "ents" is not a target any more
    scores = other.evaluate(examples)
    assert scores["spans_labels_f"] >= 0.9 and scores["spans_mine_f"] >= 0.9
    assert "ents_f" not in scores or scores["ents_f"] is None


def test_existing_ents_of_other_components_are_kept(trained):
    nlp, _ = trained
    ruler = nlp.add_pipe("entity_ruler", before="crf_ner")
    ruler.add_patterns([{"label": "YEAR", "pattern": "2019"}])
    try:
        doc = nlp("History of liver cancer treated with aspirin in 2019 .")
        assert ("2019", "YEAR") in {(e.text, e.label_) for e in doc.ents}
        assert ("aspirin", "DRUG") in {(e.text, e.label_) for e in doc.ents}
    finally:
        nlp.remove_pipe("entity_ruler")


def test_displacy_span_style(trained):
    nlp, _ = trained
    doc = nlp("The patient has breast cancer and takes tamoxifen daily .")
    html = displacy.render(doc, style="span", options={"spans_key": "sc"})
    assert "DISEASE" in html and "ANATOMY" in html and "DRUG" in html


@pytest.mark.parametrize("mode", ["marginal", "independent"])
def test_every_mode_trains_and_decodes(mode):
    nlp = new_nlp(mode=mode)
    examples = make_examples(nlp, 60, seed=2)
    train(nlp, examples, epochs=12)
    assert nlp.evaluate(examples)[SC_F] >= 0.9


def test_same_label_overlaps_are_counted_and_warned_not_fatal():
    nlp = new_nlp()
    examples = make_examples(nlp, 8)
    for eg in examples[:3]:
        ref = eg.reference
        spans = list(ref.spans["sc"])
        spans.append(ref[0:2].char_span(0, len(ref[0:2].text), label="DRUG") or ref[0:2])
        spans[-1].label_ = "DRUG"
        spans.append(spacy.tokens.Span(ref, 0, 1, label="DRUG"))
        ref.spans["sc"] = spans
    with pytest.warns(UserWarning, match="nested too deep"):
        nlp.initialize(lambda: examples)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nlp.update(examples, sgd=nlp.create_optimizer())
    stats = nlp.get_pipe("crf_ner").stats
    assert stats["nested_too_deep"] >= 3


def test_misaligned_gold_spans_are_counted():
    from spacy.tokens import Doc

    nlp = new_nlp()
    # The reference splits "aspirinlike" into two tokens; the pipeline's tokenizer does not,
    # so the gold span "aspirin" has no token boundary to land on in the predicted doc.
    ref = Doc(nlp.vocab, words=["aspirin", "like", "drugs", "aspirin"], spaces=[False, True, True, False])
    ref.spans["sc"] = [ref.char_span(0, 7, label="DRUG"), ref.char_span(18, 25, label="DRUG")]
    eg = Example(nlp.make_doc(ref.text), ref)
    assert len(eg.predicted) == 3
    with pytest.warns(UserWarning, match="1 misaligned"):
        nlp.initialize(lambda: [eg])


def test_decoding_runs_on_one_cpu_thread_and_restores_the_setting(trained, monkeypatch):
    """CRF decoding is many tiny ops: on the CPU it runs single-threaded (no waiting on
    threads that other processes keep off the cores), then torch's setting is restored."""
    import torch

    nlp, examples = trained
    ner = nlp.get_pipe("crf_ner")
    seen = []
    decode_levels = type(ner.head).decode_levels

    def spy(self, *args, **kwargs):
        seen.append(torch.get_num_threads())
        return decode_levels(self, *args, **kwargs)

    monkeypatch.setattr(type(ner.head), "decode_levels", spy)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        docs = list(nlp.pipe([eg.reference.text for eg in examples[:4]]))
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert docs and seen and all(n == (1 if ner.head.crf.allowed.device.type == "cpu" else 2)
                                 for n in seen)
