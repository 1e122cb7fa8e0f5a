"""Standoff reader: policies, edge cases, counts, strict mode, DocBin survival."""
import json
from pathlib import Path

import pytest
import spacy
from spacy.tokens import DocBin

from spacy_crf_ner.spans import select_longest_first
from spacy_crf_ner.data import (
    ConversionReport,
    StandoffError,
    get_annotations,
    get_provenance,
    get_span_annotation,
    read_standoff,
    standoff_to_docs,
)

FIXTURES = Path(__file__).parent / "fixtures" / "standoff"
CORPUS = FIXTURES / "corpus"


@pytest.fixture(scope="module")
def nlp():
    return spacy.blank("en")


@pytest.fixture(scope="module")
def corpus(nlp):
    docs, report = read_standoff(CORPUS, nlp)
    return {get_provenance(d).source: d for d in docs}, report


def spans_of(doc, key="sc"):
    return [(s.label_, s.start_char, s.end_char, s.id_) for s in doc.spans[key]]


def convert(nlp, text, ann, **options):
    report = ConversionReport()
    docs = standoff_to_docs(nlp, text, ann, report=report, **options)
    return docs, report


# -- the fixture corpus: counts known by hand ---------------------------------------------
def test_fixture_corpus_counts(corpus):
    _, report = corpus
    expected = json.loads((FIXTURES / "expected_counts.json").read_text())
    got = report.to_dict()
    for key, value in expected.items():
        if key.startswith("_"):
            continue
        assert got[key] == value, key
    report.check()
    assert report.spans_read == report.kept + report.n_dropped


def test_fixture_corpus_docs(corpus):
    docs, _ = corpus
    assert sorted(docs) == ["a.txt", "c.txt", "e.txt", "h.txt", "sub/b.txt"]
    assert spans_of(docs["c.txt"]) == [] and spans_of(docs["h.txt"]) == []
    # e: only the two valid entities survive; the mismatching text column keeps its offsets
    assert spans_of(docs["e.txt"]) == [
        ("Disease", 14, 29, "T1"),
        ("Disease", 34, 40, "T5"),
    ]


def test_overlaps_go_to_span_group_and_ents_follow_rule(corpus):
    docs, _ = corpus
    doc = docs["a.txt"]
    assert spans_of(doc) == [
        ("Disease", 0, 30, "T1"),
        ("Modifier", 9, 30, "T2"),
        ("Disease", 36, 51, "T3"),
        ("DiseaseClass", 36, 51, "T4"),  # same offsets, different label: both kept
        ("Disease", 75, 88, "T5"),
    ]
    # longest first; equal length and start: label order picks T3 over T4
    assert [(e.label_, e.id_) for e in doc.ents] == [
        ("Disease", "T1"),
        ("Disease", "T3"),
        ("Disease", "T5"),
    ]
    assert all(t.ent_iob_ in "BIO" for t in doc)  # outside tokens are O, not missing


def test_attributes_notes_and_other_lines_are_kept(corpus):
    docs, _ = corpus
    doc = docs["a.txt"]
    by_id = {s.id_: s for s in doc.spans["sc"]}
    assert get_span_annotation(by_id["T5"])["attributes"] == {"Negated": True}
    assert get_span_annotation(by_id["T1"])["attributes"] == {"Certainty": "Likely"}
    assert get_span_annotation(by_id["T3"])["attributes"] == {"Severity": "High"}
    assert get_span_annotation(by_id["T4"])["attributes"] == {}
    assert get_span_annotation(by_id["T2"])["notes"] == [("AnnotatorNotes", "nested in T1")]
    raws = [line[2] for line in get_annotations(doc)["other_lines"]]
    assert raws == [
        "N1\tReference T1 MeSH:D011125\tAdenomatous Polyposis Coli",
        "R1\tPart_of Arg1:T2 Arg2:T1",
        "E1\tCause:T5 Theme:T1",
        "*\tEquiv T3 T4",
        "A4\tSpeculation E1",
    ]


