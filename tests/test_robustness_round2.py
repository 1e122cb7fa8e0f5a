"""Regression tests for the second robustness round (issue 28), one per reproducer.

Whatever the input: no traceback, every T line read is kept or dropped with a reason, every
JSONL record is predicted or a counted skip, what the writer writes the reader reads back,
and a pipeline folder whose checksum file is missing or damaged never loads silently.
"""
import codecs
import json
import os
from pathlib import Path

import pytest
import spacy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from spacy.tokens import DocBin, Span

from spacy_crf_ner.data import parse_ann, read_standoff, write_standoff
from spacy_crf_ner.data.reader import decode_bytes, find_standoff_files

from cli_runner import invoke
from test_standoff_robustness import marking_model  # noqa: F401 - a fixture


def predict(*args):
    return invoke("predict", *args, "--no-progress")


def convert_report(tmp_path, source, *options):
    out, rep = tmp_path / "out.spacy", tmp_path / "report.json"
    result = invoke("convert", source, out, "--report", rep, "--no-progress", *options)
    assert result.exit_code == 0, result.output
    data = json.loads(rep.read_text())
    assert data["t_lines"] + data["extra_fragments"] == data["kept"] + data["n_dropped"]
    return data, out, result


def jsonl(path: Path, lines):
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


# 1. an id whose file-safe name is too long in bytes --------------------------------------
def test_long_unicode_id_is_cut_to_the_file_system_limit(marking_model, tmp_path):
    src = jsonl(tmp_path / "in.jsonl", [json.dumps({"id": i, "text": "aspirin given"})
                                        for i in ("a", "é" * 128, "c")])
    out = tmp_path / "out"
    result = predict(marking_model, src, out)
    assert result.exit_code == 0, result.output
    assert "Documents predicted: 3" in result.output
    names = sorted(p.name for p in out.iterdir())
    assert len(names) == 6 and {"a.ann", "c.ann"} <= set(names)
    assert max(len(os.fsencode(name)) for name in names) <= 255


def test_a_record_that_cannot_be_written_is_a_counted_skip(marking_model, tmp_path):
    src = jsonl(tmp_path / "in.jsonl", [json.dumps({"id": i, "text": "aspirin given"})
                                        for i in ("a", "b", "c")])
    out = tmp_path / "out"
    (out / "b.ann").mkdir(parents=True)  # b's .ann cannot be written
    result = predict(marking_model, src, out)
    assert result.exit_code == 0, result.output
    assert "Documents predicted: 2" in result.output
    assert "cannot_write: 1" in result.output and "b.txt: cannot write" in result.output
    assert (out / "a.ann").is_file() and (out / "c.ann").is_file()
    assert not (out / "b.txt").exists()  # no half-written pair


