"""split_doc: packing by max_length, never cutting an entity, provenance of each part."""
import pytest
import spacy
from spacy.tokens import DocBin, Span

from spacy_crf_ner.data import (
    ConversionReport,
    get_provenance,
    set_provenance,
    split_doc,
    standoff_to_docs,
)


@pytest.fixture(scope="module")
def nlp():
    return spacy.blank("en")


def absolute(parts, key="sc"):
    """(label, start, end, id) of all spans, in source-text coordinates."""
    out = []
    for part in parts:
        offset = get_provenance(part).offset
        for s in part.spans[key]:
            out.append((s.label_, offset + s.start_char, offset + s.end_char, s.id_))
    return sorted(out)


def make(nlp, text, entities, **options):
    """Convert text + [(label, start, end)] through the reader, with a report."""
    ann = "".join(f"T{i}\t{lab} {s} {e}\t{text[s:e]}\n" for i, (lab, s, e) in
                  enumerate(entities, 1))
    report = ConversionReport()
    return standoff_to_docs(nlp, text, ann, report=report, **options), report


PARAS = "one two three.\n\nfour five six seven.\n\neight nine.\n\nten eleven twelve thirteen."


def test_no_limit_means_no_split(nlp):
    (doc,), report = make(nlp, PARAS, [("X", 0, 3)])
    prov = get_provenance(doc)
    assert (prov.source, prov.offset, prov.length, prov.part, prov.n_parts) == (
        "doc.txt", 0, len(PARAS), 0, 1)
    assert report.parts == 1


def test_packs_paragraphs_up_to_max_length(nlp):
    doc = nlp.make_doc(PARAS)
    set_provenance(doc, "p.txt")
    lengths = [len(nlp.make_doc(p)) for p in PARAS.split("\n\n")]
    assert lengths == [4, 5, 3, 5]
    parts = split_doc(doc, max_length=10)
    # paragraph 1 (4 tokens + "\n\n") and 2 do not fit together in 10; 3 and 4 do not either
    assert [p.text for p in parts] == [
        "one two three.\n\n", "four five six seven.\n\neight nine.\n\n",
        "ten eleven twelve thirteen.",
    ]
    assert all(len(p) <= 10 for p in parts)
    assert "".join(p.text for p in parts) == PARAS
    provs = [get_provenance(p) for p in parts]
    assert [(v.part, v.n_parts) for v in provs] == [(0, 3), (1, 3), (2, 3)]
    for part, prov in zip(parts, provs):
        assert PARAS[prov.offset:prov.offset + len(part.text)] == part.text
        assert prov.source == "p.txt" and prov.length == len(PARAS)


def test_entity_across_a_separator_keeps_segments_joined(nlp):
    s = PARAS.index("three")
    e = PARAS.index("five") + 4
    parts, report = make(nlp, PARAS, [("X", s, e), ("Y", 0, 3)], max_length=6)
    texts = [p.text for p in parts]
    assert any("three.\n\nfour five" in t for t in texts)
    assert absolute(parts) == [("X", s, e, "T1"), ("Y", 0, 3, "T2")]
    assert report.parts == len(parts) and report.documents == 1


def test_long_segment_is_cut_at_last_boundary_outside_entities(nlp):
    text = "a b c d e f g h i j"
    # max 4 tokens: the cut after "d" (token 4) is inside "d e", so it goes after "c"
    parts, report = make(nlp, text, [("X", 6, 9)], max_length=4)
    assert [p.text for p in parts] == ["a b c ", "d e f g ", "h i j"]
    assert absolute(parts) == [("X", 6, 9, "T1")]
    assert report.over_length == 0


def test_impossible_cut_keeps_part_longer_and_counts_it(nlp):
    text = "a b c d e f g h"
    parts, report = make(nlp, text, [("X", 0, 11)], max_length=3)
    assert [p.text for p in parts] == ["a b c d e f ", "g h"]
    assert report.over_length == 1
    assert absolute(parts) == [("X", 0, 11, "T1")]


def test_nothing_is_lost_and_ents_follow(nlp):
    text = "alpha beta.\n\ngamma delta epsilon.\n\nzeta eta theta iota.\n\nkappa."
    ents = [("A", 0, 5), ("B", 6, 10), ("A", 6, 10), ("C", 13, 24), ("D", 35, 43),
            ("E", 59, 64)]
    (whole,), _ = make(nlp, text, ents)
    parts, report = make(nlp, text, ents, max_length=5)
    assert len(parts) > 2
    assert absolute(parts) == absolute([whole])
    ents_parts = sorted((e.label_, get_provenance(p).offset + e.start_char) for p in parts
                        for e in p.ents)
    assert ents_parts == sorted((e.label_, e.start_char) for e in whole.ents)
    report.check()


def test_group_attrs_are_sliced_with_their_spans(nlp):
    doc = nlp.make_doc("aa bb.\n\ncc dd.\n\nee ff.")
    set_provenance(doc, "s.txt")
    spans = [Span(doc, 0, 1, label="X"), Span(doc, 4, 5, label="Y"), Span(doc, 8, 9, label="Z")]
    doc.spans["pred"] = spans
    doc.spans["pred"].attrs["scores"] = [0.1, 0.2, 0.3]
    doc.spans["pred"].attrs["name"] = "model"
    parts = split_doc(doc, max_length=4)
    assert [[s.label_ for s in p.spans["pred"]] for p in parts] == [["X"], ["Y"], ["Z"]]
    assert [p.spans["pred"].attrs["scores"] for p in parts] == [[0.1], [0.2], [0.3]]
    assert all(p.spans["pred"].attrs["name"] == "model" for p in parts)


def test_parts_survive_docbin(nlp):
    parts, _ = make(nlp, PARAS, [("X", 0, 3), ("Y", 16, 20)], max_length=6)
    doc_bin = DocBin(store_user_data=True)
    for p in parts:
        doc_bin.add(p)
    loaded = list(DocBin().from_bytes(doc_bin.to_bytes()).get_docs(nlp.vocab))
    assert [get_provenance(d) for d in loaded] == [get_provenance(p) for p in parts]
    assert absolute(loaded) == absolute(parts)


def test_custom_regex_and_no_regex(nlp):
    text = "a b c | d e f | g h"
    doc = nlp.make_doc(text)
    parts = split_doc(doc, split_regex=r"\| ", max_length=5)
    assert [p.text for p in parts] == ["a b c | ", "d e f | ", "g h"]
    parts = split_doc(doc, split_regex=None, max_length=5)  # plain cuts every 5 tokens
    assert [p.text for p in parts] == ["a b c | d ", "e f | g h"]
