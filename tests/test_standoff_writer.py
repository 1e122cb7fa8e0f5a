"""Standoff writer: exact round trips (whole and split documents), ids, scores, properties."""
from collections import Counter
from pathlib import Path

import pytest
import spacy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from spacy.tokens import Span

from spacy_crf_ner.data import (
    format_ann,
    get_provenance,
    parse_ann,
    read_standoff,
    set_provenance,
    standoff_to_docs,
    write_standoff,
)

CORPUS = Path(__file__).parent / "fixtures" / "standoff" / "corpus"


@pytest.fixture(scope="module")
def nlp():
    return spacy.blank("en")


def ann_content(text):
    """Comparable content of an .ann file: entities, attributes, notes and other lines."""
    parsed = parse_ann(text)
    return (
        sorted((e.id, e.label, tuple(e.fragments), e.text) for e in parsed.entities),
        sorted((a.id, a.name, a.target, a.value) for a in parsed.attributes),
        sorted((n.id, n.type, n.target, n.text) for n in parsed.notes),
        sorted(o.raw for o in parsed.others),
    )


@pytest.mark.parametrize("max_length", [0, 4])
def test_fixture_round_trip_is_exact(nlp, tmp_path, max_length):
    docs, report = read_standoff(CORPUS, nlp, max_length=max_length)
    if max_length:
        assert report.parts > report.documents  # the round trip goes through split docs
    written = write_standoff(docs, tmp_path)
    assert written.files == written.texts == 5 and not written.issues
    for name in ("a", "sub/b", "h", "c"):
        assert (tmp_path / f"{name}.txt").read_bytes() == (CORPUS / f"{name}.txt").read_bytes()
    for name in ("a", "sub/b", "h"):
        original = (CORPUS / f"{name}.ann").read_text(encoding="utf-8")
        assert ann_content((tmp_path / f"{name}.ann").read_text(encoding="utf-8")) == \
            ann_content(original), name
    # e.ann: exactly the entities that were kept (bad lines are not written back)
    got = ann_content((tmp_path / "e.ann").read_text())
    assert got[0] == [("T1", "Disease", ((14, 29),), "cystic fibrosis"),
                      ("T5", "Disease", ((34, 40),), "asthma")]
    assert (tmp_path / "c.ann").read_text() == ""


def test_discontinuous_written_back_under_cover_policy(nlp, tmp_path):
    docs, _ = read_standoff(CORPUS / "sub", nlp, discontinuous="cover")
    write_standoff(docs, tmp_path)
    assert ann_content((tmp_path / "b.ann").read_text(encoding="utf-8")) == ann_content(
        (CORPUS / "sub" / "b.ann").read_text(encoding="utf-8"))


def test_changed_fragments_are_written_as_separate_entities(nlp):
    text = "the tumour and the large polyp were removed"
    ann = "T1\tLesion 4 10;25 30\ttumour polyp\nA1\tNegated T1\n"
    (doc,) = standoff_to_docs(nlp, text, ann)
    doc.spans["sc"] = [s for s in doc.spans["sc"] if s.text == "tumour"]
    assert ann_content(format_ann([doc])) == (
        [("T1", "Lesion", ((4, 10),), "tumour")], [("A1", "Negated", "T1", True)], [], [])


def test_ids_fresh_and_unique(nlp):
    doc = nlp.make_doc("aa bb cc dd")
    set_provenance(doc, "x.txt")
    doc.spans["sc"] = [
        Span(doc, 0, 1, label="X", span_id="T5"),
        Span(doc, 1, 2, label="X", span_id="T5"),  # duplicate id: second gets a fresh one
        Span(doc, 2, 3, label="Y"),
        Span(doc, 3, 4, label="Y"),
    ]
    entities = ann_content(format_ann([doc]))[0]
    assert [e[0] for e in entities] == ["T5", "T6", "T7", "T8"]
    assert [e[3] for e in entities] == ["aa", "bb", "cc", "dd"]


def test_scores_written_as_notes_and_other_getters(nlp):
    doc = nlp.make_doc("aa bb cc")
    set_provenance(doc, "x.txt")
    doc.spans["pred"] = [Span(doc, 0, 1, label="X"), Span(doc, 2, 3, label="Y")]
    doc.spans["pred"].attrs["scores"] = [0.91234, 0.5]
    doc.ents = [Span(doc, 1, 2, label="Z")]
    content = ann_content(format_ann([doc], "pred"))
    assert [(e[1], e[3]) for e in content[0]] == [("X", "aa"), ("Y", "cc")]
    assert [(n[1], n[2], n[3]) for n in content[2]] == [
        ("AnnotatorNotes", "T1", "conf=0.9123"), ("AnnotatorNotes", "T2", "conf=0.5000")]
    assert ann_content(format_ann([doc], "pred", write_scores=False))[2] == []
    assert [e[3] for e in ann_content(format_ann([doc], "ents"))[0]] == ["bb"]
    getter = lambda d: [s for s in d.spans["pred"] if s.label_ == "Y"]  # noqa: E731
    assert [e[3] for e in ann_content(format_ann([doc], getter))[0]] == ["cc"]


