"""Checksums of saved pipelines (issue 19, item 8): written by ``nlp.to_disk``, kept by
``spacy package``, verified by ``spacy.load`` before any component reads its weights."""
import json
import shutil
import subprocess
import sys

import pytest
import spacy

from pipelines import tiny_transformer_nlp
from spacy_crf_ner.integrity import (
    MANIFEST_NAME,
    REQUIRE_ENV,
    SKIP_ENV,
    MissingChecksumsWarning,
    PipelineIntegrityError,
    check_before_load,
    file_sha256,
    read_manifest,
)
from cli_runner import invoke
from synthetic import make_examples

TEXT = "Patient with asthma was given aspirin ."


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A ``transformer -> crf_ner`` pipeline saved to disk, and its predictions."""
    folder = tmp_path_factory.mktemp("integrity")
    nlp = tiny_transformer_nlp(folder)
    nlp.initialize(lambda: make_examples(nlp, 8))
    nlp.to_disk(folder / "model")
    return folder / "model", predictions(nlp)


def predictions(nlp):
    """Spans and the transformer's output for TEXT: equal only if the weights are equal."""
    doc = nlp(TEXT)
    spans = [(s.start_char, s.end_char, s.label_) for s in doc.spans["sc"]]
    return spans, [t.round(5).tolist() for t in doc._.trf_data.tensors]


def copy_of(saved, tmp_path):
    path = tmp_path / "model"
    shutil.copytree(saved[0], path)
    return path


def flip_byte(path, offset=None):
    data = bytearray(path.read_bytes())
    i = len(data) // 2 if offset is None else offset
    data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def test_manifest_lists_every_saved_file_but_meta(saved):
    path, _ = saved
    manifest = read_manifest(path)
    on_disk = {p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()}
    assert set(manifest) == on_disk - {"meta.json", MANIFEST_NAME}
    assert {"config.cfg", "tokenizer", "transformer/model", "crf_ner/model"} <= set(manifest)
    assert all(file_sha256(path / rel) == digest for rel, digest in manifest.items())
    # the format of sha256sum, so the folder can be checked by hand
    assert (path / MANIFEST_NAME).read_text().splitlines()[0].split("  ")[1] in manifest


def test_intact_pipeline_loads_and_predicts_the_same(saved):
    path, expected = saved
    assert predictions(spacy.load(path)) == expected


@pytest.mark.parametrize("damaged", ["transformer/model", "crf_ner/model", "config.cfg",
                                     "vocab/strings.json"])
def test_a_changed_file_is_named_before_anything_loads(saved, tmp_path, damaged):
    path = copy_of(saved, tmp_path)
    if damaged == "config.cfg":  # read by spaCy before any plugin code: damage that parses
        with open(path / damaged, "a", encoding="utf-8") as f:
            f.write("\n# changed\n")
    else:
        flip_byte(path / damaged)
    with pytest.raises(PipelineIntegrityError, match=f"{damaged}.*has changed") as err:
        spacy.load(path)
    assert SKIP_ENV in str(err.value)


def test_a_missing_file_is_named(saved, tmp_path):
    path = copy_of(saved, tmp_path)
    (path / "crf_ner" / "cfg").unlink()
    with pytest.raises(PipelineIntegrityError, match="crf_ner/cfg is missing"):
        spacy.load(path)


def test_opt_out_and_exclude(saved, tmp_path, monkeypatch):
    path = copy_of(saved, tmp_path)
    with open(path / "config.cfg", "a", encoding="utf-8") as f:
        f.write("\n# edited by hand\n")
    with pytest.raises(PipelineIntegrityError):
        spacy.load(path)
    monkeypatch.setenv(SKIP_ENV, "1")
    nlp = spacy.load(path)
    assert nlp.pipe_names == ["transformer", "crf_ner"]
    nlp.to_disk(path)  # saving again records the edited files
    monkeypatch.delenv(SKIP_ENV)
    spacy.load(path)
    flip_byte(path / "crf_ner" / "model")
    assert spacy.load(path, exclude=["crf_ner"]).pipe_names == ["transformer"]


def test_a_damaged_manifest_is_reported(saved, tmp_path):
    path = copy_of(saved, tmp_path)
    (path / MANIFEST_NAME).write_text("not a checksum line\n")
    with pytest.raises(PipelineIntegrityError, match=f"{MANIFEST_NAME}:1"):
        spacy.load(path)


def test_pipeline_without_manifest_still_loads(saved, tmp_path):
    path = copy_of(saved, tmp_path)
    (path / MANIFEST_NAME).unlink()
    assert spacy.load(path).pipe_names == ["transformer", "crf_ner"]


def test_spacy_package_keeps_the_checks(saved, tmp_path):
    packages = tmp_path / "packages"
    packages.mkdir()
    subprocess.run([sys.executable, "-m", "spacy", "package", str(saved[0]), str(packages),
                    "--name", "crf_check", "--version", "0.0.1", "--build", "none", "--force"],
                   check=True, capture_output=True)
    data = packages / "en_crf_check-0.0.1" / "en_crf_check" / "en_crf_check-0.0.1"
    assert (data / MANIFEST_NAME).is_file()
    assert spacy.load(data).pipe_names == ["transformer", "crf_ner"]
    flip_byte(data / "transformer" / "model")
    with pytest.raises(PipelineIntegrityError, match="transformer/model"):
        spacy.load(data)


# Issue 28, item 5: a missing, empty or folder checksum file; a damaged config or meta ---
def predict_one(model, tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"id": "a", "text": TEXT}) + "\n")
    return invoke("predict", model, src, tmp_path / "out", "--no-progress")


def test_missing_checksums_warn_or_fail_when_required(saved, tmp_path, monkeypatch):
    path = copy_of(saved, tmp_path)
    (path / MANIFEST_NAME).unlink()
    with pytest.warns(MissingChecksumsWarning, match=str(path)):
        spacy.load(path)
    monkeypatch.setenv(REQUIRE_ENV, "1")
    with pytest.raises(PipelineIntegrityError, match=f"no {MANIFEST_NAME}"):
        spacy.load(path)


@pytest.mark.parametrize("damage", ["empty", "folder"])
def test_empty_or_folder_checksums_fail(saved, tmp_path, damage):
    path = copy_of(saved, tmp_path)
    manifest = path / MANIFEST_NAME
    manifest.unlink()
    if damage == "empty":
        manifest.write_bytes(b"")
    else:
        manifest.mkdir()
    with pytest.raises(PipelineIntegrityError, match=MANIFEST_NAME):
        spacy.load(path)
    result = predict_one(path, tmp_path)
    assert result.exit_code == 1 and MANIFEST_NAME in result.output


def test_missing_checksums_is_a_cli_warning(saved, tmp_path):
    path = copy_of(saved, tmp_path)
    (path / MANIFEST_NAME).unlink()
    result = predict_one(path, tmp_path)
    assert result.exit_code == 0, result.output
    assert f"has no {MANIFEST_NAME}" in result.output and str(path) in result.output


@pytest.mark.parametrize("name, content", [
    ("config.cfg", "[nlp\nlang = en\n"), ("meta.json", '{"lang": "en",'),
])
def test_damaged_config_or_meta_is_named(saved, tmp_path, name, content):
    path = copy_of(saved, tmp_path)
    (path / name).write_text(content)
    with pytest.raises(PipelineIntegrityError, match=name):
        check_before_load(path)
    result = predict_one(path, tmp_path)
    assert result.exit_code == 1 and f"{name} " in result.output
