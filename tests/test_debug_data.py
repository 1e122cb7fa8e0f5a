"""``debug-data``: corpus statistics as crf_ner will see them, from a training config."""
import json

import pytest
import spacy
from spacy.tokens import Doc, DocBin, Span
from spacy.training import Example
from typer.testing import CliRunner

from spacy_crf_ner.cli import _register_commands, app
from spacy_crf_ner.corpus_stats import corpus_stats, label_drift, length_histogram

_register_commands()


def ref_doc(nlp, words, spaces, spans):
    """A reference doc with its own tokens; ``spans``: (start, end, label) in those tokens."""
    doc = Doc(nlp.vocab, words=words, spaces=spaces)
    doc.spans["sc"] = [Span(doc, s, e, label=label) for s, e, label in spans]
    return doc


def train_docs(nlp):
    words = "chronic kidney disease of the left kidney , takes aspirin".split()
    # DISORDER chronic kidney disease > kidney disease (nested, depth 2);
    # ANATOMY kidney (inside a DISORDER, other label); ANATOMY left kidney;
    # DISORDER "disease of the left" crosses "chronic kidney disease" (same label);
    # DRUG aspirin twice (duplicate); ANATOMY "left kidney" also as DISORDER (same offsets).
    doc1 = ref_doc(nlp, words, [True] * 9 + [False], [
        (0, 3, "DISORDER"), (1, 3, "DISORDER"), (1, 2, "ANATOMY"), (5, 7, "ANATOMY"),
        (2, 6, "DISORDER"), (9, 10, "DRUG"), (9, 10, "DRUG"), (5, 7, "DISORDER"),
    ])
    # Tokens the pipeline's tokenizer will not produce: "lung" inside "lungcancer".
    doc2 = ref_doc(nlp, ["lung", "cancer", "today"], [False, True, False],
                   [(0, 1, "ANATOMY"), (0, 2, "DISORDER")])
    # Nested without crossing: the inner DISORDER is too deep for nesting_depth 1.
    doc3 = ref_doc(nlp, ["acute", "renal", "failure"], [True, True, False],
                   [(0, 3, "DISORDER"), (1, 3, "DISORDER")])
    return [doc1, doc2, doc3]


def examples(nlp, docs):
    return [Example(nlp.make_doc(d.text), d) for d in docs]


def test_corpus_stats_counts_overlaps_nesting_and_what_training_drops():
    nlp = spacy.blank("en")
    stats = corpus_stats(examples(nlp, train_docs(nlp)), "sc", nesting_depth=1)
    assert stats.docs == 3 and stats.tokens == 16
    assert dict(stats.spans) == {"DISORDER": 7, "ANATOMY": 3, "DRUG": 2}
    assert sorted(stats.lengths["DISORDER"]) == [2, 2, 2, 2, 3, 3, 4]
    assert length_histogram(stats.lengths["DISORDER"]) == [0, 4, 3, 0, 0]  # bins 1, 2, 3-5, 6-10, >10
    # Different labels overlapping: kidney (A) in 0-3 and 1-3 (D); left kidney (A) with
    # 2-6 (D); lung (A) in lungcancer (D). The same-offsets pair is counted apart.
    assert dict(stats.overlapping_labels) == {("ANATOMY", "DISORDER"): 4}
    assert stats.same_offsets_other_label == 1 and stats.duplicates == 1
    assert dict(stats.nested_same_label) == {"DISORDER": 2}
    # 2-6 crosses 0-3 and 1-3; 5-7 (DISORDER) crosses 2-6.
    assert dict(stats.crossing_same_label) == {"DISORDER": 3}
    assert stats.max_depth["DISORDER"] == 2 and stats.max_depth["DRUG"] == 1
    # What crf_ner drops: "lung" is misaligned; in doc 1 the longest DISORDER (2-6) wins
    # and the three that cross it are dropped; "renal failure" is too deep for depth 1.
    assert stats.not_trained["misaligned"] == 1
    assert stats.not_trained["same_label_crossing"] == 3
    assert stats.not_trained["nested_too_deep"] == 1
    assert stats.not_trained["unknown_label"] == 0
    deeper = corpus_stats(examples(nlp, train_docs(nlp)), "sc", nesting_depth=2,
                          labels=["DISORDER", "ANATOMY"])
    assert deeper.not_trained["nested_too_deep"] == 0
    assert deeper.not_trained["unknown_label"] == 2


def test_label_drift():
    nlp = spacy.blank("en")
    train = corpus_stats(examples(nlp, train_docs(nlp)), "sc")
    dev_doc = ref_doc(nlp, ["aspirin", "and", "rash"], [True, True, False],
                      [(0, 1, "DRUG"), (2, 3, "SYMPTOM")])
    dev = corpus_stats(examples(nlp, [dev_doc]), "sc")
    drift = label_drift(train, dev)
    assert drift["only_in_dev"] == ["SYMPTOM"]
    assert drift["only_in_train"] == ["ANATOMY", "DISORDER"]
    assert drift["shares"]["DRUG"] == pytest.approx((2 / 12, 0.5))
    # Half the summed differences over ANATOMY, DISORDER, DRUG and SYMPTOM.
    assert drift["total_variation"] == pytest.approx(0.5 * (3 / 12 + 7 / 12 + (0.5 - 2 / 12) + 0.5))


