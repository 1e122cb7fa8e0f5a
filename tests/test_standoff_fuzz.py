"""Property-based fuzzing of ``convert`` and ``predict`` (issue 19).

Hypothesis builds small BRAT folders with random texts (accents, emoji, CR/LF/CRLF), T lines
with random offsets (out of range, reversed, discontinuous, overlapping, duplicated ids,
indented), random line ends and encodings (UTF-8 with or without BOM, UTF-16, Latin-1),
missing halves of pairs, and JSONL inputs with lone surrogates. Whatever the input:

* ``convert`` exits 0 and its report adds up: every T line written is read, and
  ``T lines + extra fragments = kept + dropped``;
* every kept span's text is the slice of its ``.txt`` at the span's source offsets;
* ``predict`` never raises: it exits 0 (or 1 with a message when nothing is readable) and
  every .ann it writes has offsets inside its .txt with the matching text column.
"""
import json
import re
import tempfile
from pathlib import Path

import spacy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from spacy.tokens import DocBin, Span

from spacy_crf_ner.data.writer import one_line

from cli_runner import invoke

T_LINE = re.compile(r"^(T\d+)\t(\S+) (\d+ \d+(?:;\d+ \d+)*)\t(.*)$")
TEXT_CHARS = st.sampled_from(list("ab cé\u00a0xyz.,-") + ["\n", "\r\n", "\r", "😀", "\t"])
FUZZ = settings(max_examples=15, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@spacy.Language.component("test_fuzz_marks_tokens")
def _marks_tokens(doc):
    """Marks every other token (whitespace tokens too), as a careless model might."""
    doc.spans["sc"] = [Span(doc, i, i + 1, label="X") for i in range(0, len(doc), 2)]
    return doc


_MODEL = Path(tempfile.mkdtemp(prefix="fuzz_model_")) / "model"
_nlp = spacy.blank("en")
_nlp.add_pipe("test_fuzz_marks_tokens")
_nlp.to_disk(_MODEL)


@st.composite
def entity_lines(draw, text):
    n = len(text)
    lines = []
    for k in range(draw(st.integers(0, 6))):
        tid = f"T{draw(st.integers(1, 4)) if draw(st.booleans()) else k + 1}"
        fragments = []
        for _ in range(draw(st.sampled_from([1, 1, 1, 2]))):
            a = draw(st.integers(0, n + 2))
            b = draw(st.integers(0, n + 3))
            fragments.append((a, b))
        offsets = ";".join(f"{a} {b}" for a, b in fragments)
        column = " ".join(text[a:b] for a, b in fragments) if draw(st.booleans()) else "x"
        indent = draw(st.sampled_from(["", "", "", " ", "\t"]))
        lines.append(f"{indent}{tid}\t{draw(st.sampled_from(['DRUG', 'DIS']))} {offsets}\t"
                     f"{one_line(column)}")
    extra = draw(st.lists(st.sampled_from(["A1\tNeg T1", "#1\tAnnotatorNotes T1\tnote",
                                           "R1\tRel Arg1:T1 Arg2:T2", "garbage line", "T"]),
                          max_size=2))
    return lines, extra


@st.composite
def documents(draw):
    text = "".join(draw(st.lists(TEXT_CHARS, max_size=40)))
    lines, extra = draw(entity_lines(text))
    t_lines = sum(1 for line in lines + extra if line.lstrip(" \t").startswith("T"))
    end = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    ann = end.join(lines + extra) + (end if draw(st.booleans()) else "")
    encoding = draw(st.sampled_from(["utf-8", "utf-8", "utf-8-sig", "utf-16", "latin-1"]))
    halves = draw(st.sampled_from(["both", "both", "both", "txt", "ann"]))
    return text, ann, encoding, halves, t_lines


def write_folder(folder: Path, docs):
    written = {}  # name -> text, for the .txt files written as UTF-8
    for i, (text, ann, encoding, halves, _) in enumerate(docs):
        if halves in ("both", "txt"):
            (folder / f"d{i}.txt").write_bytes(text.encode("utf-8"))
            written[f"d{i}.txt"] = text
        if halves in ("both", "ann"):
            (folder / f"d{i}.ann").write_bytes(ann.encode(encoding, errors="replace"))
    return written


@FUZZ
@given(docs=st.lists(documents(), min_size=1, max_size=3),
       max_length=st.sampled_from([0, 0, 2, 5]))
def test_convert_counts_every_t_line_and_keeps_exact_spans(docs, max_length):
    with tempfile.TemporaryDirectory() as tmp:
        folder, out, rep = Path(tmp) / "in", Path(tmp) / "out.spacy", Path(tmp) / "rep.json"
        folder.mkdir()
        texts = write_folder(folder, docs)
        result = invoke("convert", folder, out, "--report", rep, "--max-length", max_length,
                        "--no-progress")
        assert result.exit_code == 0, result.output
        data = json.loads(rep.read_text())
        assert data["t_lines"] == sum(d[4] for d in docs if d[3] != "txt")
        assert data["t_lines"] + data["extra_fragments"] == data["kept"] + data["n_dropped"]
        kept = 0
        for doc in DocBin().from_disk(out).get_docs(spacy.blank("en").vocab):
            prov = doc.user_data["standoff"]
            source_text = texts[prov["source"]]
            assert source_text[prov["offset"]:prov["offset"] + len(doc.text)] == doc.text
            for span in doc.spans["sc"]:
                start = prov["offset"] + span.start_char
                assert source_text[start:start + len(span.text)] == span.text
                kept += 1
        assert kept == data["kept"]


@FUZZ
@given(docs=st.lists(documents(), min_size=1, max_size=3),
       records=st.lists(st.one_of(st.text(max_size=20), st.sampled_from(["\ud800x", "a\udfff"]),
                                  st.integers(), st.none()), max_size=4),
       max_length=st.sampled_from([0, 3]))
def test_predict_never_raises_and_writes_exact_offsets(docs, records, max_length):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "in"
        folder.mkdir()
        write_folder(folder, docs)
        jsonl = Path(tmp) / "in.jsonl"
        jsonl.write_text("".join(json.dumps({"id": i, "text": r}) + "\n"
                                 for i, r in enumerate(records)) + "not json\n")
        for source, fmt in ((folder, "txt"), (jsonl, "jsonl")):
            out = Path(tmp) / f"out_{fmt}"
            result = invoke("predict", _MODEL, source, out, "--format", fmt,
                            "--max-length", max_length, "--no-progress")
            assert result.exception is None or isinstance(result.exception, SystemExit), \
                result.output
            assert result.exit_code in (0, 1), result.output
            if result.exit_code == 1:
                assert "✘ " in result.output
                continue
            for ann in out.rglob("*.ann"):
                text = ann.with_suffix(".txt").read_bytes().decode("utf-8")
                # Lines end with \n only (str.splitlines would also cut at \x0c, \x1c, ...).
                for line in ann.read_text(encoding="utf-8").split("\n"):
                    if not line.startswith("T"):
                        continue
                    match = T_LINE.match(line)
                    assert match, line
                    frags = [tuple(map(int, f.split())) for f in match.group(3).split(";")]
                    assert all(0 <= a < b <= len(text) for a, b in frags), line
                    assert match.group(4) == one_line(" ".join(text[a:b] for a, b in frags))
