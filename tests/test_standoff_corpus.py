"""``spacy_crf_ner.StandoffCorpus.v1``: registry, entry point, Examples, ``spacy train``."""
from importlib.metadata import entry_points
from pathlib import Path

import pytest
import spacy
from spacy.training import Example

from spacy_crf_ner.data.corpus import StandoffCorpus

CORPUS = Path(__file__).parent / "fixtures" / "standoff" / "corpus"
NAME = "spacy_crf_ner.StandoffCorpus.v1"


@pytest.fixture(scope="module")
def nlp():
    return spacy.blank("en")


def test_registered_and_declared_as_entry_point():
    assert spacy.registry.readers.get(NAME) is StandoffCorpus
    eps = entry_points()
    group = eps.select(group="spacy_readers") if hasattr(eps, "select") else eps["spacy_readers"]
    (ep,) = [e for e in group if e.name == NAME]
    assert ep.load() is StandoffCorpus


def test_examples_have_right_reference_spans(nlp):
    corpus = StandoffCorpus(CORPUS / "sub")
    (example,) = list(corpus(nlp))
    assert isinstance(example, Example)
    ref, pred = example.reference, example.predicted
    assert pred.text == ref.text
    assert [t.text for t in pred] == [t.text for t in nlp.make_doc(ref.text)]
    assert not pred.spans and not pred.has_annotation("ENT_IOB")
    assert sorted((s.label_, s.text) for s in ref.spans["sc"]) == [
        ("Disease", "Café au lait spots"), ("Disease", "neurofibromatosis\r\ntype 1"),
        ("Lesion", "polyp"), ("Lesion", "tumour"), ("Sign", "lait spot"), ("Symbol", "😀"),
    ]
    # entities that align with the predicted tokenization project onto it
    aligned = example.get_aligned_spans_y2x(ref.spans["sc"], allow_overlap=True)
    assert ("Lesion", "tumour") in [(s.label_, s.text) for s in aligned]
    assert corpus.last_report.kept == 6


def test_options_limit_and_shuffle(nlp):
    corpus = StandoffCorpus(CORPUS, limit=2, span_key="gold", set_ents=False)
    examples = list(corpus(nlp))
    assert len(examples) == 2
    assert all("gold" in eg.reference.spans and not eg.reference.ents for eg in examples)
    shuffled = StandoffCorpus(CORPUS, shuffle=True)
    texts = sorted(eg.reference.text for eg in shuffled(nlp))
    assert texts == sorted(eg.reference.text for eg in StandoffCorpus(CORPUS)(nlp))
    split = list(StandoffCorpus(CORPUS / "sub", max_length=16)(nlp))
    assert len(split) == 2


def test_resolves_from_config(nlp):
    config = spacy.util.load_config_from_str(f"""
[corpora]

[corpora.train]
@readers = "{NAME}"
path = "{CORPUS / 'sub'}"
max_length = 16
alignment = "expand"
""")
    corpora = spacy.registry.resolve(config)["corpora"]
    assert isinstance(corpora["train"], StandoffCorpus)
    examples = list(corpora["train"](nlp))
    assert len(examples) == 2
    assert corpora["train"].last_report.alignment["expanded"] == 2


def test_spacy_train_runs_on_standoff_corpus(tmp_path):
    from spacy.cli.init_config import init_config
    from spacy.cli.train import train

    config = init_config(lang="en", pipeline=["ner", "spancat"], optimize="efficiency")
    for split in ("train", "dev"):
        config["corpora"][split] = {"@readers": NAME, "path": str(CORPUS)}
    config["training"]["max_steps"] = 3
    config["training"]["eval_frequency"] = 2
    path = tmp_path / "config.cfg"
    config.to_disk(path)
    train(path, output_path=tmp_path / "out", use_gpu=-1)
    trained = spacy.load(tmp_path / "out" / "model-last")
    assert set(trained.get_pipe("ner").labels) >= {"Disease", "Lesion", "Symbol"}
    assert "DiseaseClass" in trained.get_pipe("spancat").labels
