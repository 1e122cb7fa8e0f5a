"""The document-consistency post-step: it adds copies of predicted spans at other
occurrences of the same words, and changes nothing else."""
import numpy
import pytest
import spacy

from spacy_crf_ner.spans.consistency import propagate_within_doc


def as_set(spans, conf):
    return {(tuple(s), round(float(c), 4)) for s, c in zip(spans.tolist(), conf.tolist())}


def test_copies_go_to_free_occurrences_only():
    words = "The APC gene . APC patients and APC tumour ; x APC . A a".split()
    spans = numpy.array([[0, 1, 2], [1, 7, 9]])  # APC (label 0), "APC tumour" (label 1)
    conf = numpy.array([0.9, 0.8], dtype="float32")
    out, out_conf = propagate_within_doc(words, spans, conf)
    # the originals are all kept, unchanged
    assert as_set(spans, conf) <= as_set(out, out_conf)
    added = as_set(out, out_conf) - as_set(spans, conf)
    # APC at 4 and 11 copied with its label and confidence; APC at 7 lies inside
    # "APC tumour" (another label): not copied, no overlap created
    assert added == {((0, 4, 5), 0.9), ((0, 11, 12), 0.9)}
    assert [tuple(s) for s in out.tolist()] == sorted(
        [tuple(s) for s in out.tolist()], key=lambda s: (s[1], s[2], s[0]))


def test_majority_label_spreads_and_short_strings_never():
    words = "x B12 y B12 z B12 w B12 . A and A".split()
    spans = numpy.array([[0, 1, 2], [0, 3, 4], [1, 5, 6], [2, 9, 10]])
    conf = numpy.array([0.6, 0.7, 0.99, 0.9], dtype="float32")
    out, out_conf = propagate_within_doc(words, spans, conf)
    added = as_set(out, out_conf) - as_set(spans, conf)
    assert added == {((0, 7, 8), 0.7)}  # label 0 (2 votes) beats label 1 (1 vote); "A" stays
    empty = numpy.zeros((0, 3), dtype="int64")
    assert len(propagate_within_doc(words, empty, numpy.zeros(0, "float32"))[0]) == 0


def test_switch_in_the_pipe_changes_only_what_the_rule_says():
    nlp = spacy.blank("en")
    ner = nlp.add_pipe("crf_ner")
    for label in ("ANATOMY", "DRUG"):
        ner.add_label(label)
    assert ner.cfg["document_consistency"] is False
    text = "Known lung tumour ; aspirin today . Then lung again and aspirin ."
    spans = numpy.array([[0, 1, 2], [1, 4, 5]])  # lung (ANATOMY), aspirin (DRUG)
    conf = numpy.array([0.9, 0.7], dtype="float32")
    before = nlp.make_doc(text)
    ner.set_annotations([before], [(spans, conf)])
    ner.cfg["document_consistency"] = True
    after = nlp.make_doc(text)
    ner.set_annotations([after], [(spans, conf)])
    old = {(s.start, s.end, s.label_) for s in before.spans["sc"]}
    new = {(s.start, s.end, s.label_) for s in after.spans["sc"]}
    assert old == {(1, 2, "ANATOMY"), (4, 5, "DRUG")}
    assert new - old == {(8, 9, "ANATOMY"), (11, 12, "DRUG")}
    assert list(after.spans["sc"].attrs["scores"]) == pytest.approx([0.9, 0.7, 0.9, 0.7])
    assert {(e.start, e.end, e.label_) for e in after.ents} == new
