"""Regression tests for the defects a fuzzed BRAT corpus found (issue 19), data side.

Each test is built from the issue's reproducer: the converter must count every T line
(kept or dropped with a reason), never raise or hang on a bad file, and the writer must
keep offsets exactly.
"""
import codecs
import json
import os
from pathlib import Path

import pytest
import spacy
from spacy.tokens import DocBin, Span

from spacy_crf_ner.data import (
    StandoffOptions,
    find_standoff_files,
    parse_ann,
    read_standoff,
    standoff_to_docs,
    write_standoff,
)
from spacy_crf_ner.data.split import split_doc

from cli_runner import invoke



def convert(*args):
    return invoke("convert", *args, "--no-progress")


def report_of(tmp_path, folder, *options):
    out, rep = tmp_path / "out.spacy", tmp_path / "report.json"
    result = convert(folder, out, "--report", rep, *options)
    assert result.exit_code == 0, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    data = json.loads(rep.read_text())
    assert data["t_lines"] + data["extra_fragments"] == data["kept"] + data["n_dropped"]
    return data, result


# 1. CR-only line ends ------------------------------------------------------------------
@pytest.mark.parametrize("end", ["\r", "\r\n", "\n"])
def test_every_line_end_brat_uses_separates_lines(end):
    ann = f"T1\tDRUG 0 7\taspirin{end}T2\tDISORDER 18 26\theadache{end}"
    parsed = parse_ann(ann)
    assert parsed.t_lines == 2
    assert [(e.id, e.text) for e in parsed.entities] == [("T1", "aspirin"), ("T2", "headache")]