def test_span_with_line_break_is_written_as_fragments_and_reads_back(nlp, tmp_path):
    text = "left side\r\nright side"
    doc = nlp.make_doc(text)
    set_provenance(doc, "lb.txt")
    doc.spans["sc"] = [doc.char_span(5, 16, label="X")]  # "side\r\nright"
    write_standoff([doc], tmp_path)
    ann = (tmp_path / "lb.ann").read_text()
    assert ann == "T1\tX 5 9;11 16\tside right\n"
    (again,), _ = read_standoff(tmp_path, nlp)
    assert [(s.label_, s.start_char, s.end_char) for s in again.spans["sc"]] == [("X", 5, 16)]


def test_missing_parts_write_ann_but_not_txt(nlp, tmp_path):
    text = "aa bb.\n\ncc dd.\n\nee ff."
    ann = "T1\tX 0 2\taa\nT2\tY 16 18\tee\n"
    parts = standoff_to_docs(nlp, text, ann, source="m.txt", max_length=4)
    assert len(parts) == 3
    report = write_standoff([parts[0], parts[2]], tmp_path)
    assert not (tmp_path / "m.txt").exists()
    assert [i.code for i in report.issues] == ["incomplete_parts"]
    assert ann_content((tmp_path / "m.ann").read_text())[0] == [
        ("T1", "X", ((0, 2),), "aa"), ("T2", "Y", ((16, 18),), "ee")]


def test_predicted_docs_without_ids_and_other_lines(nlp, tmp_path):
    text = "BRCA1 causes breast cancer."
    ann = "T1\tDisease 13 26\tbreast cancer\nN1\tReference T1 MeSH:D001943\n"
    (gold,) = standoff_to_docs(nlp, text, ann, source="p.txt")
    pred = nlp.make_doc(gold.text)
    pred.user_data["standoff"] = dict(gold.user_data["standoff"])
    pred.spans["sc"] = [pred.char_span(13, 26, label="Disease"), pred.char_span(0, 5, label="Gene")]
    report = write_standoff([pred], tmp_path)
    assert get_provenance(pred).source == "p.txt"
    assert ann_content((tmp_path / "p.ann").read_text())[0] == [
        ("T1", "Gene", ((0, 5),), "BRCA1"), ("T2", "Disease", ((13, 26),), "breast cancer")]
    # gold docs write their N line back; it refers to T1, which the gold span keeps
    report = write_standoff([gold], tmp_path / "gold")
    assert report.other_lines == 1
    assert "N1\tReference T1 MeSH:D001943\n" in (tmp_path / "gold" / "p.ann").read_text()


# -- property: random texts and entities survive write -> read -> write exactly -----------
ALPHABET = "ab cé.-,\t😀Ω'(" + "x" * 3


@st.composite
def documents(draw):
    pieces = draw(st.lists(st.text(alphabet=ALPHABET, min_size=1, max_size=12),
                           min_size=1, max_size=6))
    breaks = draw(st.lists(st.sampled_from(["\n", "\r\n", "\n\n", " "]),
                           min_size=len(pieces), max_size=len(pieces)))
    text = "".join(p + b for p, b in zip(pieces, breaks))
    if draw(st.booleans()):
        text = "\ufeff" + text
    # entities never contain a line break (BRAT stores the text on one line)
    candidates = [
        (s, e) for s in range(len(text)) for e in range(s + 1, min(len(text), s + 15) + 1)
        if "\n" not in text[s:e] and "\r" not in text[s:e]
    ]
    chosen = draw(st.lists(st.sampled_from(candidates), max_size=8)) if candidates else []
    entities = []
    for s, e in chosen:
        entities.append((draw(st.sampled_from(["A", "B", "C"])), s, e))
        if draw(st.integers(0, 3)) == 0:  # same offsets, another label
            entities.append((draw(st.sampled_from(["D", "E"])), s, e))
    return text, entities


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(doc=documents(), max_length=st.sampled_from([0, 3, 7]))
def test_property_round_trip(nlp, tmp_path_factory, doc, max_length):
    text, entities = doc
    folder = tmp_path_factory.mktemp("in")
    (folder / "r.txt").write_bytes(text.encode("utf-8"))
    ann = "".join(f"T{i}\t{lab} {s} {e}\t{text[s:e]}\n" for i, (lab, s, e) in
                  enumerate(entities, 1))
    (folder / "r.ann").write_bytes(ann.encode("utf-8"))
    docs, report = read_standoff(folder, nlp, max_length=max_length)
    assert report.n_warnings == 0 and report.n_dropped == 0
    expected = Counter(entities)
    got = Counter((s.label_, get_provenance(d).offset + s.start_char,
                   get_provenance(d).offset + s.end_char) for d in docs for s in d.spans["sc"])
    assert got == expected
    assert "".join(d.text for d in docs) == text
    out = tmp_path_factory.mktemp("out")
    write_standoff(docs, out)
    assert (out / "r.txt").read_bytes() == text.encode("utf-8")
    assert ann_content((out / "r.ann").read_text(encoding="utf-8")) == ann_content(ann)