# 2. a JSON line nested too deeply ----------------------------------------------------------
def test_deeply_nested_json_line_is_a_counted_skip(marking_model, tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text('{"id": "a", "text": "aspirin"}\n' + "[" * 100000 + "]" * 100000
                   + '\n{"id": "c", "text": "headache"}\n', encoding="utf-8")
    result = predict(marking_model, src, tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    assert "Documents predicted: 2" in result.output and "bad_json: 1" in result.output
    assert "in.jsonl:2: JSON nested too deeply" in result.output


# 3. NUL characters -----------------------------------------------------------------------
def test_utf8_ann_with_a_nul_is_read(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    text = "a\x00b given\x00"
    (folder / "a.txt").write_text(text, encoding="utf-8")
    (folder / "a.ann").write_text("T1\tX 0 3\ta\x00b\nT2\tX 4 9\tgiven\nT3\tX 9 10\t\x00\n",
                                  encoding="utf-8")
    data, _, _ = convert_report(tmp_path, folder)
    assert data["t_lines"] == 3 and data["kept"] == 3 and data["n_dropped"] == 0


def test_writer_output_over_nul_text_reads_back(tmp_path):
    nlp = spacy.blank("en")
    doc = nlp.make_doc("a\x00b given \x00 x")
    doc.spans["sc"] = [Span(doc, i, i + 1, label="X") for i in range(len(doc))]
    expected = [(s.start_char, s.end_char, s.label_) for s in doc.spans["sc"]]
    write_standoff([doc], tmp_path / "out", "sc", write_text=True)
    docs, report = read_standoff(tmp_path / "out", nlp)
    assert report.t_lines == len(expected) and report.kept == len(expected)
    assert [(s.start_char, s.end_char, s.label_) for s in docs[0].spans["sc"]] == expected


def test_utf16_without_bom_is_still_recognised():
    decoded = decode_bytes("T1\tDRUG 0 7\taspirin\n".encode("utf-16-le"))
    assert decoded.text is None and "UTF-16 without a byte order mark" in decoded.problem
    assert parse_ann(decoded.fallback).t_lines == 1


# 4. a UTF-16 file one byte short -----------------------------------------------------------
def test_truncated_utf16_ann_keeps_what_it_can_read(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.txt").write_text("aspirin given for headache")
    body = "T1\tDRUG 0 7\taspirin\nT2\tDIS 18 26\theadache\n".encode("utf-16")
    (folder / "a.ann").write_bytes(body[:-1])
    data, _, result = convert_report(tmp_path, folder)
    assert data["t_lines"] == 2 and data["kept"] == 2
    assert data["warnings"].get("decode_error") == 1 and "cut short" in result.output


def test_damaged_utf16_ann_counts_its_t_lines_as_dropped(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.txt").write_text("aspirin given for headache")
    body = bytearray("T1\tDRUG 0 7\taspirin\nT2\tDIS 18 26\theadache\n".encode("utf-16-le"))
    body[10:12] = b"\x00\xdc"  # a lone low surrogate in the middle
    (folder / "a.ann").write_bytes(codecs.BOM_UTF16_LE + bytes(body))
    data, _, _ = convert_report(tmp_path, folder)
    assert data["t_lines"] == 2 and data["dropped"] == {"unreadable_file": 2}


# 6. a file name that is not UTF-8 ------------------------------------------------------------
def test_non_utf8_file_name_converts_with_a_warning(tmp_path, marking_model):
    folder = tmp_path / "in"
    folder.mkdir()
    stem = os.fsdecode(b"\xff")
    (folder / f"{stem}.txt").write_text("aspirin given")
    (folder / f"{stem}.ann").write_text("T1\tDRUG 0 7\taspirin\n")
    data, out, result = convert_report(tmp_path, folder)
    assert data["kept"] == 1 and data["warnings"] == {"name_not_utf8": 1}
    [doc] = DocBin().from_disk(out).get_docs(spacy.blank("en").vocab)
    assert doc.user_data["standoff"]["source"] == "\\xff.txt"
    assert [s.text for s in doc.spans["sc"]] == ["aspirin"]
    result = predict(marking_model, folder, tmp_path / "pred")
    assert result.exit_code == 0 and "Documents predicted: 1" in result.output


# 7. an offset of thousands of digits --------------------------------------------------------
def test_huge_offset_is_a_malformed_line(tmp_path, marking_model):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.txt").write_text("aspirin given")
    (folder / "a.ann").write_text("T1\tDRUG 0 7\taspirin\nT2\tDRUG 0 " + "9" * 5000 + "\tx\n")
    data, _, _ = convert_report(tmp_path, folder)
    assert data["t_lines"] == 2 and data["kept"] == 1 and data["dropped"] == {"malformed": 1}
    _, report = read_standoff(folder, spacy.blank("en"))
    assert report.dropped["malformed"] == 1
    result = invoke("evaluate", marking_model, folder)
    assert result.exit_code == 0, result.output


# 8. folders ~1,000 levels deep --------------------------------------------------------------
def remove_tree(top: Path) -> None:
    """``shutil.rmtree`` without recursion: it (and so pytest's clean-up of old temporary
    folders) fails on folders 1,000 levels deep."""
    stack = [(top, False)]
    while stack:
        folder, emptied = stack.pop()
        if emptied:
            folder.rmdir()
            continue
        stack.append((folder, True))
        for child in folder.iterdir():
            if child.is_dir() and not child.is_symlink():
                stack.append((child, False))
            else:
                child.unlink()


@pytest.fixture()
def deep_tree(tmp_path):
    """``in/d/d/.../d``, 1,000 levels deep; every folder under ``tmp_path`` is removed
    afterwards (outputs copy the depth)."""
    root = deep = tmp_path / "in"
    root.mkdir()
    for _ in range(1000):  # mkdir(parents=True) itself recurses
        deep = deep / "d"
        deep.mkdir()
    yield root, deep
    for child in tmp_path.iterdir():
        if child.is_dir():
            remove_tree(child)


def test_deep_folders_are_walked(tmp_path, marking_model, deep_tree):
    root, deep = deep_tree
    (deep / "a.txt").write_text("aspirin given")
    (deep / "a.ann").write_text("T1\tDRUG 0 7\taspirin\n")
    (root / "b.txt").write_text("headache")
    (root / "b.ann").write_text("T1\tDIS 0 8\theadache\n")
    assert len(find_standoff_files(root)) == 2
    data, _, _ = convert_report(tmp_path, root)
    assert data["documents"] == 2 and data["kept"] == 2
    result = predict(marking_model, root, tmp_path / "pred")
    assert result.exit_code == 0 and "Documents predicted: 2" in result.output, result.output
    result = invoke("evaluate", marking_model, root)
    assert result.exit_code == 0, result.output


def test_unlistable_folder_is_a_counted_skip(tmp_path, monkeypatch):
    root = tmp_path / "in"
    (root / "locked").mkdir(parents=True)
    (root / "b.txt").write_text("headache")
    (root / "b.ann").write_text("T1\tDIS 0 8\theadache\n")
    real_scandir = os.scandir

    def scandir(path):
        if Path(path).name == "locked":
            raise PermissionError(13, "Permission denied")
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    data, _, result = convert_report(tmp_path, root)
    assert data["files_skipped"] == {"unreadable_folder": 1} and data["kept"] == 1
    assert "locked/" in result.output


# 9. convert a single .txt ---------------------------------------------------------------------
def test_convert_one_txt_pairs_the_ann_beside_it(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.txt").write_text("aspirin given")
    (folder / "a.ann").write_text("T1\tDRUG 0 7\taspirin\n")
    (folder / "b.txt").write_text("headache")
    for single in ("a.txt", "a.ann"):
        data, _, _ = convert_report(tmp_path, folder / single)
        assert data["documents"] == 1 and data["kept"] == 1 and data["txt_only"] == 0


# 10. a FIFO given as JSONL ---------------------------------------------------------------------
@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_fifo_as_jsonl_is_not_called_a_folder(marking_model, tmp_path):
    fifo = tmp_path / "in.jsonl"
    os.mkfifo(fifo)
    result = predict(marking_model, fifo, tmp_path / "out", "--format", "jsonl")
    assert result.exit_code == 1
    assert "not a regular file" in result.output and "folder" not in result.output


# Round trip: whatever the writer writes, the reader reads back ----------------------------------
TEXT = st.lists(st.sampled_from(list("ab cé\u00a0.,-😀\t\x00\x0b\x0c\x1c\x85\u2028")
                               + ["\n", "\r\n", "\r"]), min_size=1, max_size=40).map("".join)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=TEXT, picks=st.lists(st.tuples(st.integers(0, 40), st.integers(1, 3),
                                           st.sampled_from(["DRUG", "DIS"])), max_size=6))
def test_writer_output_reads_back_unchanged(text, picks):
    import tempfile

    nlp = spacy.blank("en")
    doc = nlp.make_doc(text)
    spans = []
    for start, length, label in picks:
        start = start % len(doc)
        end = min(start + length, len(doc))
        span = Span(doc, start, end, label=label)
        if span.text.strip():  # a span of whitespace only is not an entity
            spans.append(span)
    doc.spans["sc"] = spans
    expected = sorted({(s.start_char, s.end_char, s.label_) for s in spans})
    with tempfile.TemporaryDirectory() as tmp:
        write_standoff([doc], Path(tmp), "sc", write_text=True)
        [txt] = Path(tmp).glob("*.txt")
        assert txt.read_bytes().decode("utf-8") == text
        docs, report = read_standoff(tmp, nlp)
        report.check()
        assert report.n_dropped == 0, report.to_dict()["dropped"]
        [back] = docs
        assert back.text == text
        got = sorted({(s.start_char, s.end_char, s.label_) for s in back.spans["sc"]})
        assert got == expected