def test_cr_only_ann_keeps_both_entities(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.txt").write_bytes(b"aspirin given for headache")
    (folder / "a.ann").write_bytes(b"T1\tDRUG 0 7\taspirin\rT2\tDISORDER 18 26\theadache\r")
    data, _ = report_of(tmp_path, folder)
    assert data["t_lines"] == 2 and data["kept"] == 2 and data["text_mismatches"] == 0


# 2. UTF-16/32 and undecodable .ann -----------------------------------------------------
@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be", "utf-32"])
def test_bom_marked_ann_is_decoded(tmp_path, encoding):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.txt").write_text("aspirin given", encoding="utf-8")
    body = "T1\tDRUG 0 7\taspirin\n".encode(encoding)
    if encoding == "utf-16-be":
        body = codecs.BOM_UTF16_BE + body
    (folder / "a.ann").write_bytes(body)
    data, _ = report_of(tmp_path, folder)
    assert data["kept"] == 1 and data["bom_decoded"] == 1


def test_utf16_without_bom_counts_its_t_lines_as_dropped(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.txt").write_text("aspirin given for headache")
    (folder / "a.ann").write_bytes(
        "T1\tDRUG 0 7\taspirin\nT2\tDISORDER 18 26\theadache\n".encode("utf-16-le"))
    data, _ = report_of(tmp_path, folder)
    assert data["t_lines"] == 2
    assert data["dropped"] == {"unreadable_file": 2}
    assert data["files_skipped"] == {"unreadable": 1}


# 3. Case-colliding names ---------------------------------------------------------------
def test_case_colliding_ann_is_counted_not_ignored(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.txt").write_text("aspirin given")
    (folder / "a.ann").write_text("T1\tDRUG 0 7\taspirin\n")
    (folder / "a.ANN").write_text("T1\tDRUG 0 7\taspirin\nT2\tDRUG 8 13\tgiven\n")
    data, result = report_of(tmp_path, folder)
    assert data["kept"] == 1
    assert data["dropped"] == {"case_collision": 2}
    assert data["files_skipped"] == {"case_collision": 1}
    assert "a.ANN" in result.output


def test_case_colliding_txt_pairing_is_deterministic(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "doc.TXT").write_text("other text")
    (folder / "doc.txt").write_text("aspirin given")
    (folder / "doc.ann").write_text("T1\tDRUG 0 7\taspirin\n")
    [entry] = find_standoff_files(folder)
    assert entry.txt.name == "doc.txt" and [p.name for p in entry.extra] == ["doc.TXT"]
    data, _ = report_of(tmp_path, folder)
    assert data["kept"] == 1 and data["files_skipped"] == {"case_collision": 1}


# 4. Unreadable files: broken link, FIFO, permission denied -----------------------------
def _pair_with_bad_txt(folder, make_bad):
    folder.mkdir()
    (folder / "good.txt").write_text("aspirin")
    (folder / "good.ann").write_text("T1\tDRUG 0 7\taspirin\n")
    make_bad(folder / "bad.txt")
    (folder / "bad.ann").write_text("T1\tDRUG 0 1\tx\nT2\tDRUG 0 1\tx\n")


@pytest.mark.parametrize("kind", ["broken_link", "fifo", "no_permission"])
def test_unreadable_txt_is_a_counted_skip(tmp_path, kind, monkeypatch):
    if kind == "fifo" and not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs on this platform")

    def make_bad(path):
        if kind == "broken_link":
            path.symlink_to(path.parent / "nowhere.txt")
        elif kind == "fifo":
            os.mkfifo(path)
        else:  # chmod 0 would not stop root: make reading fail as it does for a user
            path.write_text("x")
            read_bytes = Path.read_bytes

            def denied(self):
                if self.name == "bad.txt":
                    raise PermissionError(13, "Permission denied", str(self))
                return read_bytes(self)

            monkeypatch.setattr(Path, "read_bytes", denied)

    _pair_with_bad_txt(tmp_path / "in", make_bad)
    data, result = report_of(tmp_path, tmp_path / "in")
    assert data["kept"] == 1 and data["dropped"] == {"unreadable_file": 2}
    assert data["files_skipped"] == {"unreadable": 1}
    assert "bad.txt" in result.output


# 5. --split-regex validated up front ----------------------------------------------------
def test_convert_rejects_a_bad_split_regex_without_max_length(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.txt").write_text("x")
    result = convert(folder, tmp_path / "o.spacy", "--split-regex", "(")
    assert result.exit_code == 1
    assert "not a valid regular expression" in result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)
    with pytest.raises(ValueError, match="split_regex"):
        StandoffOptions(split_regex="[")


# 7. The writer keeps offsets of spans on line breaks -----------------------------------
@pytest.mark.parametrize("start,end", [(0, 8), (7, 13), (7, 8), (0, 13)])
def test_writer_keeps_offsets_of_spans_on_line_breaks(tmp_path, start, end):
    nlp = spacy.blank("en")
    text = "aspirin\ngiven\r\nlater"
    ann = f"T1\tDRUG {start} {end}\t{text[start:end]}".replace("\n", " ").replace("\r", " ")
    [doc] = standoff_to_docs(nlp, text, ann + "\n", source="a.txt")
    assert [(s.start_char, s.end_char) for s in doc.spans["sc"]] == [(start, end)]
    write_standoff([doc], tmp_path)
    written = (tmp_path / "a.ann").read_text()
    assert len(written.splitlines()) == 1  # the text column stays on its line
    docs, report = read_standoff(tmp_path, nlp)
    assert [(s.start_char, s.end_char) for s in docs[0].spans["sc"]] == [(start, end)]
    assert report.text_mismatches == 0 and report.n_warnings == 0


# 9. Splitting is linear: parts do not re-read the whole document -----------------------
def test_split_parts_keep_entities_ids_and_records():
    nlp = spacy.blank("en")
    words = [f"w{i} aspirin ." for i in range(60)]
    text = " ".join(words)
    ann = "".join(f"T{k}\tDRUG {text.index(w) + len(w) - 9} {text.index(w) + len(w) - 2}"
                  f"\taspirin\nA{k}\tNeg T{k}\n" for k, w in enumerate(words))
    parts = standoff_to_docs(nlp, text, ann, max_length=5)
    assert len(parts) > 20
    spans = [(p.user_data["standoff"]["offset"] + s.start_char, s.id_) for p in parts
             for s in p.spans["sc"]]
    assert len(spans) == 60 and len({i for _, i in spans}) == 60
    assert all(text[o:o + 7] == "aspirin" for o, _ in spans)
    assert sum(len(p.ents) for p in parts) == 60
    for part in parts:
        records = part.user_data.get("standoff_annotations", {}).get("entities", {})
        assert set(records) == {s.id_ for s in part.spans["sc"]}
    assert "".join(p.text for p in parts) == text
    assert split_doc(parts[0], max_length=1000) == [parts[0]]


# 10. Indented T lines are malformed T lines --------------------------------------------
@pytest.mark.parametrize("indent", [" ", "\t"])
def test_indented_t_line_is_a_malformed_t_line(indent):
    parsed = parse_ann(f"{indent}T1\tDRUG 0 7\taspirin\nT2\tDRUG 0 7\taspirin\n")
    assert parsed.t_lines == 2 and parsed.malformed_t_lines == 1
    assert parsed.unknown_lines == 0
    assert [i.code for i in parsed.issues] == ["malformed_entity"]


def test_txt_name_case_is_kept_by_reader_and_writer(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "UPPER.TXT").write_text("aspirin")
    (folder / "UPPER.ann").write_text("T1\tDRUG 0 7\taspirin\n")
    docs, _ = read_standoff(folder, spacy.blank("en"))
    assert docs[0].user_data["standoff"]["source"] == "UPPER.TXT"
    write_standoff(docs, tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["UPPER.TXT", "UPPER.ann"]
    DocBin(docs=docs, store_user_data=True).to_bytes()


# 6, 3, 4, 10: predict -------------------------------------------------------------------
@spacy.Language.component("test_marks_first_token_fails_on_boom")
def _marks_first_token_fails_on_boom(doc):
    """A stand-in pipeline: marks the first token as an entity, raises on 'BOOM'."""
    if "BOOM" in doc.text:
        raise RuntimeError("cannot process this text")
    doc.spans["sc"] = [Span(doc, 0, 1, label="X")] if len(doc) else []
    return doc


@pytest.fixture(scope="module")
def marking_model(tmp_path_factory):
    nlp = spacy.blank("en")
    nlp.add_pipe("test_marks_first_token_fails_on_boom")
    path = tmp_path_factory.mktemp("model") / "model"
    nlp.to_disk(path)
    return path


def predict(*args):
    return invoke("predict", *args, "--no-progress")


@pytest.mark.parametrize("batch_size", ["1", "3"])
def test_predict_skips_bad_records_and_writes_the_rest(marking_model, tmp_path, batch_size):
    lines = [
        '\ufeff{"id": "first", "text": "aspirin given"}',  # a UTF-8 BOM on the first line
        '{"id": "surrogate", "text": "bad \\ud800 text"}',
        '{"id": "boom", "text": "BOOM here"}',
        '{"id": "ok2", "text": "headache later"}',
        '{"id": "ok3", "text": "more text"}',
    ]
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    result = predict(marking_model, src, out, "--batch-size", batch_size)
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    assert "Skipped inputs: 2" in result.output
    assert "not_encodable: 1" in result.output and "pipeline_error: 1" in result.output
    assert "in.jsonl:2:" in result.output and "boom.txt: the pipeline failed" in result.output
    assert sorted(p.name for p in out.iterdir()) == [
        "first.ann", "first.txt", "ok2.ann", "ok2.txt", "ok3.ann", "ok3.txt"]
    assert (out / "first.ann").read_text() == "T1\tX 0 7\taspirin\n"
    assert "Documents predicted: 3" in result.output


def test_predict_folder_keeps_names_and_counts_bad_files(marking_model, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "UPPER.TXT").write_text("aspirin given")
    (folder / "doc.txt").write_text("headache")
    (folder / "doc.TXT").write_text("other")
    (folder / "link.txt").symlink_to(folder / "nowhere.txt")
    if hasattr(os, "mkfifo"):
        os.mkfifo(folder / "pipe.txt")
    out = tmp_path / "out"
    result = predict(marking_model, folder, out)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == [
        "UPPER.TXT", "UPPER.ann", "doc.ann", "doc.txt"]
    assert (out / "doc.txt").read_text() == "headache"
    assert "case_collision: 1" in result.output
    assert f"unreadable: {2 if hasattr(os, 'mkfifo') else 1}" in result.output
    assert "link.txt: broken symbolic link" in result.output
