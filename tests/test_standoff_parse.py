"""parse_ann: every BRAT line type, and every malformed line reported with its line number."""
import pytest

from spacy_crf_ner.data import parse_ann


def test_entities_continuous_and_discontinuous():
    parsed = parse_ann("T1\tDisease 0 5\tfirst\nT2\tSign 10 15;20 30\ta b\n")
    assert [(e.id, e.label, e.fragments, e.text, e.line) for e in parsed.entities] == [
        ("T1", "Disease", [(0, 5)], "first", 1),
        ("T2", "Sign", [(10, 15), (20, 30)], "a b", 2),
    ]
    assert parsed.t_lines == 2 and not parsed.issues


def test_entity_text_keeps_tabs_and_spaces():
    parsed = parse_ann("T1\tX 0 7\t a\tb  \n")
    assert parsed.entities[0].text == " a\tb  "


def test_attributes_notes_and_other_lines():
    parsed = parse_ann(
        "A1\tNegated T1\n"
        "M2\tSeverity T1 High\n"
        "#1\tAnnotatorNotes T1\tsome note\ttabbed\n"
        "N1\tReference T1 MeSH:D011125\tName\n"
        "R1\tPart_of Arg1:T2 Arg2:T1\n"
        "E1\tCause:T5 Theme:T1 Theme2:E2\n"
        "*\tEquiv T3 T4\n"
    )
    assert [(a.id, a.name, a.target, a.value) for a in parsed.attributes] == [
        ("A1", "Negated", "T1", True),
        ("M2", "Severity", "T1", "High"),
    ]
    assert [(n.id, n.type, n.target, n.text) for n in parsed.notes] == [
        ("#1", "AnnotatorNotes", "T1", "some note\ttabbed")
    ]
    assert [(o.kind, o.id, o.refs) for o in parsed.others] == [
        ("N", "N1", ("T1",)),
        ("R", "R1", ("T2", "T1")),
        ("E", "E1", ("T5", "T1", "E2")),
        ("*", "*", ("T3", "T4")),
    ]
    assert parsed.others[0].raw == "N1\tReference T1 MeSH:D011125\tName"
    assert not parsed.issues


def test_crlf_bom_and_blank_lines():
    parsed = parse_ann("\ufeffT1\tX 0 3\tabc\r\n\r\n   \r\nA1\tNeg T1\r\n")
    assert parsed.entities[0].id == "T1" and parsed.entities[0].text == "abc"
    assert parsed.attributes[0].value is True and parsed.attributes[0].line == 4
    assert not parsed.issues


@pytest.mark.parametrize(
    "line,fragment",
    [
        ("T1\tX a 5\tx", "not non-negative integers"),
        ("T1\tX -1 5\tx", "not non-negative integers"),
        ("T1\tX 1.5 5\tx", "not non-negative integers"),
        ("T1\tX 5 2\tx", "before start"),
        ("T1\tX 5 5\tx", "empty fragment"),
        ("T1\tX 1 2;3\tx", "is not 'start end'"),
        ("T1\tX\tx", "expected 'Label start end'"),
        ("T1 X 1 2 x", "without tab-separated fields"),
        ("T1\tX \u0661 2\tx", "not non-negative integers"),  # non-ASCII digit
    ],
)
def test_malformed_entities_are_reported_with_line(line, fragment):
    parsed = parse_ann("T9\tOk 0 1\ta\n" + line + "\n")
    assert parsed.t_lines == 2
    assert parsed.malformed_t_lines == 1
    assert [e.id for e in parsed.entities] == ["T9"]
    (issue,) = parsed.issues
    assert issue.code == "malformed_entity" and issue.line == 2
    assert fragment in issue.message


def test_missing_text_column_is_kept_but_reported():
    parsed = parse_ann("T1\tX 0 3\n")
    assert parsed.entities[0].text is None
    assert [i.code for i in parsed.issues] == ["missing_text_column"]


def test_unknown_and_malformed_other_lines():
    parsed = parse_ann("X1\tstuff\nA1\tNegated\nR1\n#2\n")
    assert parsed.unknown_lines == 1
    assert parsed.malformed_other_lines == 3
    assert [(i.code, i.line) for i in parsed.issues] == [
        ("unknown_line_type", 1),
        ("malformed_line", 2),
        ("malformed_line", 3),
        ("malformed_line", 4),
    ]


def test_empty_ann():
    parsed = parse_ann("")
    assert parsed.t_lines == 0 and not parsed.entities and not parsed.issues