CONFIG = """
[paths]
train = null
dev = null

[nlp]
lang = "en"
pipeline = ["crf_ner"]

[components]

[components.crf_ner]
factory = "crf_ner"
nesting_depth = 1

[corpora]

[corpora.train]
@readers = "spacy.Corpus.v1"
path = ${paths.train}

[corpora.dev]
@readers = "spacy.Corpus.v1"
path = ${paths.dev}
"""


def test_debug_data_cli_prints_tables_and_saves_json(tmp_path):
    nlp = spacy.blank("en")
    DocBin(docs=train_docs(nlp)).to_disk(tmp_path / "train.spacy")
    dev_doc = ref_doc(nlp, ["aspirin", "and", "rash"], [True, True, False],
                      [(0, 1, "DRUG"), (2, 3, "SYMPTOM")])
    DocBin(docs=[dev_doc]).to_disk(tmp_path / "dev.spacy")
    config = tmp_path / "config.cfg"
    config.write_text(CONFIG)
    out = tmp_path / "stats.json"
    result = CliRunner().invoke(app, [
        "debug-data", str(config), "--paths.train", str(tmp_path / "train.spacy"),
        "--paths.dev", str(tmp_path / "dev.spacy"), "-o", str(out)])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())  # wasabi wraps long messages
    for heading in ("Corpora", "Labels (train vs dev)", "Span lengths", "Overlaps and nesting",
                    "Spans crf_ner will not train on", "Train/dev drift", "Summary"):
        assert heading in text
    assert "labels only in dev (never learnt, always missed): ['SYMPTOM']" in text
    assert "set nesting_depth = 2" in text
    assert "5 of 12 training spans will not be used" in text
    assert "ANATOMY + DISORDER: 4" in text
    saved = json.loads(out.read_text())
    assert saved["train"]["n_spans"] == 12 and saved["dev"]["n_spans"] == 2
    assert saved["train"]["not_trained"]["misaligned"] == 1


def test_debug_data_cli_fails_cleanly(tmp_path):
    runner = CliRunner()
    missing = runner.invoke(app, ["debug-data", str(tmp_path / "nope.cfg")])
    assert missing.exit_code == 1 and "not found" in " ".join(missing.output.split())
    config = tmp_path / "config.cfg"
    config.write_text(CONFIG.replace('pipeline = ["crf_ner"]', "pipeline = []")
                      .replace('[components.crf_ner]\nfactory = "crf_ner"\nnesting_depth = 1\n', ""))
    nlp = spacy.blank("en")
    DocBin(docs=train_docs(nlp)).to_disk(tmp_path / "t.spacy")
    no_pipe = runner.invoke(app, ["debug-data", str(config), "--paths.train",
                                  str(tmp_path / "t.spacy"), "--paths.dev", str(tmp_path / "t.spacy")])
    assert no_pipe.exit_code == 1 and "has no crf_ner component" in " ".join(no_pipe.output.split())
    assert "Traceback" not in no_pipe.output


def test_debug_data_warns_about_documents_far_longer_than_a_batch(tmp_path):
    """Issue 27, item 4: a training document at least twice the batch size is named, with
    what the trainer will do with it (a batch of its own, or dropped)."""
    nlp = spacy.blank("en")
    long_words = ("the patient had chronic kidney disease for years . " * 15).split()
    long_doc = ref_doc(nlp, long_words, [True] * len(long_words),
                       [(3, 6, "DISORDER")])  # 135 words
    DocBin(docs=train_docs(nlp) + [long_doc]).to_disk(tmp_path / "train.spacy")
    DocBin(docs=train_docs(nlp)[:1]).to_disk(tmp_path / "dev.spacy")
    config = tmp_path / "config.cfg"
    config.write_text(CONFIG + '\n[training]\n\n[training.batcher]\n'
                      '@batchers = "spacy.batch_by_words.v1"\nsize = 50\n'
                      'discard_oversize = false\ntolerance = 0.2\n')
    paths = ["--paths.train", str(tmp_path / "train.spacy"),
             "--paths.dev", str(tmp_path / "dev.spacy")]
    result = CliRunner().invoke(app, ["debug-data", str(config), *paths, "-o",
                                      str(tmp_path / "stats.json")])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "longest training document: 135 words; batch size 50 words" in text
    assert "1 training document(s) are at least twice the batch size (the longest 2.7x)" in text
    assert "each goes into a batch of its own" in text and "convert --max-length" in text
    saved = json.loads((tmp_path / "stats.json").read_text())
    assert saved["long_documents"]["far_over"] == 1 and saved["long_documents"]["longest"] == 135
    dropped = CliRunner().invoke(app, ["debug-data", str(config), *paths,
                                       "--training.batcher.discard_oversize", "true"])
    assert "the batcher drops them" in " ".join(dropped.output.split())
    small = CliRunner().invoke(app, ["debug-data", str(config), *paths,
                                     "--training.batcher.size", "500"])
    assert "no training document is more than twice the batch size" in \
        " ".join(small.output.split())