def test_crlf_bom_emoji_and_discontinuous(corpus):
    docs, _ = corpus
    doc = docs["sub/b.txt"]
    raw = (CORPUS / "sub" / "b.txt").read_bytes().decode("utf-8")
    assert doc.text == raw and raw.startswith("\ufeff") and "\r\n" in raw
    got = {(s.label_, s.text, s.id_) for s in doc.spans["sc"]}
    assert got == {
        ("Disease", "Café au lait spots", "T1"),  # starts after the BOM
        ("Disease", "neurofibromatosis\r\ntype 1", "T2"),  # fragments merged over \r\n
        ("Lesion", "tumour", "T3"),  # truly discontinuous: one span per fragment
        ("Lesion", "polyp", "T3"),
        ("Sign", "lait spot", "T4"),  # ends inside "spots": token split
        ("Symbol", "😀", "T5"),
    }
    for span in doc.spans["sc"]:
        assert raw[span.start_char:span.end_char] == span.text
    assert get_span_annotation(next(s for s in doc.spans["sc"] if s.id_ == "T3"))[
        "attributes"
    ] == {"Negated": True}
    assert "spot" in [t.text for t in doc] and "s" in [t.text for t in doc]


DISC_TEXT = "the tumour and the large polyp were removed"
DISC_ANN = "T1\tLesion 4 10;25 30\ttumour polyp\nA1\tNegated T1\n"


def test_discontinuous_split(nlp):
    (doc,), report = convert(nlp, DISC_TEXT, DISC_ANN, discontinuous="split")
    assert [s.text for s in doc.spans["sc"]] == ["tumour", "polyp"]
    assert (report.t_lines, report.extra_fragments, report.spans_read, report.kept) == (1, 1, 2, 2)
    report.check()


def test_discontinuous_cover(nlp):
    (doc,), report = convert(nlp, DISC_TEXT, DISC_ANN, discontinuous="cover")
    assert [s.text for s in doc.spans["sc"]] == ["tumour and the large polyp"]
    assert (report.spans_read, report.kept, report.extra_fragments) == (1, 1, 0)


def test_discontinuous_skip(nlp):
    (doc,), report = convert(nlp, DISC_TEXT, DISC_ANN, discontinuous="skip")
    assert list(doc.spans["sc"]) == []
    assert report.dropped == {"discontinuous_skipped": 1}
    assert report.ignored_lines["A on dropped entity"] == 1
    report.check()


def test_whitespace_only_gap_is_merged_under_every_policy(nlp):
    text = "neurofibromatosis\n  type 1 here"
    ann = "T1\tDisease 0 17;20 26\tneurofibromatosis type 1\n"
    for policy in ("split", "cover", "skip"):
        (doc,), report = convert(nlp, text, ann, discontinuous=policy)
        assert [s.text for s in doc.spans["sc"]] == ["neurofibromatosis\n  type 1"], policy
        assert report.merged_fragments == 1 and report.text_mismatches == 0


ALIGN_TEXT = "The cancers spread."
ALIGN_ANN = "T1\tDisease 4 10\tcancer\nT2\tDisease 12 18\tspread\n"


def test_alignment_split_tokens(nlp):
    (doc,), report = convert(nlp, ALIGN_TEXT, ALIGN_ANN, alignment="split_tokens")
    assert [t.text for t in doc] == ["The", "cancer", "s", "spread", "."]
    assert [s.text for s in doc.spans["sc"]] == ["cancer", "spread"]
    assert report.alignment == {"exact": 1, "split_tokens": 1}
    assert report.tokens_split == 1 and report.misaligned == 1 and report.aligned_total == 2


def test_alignment_expand(nlp):
    (doc,), report = convert(nlp, ALIGN_TEXT, ALIGN_ANN, alignment="expand")
    assert [s.text for s in doc.spans["sc"]] == ["cancers", "spread"]
    assert [t.text for t in doc] == [t.text for t in nlp.make_doc(ALIGN_TEXT)]
    assert report.alignment == {"exact": 1, "expanded": 1}


def test_alignment_contract_drops_when_nothing_left(nlp):
    ann = ALIGN_ANN + "T3\tDisease 0 10\tThe cancer\n"
    (doc,), report = convert(nlp, ALIGN_TEXT, ann, alignment="contract")
    assert [s.text for s in doc.spans["sc"]] == ["The", "spread"]
    assert report.alignment == {"exact": 1, "contracted": 1}
    assert report.dropped == {"misaligned": 1} and report.warnings == {"misaligned": 1}
    report.check()


def test_alignment_strict_drops_and_warns(nlp):
    (doc,), report = convert(nlp, ALIGN_TEXT, ALIGN_ANN, alignment="strict")
    assert [s.text for s in doc.spans["sc"]] == ["spread"]
    assert report.dropped == {"misaligned": 1}
    assert "T1" in report.issues[0].message
    assert (report.issues[0].file, report.issues[0].line) == ("doc.ann", 1)


