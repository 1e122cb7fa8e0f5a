"""``convert`` command: counts on a corpus with known counts, exit codes, options."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import spacy
from spacy.tokens import DocBin

from cli_runner import invoke

FIXTURES = Path(__file__).parent / "fixtures" / "standoff"
CORPUS = FIXTURES / "corpus"


def run(*args):
    return invoke("convert", *args, "--no-progress")


def test_counts_and_report_json(tmp_path):
    out, rep = tmp_path / "out" / "train.spacy", tmp_path / "report.json"
    result = run(CORPUS, out, "--lang", "en", "--report", rep)
    assert result.exit_code == 0, result.output
    data = json.loads(rep.read_text())
    expected = json.loads((FIXTURES / "expected_counts.json").read_text())
    for key, value in expected.items():
        if not key.startswith("_"):
            assert data[key] == value, key
    assert data["spans_read"] == data["kept"] + sum(data["dropped"].values())
    assert data["options"]["alignment"] == "split_tokens"
    assert len(data["issues"]) == data["n_warnings"] == 11
    assert "kept in span group" in result.output and "dropped: missing_txt" in result.output
    docs = list(DocBin().from_disk(out).get_docs(spacy.blank("en").vocab))
    assert len(docs) == 5
    assert sum(len(d.spans["sc"]) for d in docs) == 13
    assert sum(len(d.ents) for d in docs) == 10


def test_options_change_counts(tmp_path):
    rep = tmp_path / "r.json"
    result = run(CORPUS, tmp_path / "o.spacy", "--discontinuous", "cover", "--no-ents",
                 "--skip-txt-only", "--alignment", "strict", "--span-key", "gold",
                 "--report", rep)
    assert result.exit_code == 0, result.output
    data = json.loads(rep.read_text())
    assert (data["spans_read"], data["extra_fragments"]) == (20, 0)
    assert data["dropped"]["misaligned"] == 2
    assert data["kept"] == 10 and data["in_ents"] == 0
    assert data["parts"] == 4 and data["files_skipped"]["txt_only"] == 1
    docs = list(DocBin().from_disk(tmp_path / "o.spacy").get_docs(spacy.blank("en").vocab))
    assert all("gold" in d.spans and not d.ents for d in docs)


def test_max_length_splits(tmp_path):
    rep = tmp_path / "r.json"
    result = run(CORPUS / "sub", tmp_path / "o.spacy", "--max-length", "16", "--report", rep)
    assert result.exit_code == 0, result.output
    data = json.loads(rep.read_text())
    assert data["documents"] == 1 and data["parts"] == 2 and data["kept"] == 6


def test_model_option_uses_that_tokenizer(tmp_path):
    model, data = tmp_path / "model", tmp_path / "data"
    spacy.blank("fr").to_disk(model)
    data.mkdir()
    (data / "x.txt").write_text("Soigner l'enfant.")
    (data / "x.ann").write_text("T1\tPerson 10 16\tenfant\n")
    for args, outcome in (([], "split_tokens"), (["--model", model], "exact")):
        rep = tmp_path / "r.json"
        result = run(data, tmp_path / "o.spacy", "--report", rep, *args)
        assert result.exit_code == 0, result.output
        assert json.loads(rep.read_text())["alignment"] == {outcome: 1}


def test_strict_fails_cleanly(tmp_path):
    result = run(CORPUS, tmp_path / "o.spacy", "--strict")
    assert result.exit_code == 1
    assert "✘ c.txt: [txt_without_ann]" in result.output
    assert "Traceback" not in result.output
    result = run(CORPUS, tmp_path / "o.spacy", "--strict", "--skip-txt-only")
    assert result.exit_code == 1 and "d.ann: [ann_without_txt]" in result.output
    assert not (tmp_path / "o.spacy").exists()


@pytest.mark.parametrize("case", ["missing", "empty", "out_is_dir", "out_under_file",
                                  "bad_policy", "bad_lang"])
def test_unusable_paths_and_options(tmp_path, case):
    (tmp_path / "empty").mkdir()
    (tmp_path / "afile").write_text("x")
    args = {
        "missing": [tmp_path / "nope", tmp_path / "o.spacy"],
        "empty": [tmp_path / "empty", tmp_path / "o.spacy"],
        "out_is_dir": [CORPUS, tmp_path / "empty"],
        "out_under_file": [CORPUS, tmp_path / "afile" / "o.spacy"],
        "bad_policy": [CORPUS, tmp_path / "o.spacy", "--alignment", "snap"],
        "bad_lang": [CORPUS, tmp_path / "o.spacy", "--lang", "zz-nope"],
    }[case]
    result = run(*args)
    assert result.exit_code == 1
    assert result.output.startswith("✘ ") and "Traceback" not in result.output


def test_python_dash_m(tmp_path):
    out = tmp_path / "o.spacy"
    proc = subprocess.run(
        [sys.executable, "-m", "spacy_crf_ner", "convert", str(CORPUS / "sub"), str(out)],
        capture_output=True, text=True, timeout=300, env={**os.environ, "COLUMNS": "80"},
    )
    assert proc.returncode == 0, proc.stderr
    assert "kept in span group" in proc.stdout and out.exists()
    assert "convert" in proc.stderr  # the progress bar goes to stderr
    # The report is a table, in a pipe and at 80 columns alike (issue 26): every row on its
    # own line, every value starting in the same column.
    rows = [line for line in proc.stdout.splitlines() if "  " in line.strip()
            and not line.startswith(("⚠", "✔", "ℹ"))]
    names = ("files .txt / .ann", "T lines", "spans read", "kept in span group", "dropped",
             "warnings", "seconds")
    found = {name: line for name in names for line in rows if line.startswith(name + "  ")}
    assert set(found) == set(names), proc.stdout
    value_columns = {len(line) - len(line[len(name):].lstrip()) for name, line in found.items()}
    assert len(value_columns) == 1, found
