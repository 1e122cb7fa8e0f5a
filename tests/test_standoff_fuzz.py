"""Property-based fuzzing of ``convert`` and ``predict`` (issue 19).

Hypothesis builds small BRAT folders with random texts (accents, emoji, CR/LF/CRLF, NUL),
T lines with random offsets (out of range, reversed, discontinuous, overlapping, duplicated
ids, indented, thousands of digits), random line ends and encodings (UTF-8 with or without
BOM, UTF-16, UTF-16 cut one byte short, Latin-1), file names that are not UTF-8, missing
halves of pairs, and JSONL inputs with lone surrogates, long Unicode ids and lines nested
too deeply (issues 19 and 28). Whatever the input:

* ``convert`` exits 0 and its report adds up: every T line written is read, and
  ``T lines + extra fragments = kept + dropped``;
* every kept span's text is the slice of its ``.txt`` at the span's source offsets;
* ``predict`` never raises: it exits 0 (or 1 with a message when nothing is readable),
  every .ann it writes has offsets inside its .txt with the matching text column, and every
  JSONL record is either written or a counted skip.
"""
import json
import os
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
TEXT_CHARS = st.sampled_from(list("ab cé\u00a0xyz.,-") + ["\n", "\r\n", "\r", "😀", "\t", "\x00"])
HUGE = "9" * 5000  # more digits than int() accepts
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
            b = draw(st.one_of(st.integers(0, n + 3), st.just(HUGE)))
            fragments.append((a, b))
        offsets = ";".join(f"{a} {b}" for a, b in fragments)
        column = " ".join(text[a:b] for a, b in fragments if b != HUGE) \
            if draw(st.booleans()) else "x"
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
    encoding = draw(st.sampled_from(["utf-8", "utf-8", "utf-8-sig", "utf-16", "latin-1",
                                     "utf-16-cut"]))
    # A cut UTF-16 file loses its last character: a line end, so that no T line is lost.
    ann = end.join(lines + extra) + (end if draw(st.booleans()) or encoding == "utf-16-cut"
                                     else "")
    halves = draw(st.sampled_from(["both", "both", "both", "txt", "ann"]))
    return text, ann, encoding, halves, t_lines


def encode(ann: str, encoding: str) -> bytes:
    if encoding == "utf-16-cut":  # a UTF-16 file one byte short
        return ann.encode("utf-16")[:-1]
    return ann.encode(encoding, errors="replace")


def write_folder(folder: Path, docs):
    """Write the documents (every third name not valid UTF-8, as ``b"\\xff"``); returns
    ``{source name as the converter records it: text}`` for the .txt files written."""
    written = {}
    for i, (text, ann, encoding, halves, _) in enumerate(docs):
        raw = f"d{i}".encode() + (b"\xff" if i % 3 == 2 else b"")
        stem = os.fsdecode(raw)
        if halves in ("both", "txt"):
            (folder / f"{stem}.txt").write_bytes(text.encode("utf-8"))
            written[raw.decode("utf-8", "backslashreplace") + ".txt"] = text
        if halves in ("both", "ann"):
            (folder / f"{stem}.ann").write_bytes(encode(ann, encoding))
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
       records=st.lists(st.tuples(
           st.one_of(st.integers(), st.just("é" * 128), st.text(max_size=130)),
           st.one_of(st.text(max_size=20), st.sampled_from(["\ud800x", "a\udfff"]),
                     st.integers(), st.none())), max_size=4),
       max_length=st.sampled_from([0, 3]))
def test_predict_never_raises_and_writes_exact_offsets(docs, records, max_length):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "in"
        folder.mkdir()
        write_folder(folder, docs)
        jsonl = Path(tmp) / "in.jsonl"
        lines = [json.dumps({"id": i, "text": r}) for i, r in records]
        lines += ["not json", "[" * 50000 + "]" * 50000]  # invalid, and nested too deeply
        jsonl.write_text("".join(line + "\n" for line in lines))
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
            if fmt == "jsonl":  # every record predicted (one .ann each) or a counted skip
                skipped = int(re.search(r"Skipped inputs: (\d+)", result.output).group(1))
                assert len(list(out.glob("*.ann"))) + skipped == len(lines), result.output
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