def test_split_tokens_handles_whitespace_edges(nlp):
    text = "a  b c d"
    # " b" starts on a trailing space; "c " ends after one; "  " is inside whitespace
    ann = "T1\tX 1 4\t  b\nT2\tY 5 7\tc \nT3\tZ 1 3\t  \n"
    (doc,), report = convert(nlp, text, ann)
    assert doc.text == text
    assert sorted((s.label_, s.text) for s in doc.spans["sc"]) == [
        ("X", "  b"), ("Y", "c "), ("Z", "  "),
    ]
    report.check()


def test_no_ents_option(nlp):
    (doc,), report = convert(nlp, ALIGN_TEXT, ALIGN_ANN, set_ents=False)
    assert len(doc.spans["sc"]) == 2 and len(doc.ents) == 0
    assert not doc.has_annotation("ENT_IOB")
    assert report.in_ents == 0 and report.not_in_ents == 0


def test_span_key_option(nlp):
    (doc,), _ = convert(nlp, ALIGN_TEXT, ALIGN_ANN, span_key="gold")
    assert "sc" not in doc.spans and len(doc.spans["gold"]) == 2


def test_select_ents_is_deterministic(nlp):
    (doc,), _ = convert(
        nlp, "x new york city y",
        "T1\tB 2 10\tnew york\nT2\tA 2 10\tnew york\nT3\tC 6 10\tyork\nT4\tD 11 17\tcity y\n",
        set_ents=False,
    )
    spans = list(doc.spans["sc"])
    first = [(s.label_, s.text) for s in select_longest_first(spans)]
    assert first == [("A", "new york"), ("D", "city y")]
    assert [(s.label_, s.text) for s in select_longest_first(reversed(spans))] == first


def test_other_language_tokenizer():
    fr = spacy.blank("fr")
    (doc,), _ = convert(fr, "L'hôpital de l'enfant.", "T1\tLieu 2 9\thôpital\n")
    assert [t.text for t in doc] == [t.text for t in fr.make_doc(doc.text)]
    assert [s.text for s in doc.spans["sc"]] == ["hôpital"]
    assert doc.vocab is fr.vocab


# -- malformed input: warnings by default, StandoffError with strict=True -----------------
BAD_ANNS = {
    "malformed_entity": "T1\tX 0 a\tabc\n",
    "out_of_range": "T1\tX 0 99\tabc\n",
    "duplicate_id": "T1\tX 0 3\tabc\nT1\tX 4 7\tdef\n",
    "unknown_line_type": "Q1\twhat\n",
    "text_mismatch": "T1\tX 0 3\tabd\n",
    "dangling_reference": "A1\tNeg T7\n",
}


@pytest.mark.parametrize("code", sorted(BAD_ANNS))
def test_bad_lines_warn_then_rest_converts(nlp, code):
    ann = BAD_ANNS[code] + "T9\tOK 8 11\tghi\n"
    (doc,), report = convert(nlp, "abc def ghi", ann)
    assert report.warnings[code] >= 1
    assert ("OK", "ghi") in [(s.label_, s.text) for s in doc.spans["sc"]]
    issue = next(i for i in report.issues if i.code == code)
    assert issue.file == "doc.ann" and issue.line is not None
    report.check()


@pytest.mark.parametrize("code", sorted(BAD_ANNS))
def test_strict_mode_raises(nlp, code):
    with pytest.raises(StandoffError) as err:
        convert(nlp, "abc def ghi", BAD_ANNS[code], strict=True)
    assert err.value.issue.code == code
    assert "doc.ann:" in str(err.value)


def write_pair(folder, name, txt, ann):
    if txt is not None:
        (folder / f"{name}.txt").write_bytes(txt if isinstance(txt, bytes) else txt.encode())
    if ann is not None:
        (folder / f"{name}.ann").write_bytes(ann if isinstance(ann, bytes) else ann.encode())


def test_file_level_problems_are_counted(nlp, tmp_path):
    write_pair(tmp_path, "ok", "abc def", "T1\tX 0 3\tabc\n")
    write_pair(tmp_path, "latin", "caf\xe9\nbad".encode("latin-1"), "T1\tX 0 3\tcaf\n")
    write_pair(tmp_path, "badann", "abc", b"T1\tX 0 3\tab\xff\nT2\tX 0 1\ta\n")
    write_pair(tmp_path, "orphan", None, "T1\tX 0 3\tabc\n")
    write_pair(tmp_path, "alone", "just text", None)
    docs, report = read_standoff(tmp_path, nlp)
    assert sorted(get_provenance(d).source for d in docs) == ["alone.txt", "ok.txt"]
    assert report.dropped == {"unreadable_file": 3, "missing_txt": 1}
    codes = {(i.file, i.code, i.line) for i in report.issues}
    assert ("latin.txt", "decode_error", 1) in codes
    assert ("badann.ann", "decode_error", 1) in codes
    assert ("orphan.ann", "ann_without_txt", None) in codes
    report.check()
    docs, report = read_standoff(tmp_path, nlp, keep_txt_only=False)
    assert [get_provenance(d).source for d in docs] == ["ok.txt"]
    assert report.txt_only == 1 and report.files_skipped["txt_only"] == 1
    with pytest.raises(StandoffError, match="alone.txt: .txt_without_ann"):
        read_standoff(tmp_path, nlp, strict=True)
    with pytest.raises(StandoffError, match="badann.ann:1: .decode_error"):
        read_standoff(tmp_path, nlp, strict=True, keep_txt_only=False)


def test_unusable_paths(nlp, tmp_path):
    with pytest.raises(StandoffError, match="does not exist"):
        read_standoff(tmp_path / "nope", nlp)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.md").write_text("x")
    with pytest.raises(StandoffError, match="No .txt or .ann"):
        read_standoff(tmp_path / "empty", nlp)


def test_bad_options(nlp):
    with pytest.raises(ValueError, match="alignment"):
        read_standoff(CORPUS, nlp, alignment="snap")
    with pytest.raises(ValueError, match="discontinuous"):
        read_standoff(CORPUS, nlp, discontinuous="join")
    with pytest.raises(TypeError, match="max_lenght"):
        read_standoff(CORPUS, nlp, max_lenght=3)


# -- DocBin survival ----------------------------------------------------------------------
def test_everything_survives_docbin(corpus, nlp):
    docs, _ = corpus
    doc_bin = DocBin(store_user_data=True)
    for doc in docs.values():
        doc_bin.add(doc)
    loaded = list(DocBin().from_bytes(doc_bin.to_bytes()).get_docs(nlp.vocab))
    for before, after in zip(docs.values(), loaded):
        assert after.text == before.text
        assert spans_of(after) == spans_of(before)
        assert [(e.label_, e.start, e.end, e.id_) for e in after.ents] == [
            (e.label_, e.start, e.end, e.id_) for e in before.ents
        ]
        assert get_provenance(after) == get_provenance(before)
        for a, b in zip(after.spans["sc"], before.spans["sc"]):
            assert get_span_annotation(a) == get_span_annotation(b)
    a_doc = next(d for d in loaded if get_provenance(d).source == "a.txt")
    t2 = next(s for s in a_doc.spans["sc"] if s.id_ == "T2")
    assert get_span_annotation(t2)["notes"] == [("AnnotatorNotes", "nested in T1")]


def test_reports_merge_and_stay_consistent(nlp):
    total = ConversionReport()
    for text, ann in [(ALIGN_TEXT, ALIGN_ANN), (DISC_TEXT, DISC_ANN), ("abc", "T1\tX 0 9\tabc\n")]:
        _, report = convert(nlp, text, ann)
        total.merge(report)
    assert (total.t_lines, total.spans_read, total.kept) == (4, 5, 4)
    assert total.dropped == {"out_of_range": 1} and total.warnings == {"out_of_range": 1}
    assert len(total.issues) == 1 and total.attributes == 1
    total.check()


def test_data_layer_does_not_import_torch_or_the_model():
    """The data modules must stay importable without the ML stack (spaCy itself aside)."""
    import ast

    root = Path(__file__).parent.parent / "spacy_crf_ner"
    files = list((root / "data").glob("*.py")) + [root / "cli" / "convert.py"]
    for file in files:
        for node in ast.walk(ast.parse(file.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [("." * node.level) + (node.module or "")]
            else:
                continue
            for name in names:
                assert not name.startswith(("torch", "transformers", "spacy_transformers")), file
                assert "models" not in name and "pipeline" not in name, (file, name)
