"""``predict`` and ``evaluate`` commands on a small pipeline trained on the synthetic corpus."""
import json
import re
from pathlib import Path

import pytest
import spacy
from spacy.tokens import DocBin

from spacy_crf_ner.data.writer import one_line

from cli_runner import invoke
from synthetic import make_corpus, make_examples, train


LABELS = {"ANATOMY", "DISEASE", "DRUG"}
T_LINE = re.compile(r"^(T\d+)\t(\S+) (\d+ \d+(?:;\d+ \d+)*)\t(.*)$")


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    import torch

    # Tiny tensors: one torch thread trains 3x faster on a shared 2-core machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        # A fixed seed: the same weights on every run (the split-vs-whole test below compares
        # decisions that a differently initialised, barely trained model may not share).
        spacy.util.fix_random_seed(0)
        nlp = spacy.blank("en")
        nlp.add_pipe("crf_ner")
        train(nlp, make_examples(nlp, 60), epochs=12)
    finally:
        torch.set_num_threads(threads)
    path = tmp_path_factory.mktemp("model") / "model"
    nlp.to_disk(path)
    return path


def write_brat(folder: Path, corpus):
    """One document per file, every third in a subfolder; returns the number of T lines."""
    n = 0
    for i, (text, ents) in enumerate(corpus):
        target = folder / "sub" if i % 3 == 0 else folder
        target.mkdir(parents=True, exist_ok=True)
        (target / f"d{i:02d}.txt").write_text(text, encoding="utf-8", newline="")
        lines = [f"T{k}\t{label} {s} {e}\t{text[s:e]}" for k, (s, e, label) in
                 enumerate(ents, start=1)]
        (target / f"d{i:02d}.ann").write_text("".join(x + "\n" for x in lines), encoding="utf-8")
        n += len(lines)
    return n


def read_ann(ann: Path, txt: Path):
    """Entities (start, end, label) of an .ann file, checking each text column against the
    .txt slice read exactly as stored (no newline translation, BOM kept)."""
    text = txt.read_bytes().decode("utf-8")
    ents, notes = [], 0
    for line in ann.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            assert re.search(r"\tAnnotatorNotes T\d+\tconf=[01]\.\d{4}$", line), line
            notes += 1
            continue
        match = T_LINE.match(line)
        assert match, line
        frags = [tuple(map(int, f.split())) for f in match.group(3).split(";")]
        # the text column is the slice with each CR/LF made a space (it must stay one line)
        assert match.group(4) == one_line(" ".join(text[s:e] for s, e in frags)), line
        ents.append((frags[0][0], frags[-1][1], match.group(2)))
    return ents, notes


# --------------------------------------------------------------------------- predict
ACCENTED = (
    "\ufeffRésumé du médecin — café\r\n"
    "The patient has breast cancer and takes aspirin daily .\r\n\r\n"
    "No sign of lung tumour was found on imaging .\r\n"
)
SUB = ("Tamoxifen was stopped because of liver pain .\r\n"
       "Known colon carcinoma ; metformin started today .")


@pytest.fixture()
def brat_input(tmp_path):
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_bytes(ACCENTED.encode("utf-8"))
    (folder / "a.ann").write_text("T1\tFOO 0 3\txxx\n")  # ignored by predict
    (folder / "sub" / "b.txt").write_bytes(SUB.encode("utf-8"))
    return folder


def test_predict_brat_folder_with_crlf_and_accents(model, brat_input, tmp_path):
    out = tmp_path / "out"
    result = invoke("predict", model, brat_input, out, "--no-progress")
    assert result.exit_code == 0, result.output
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")
                  if p.is_file()) == ["a.ann", "a.txt", "sub/b.ann", "sub/b.txt"]
    for name in ("a.txt", "sub/b.txt"):
        assert (out / name).read_bytes() == (brat_input / name).read_bytes()
    ents_a, notes_a = read_ann(out / "a.ann", out / "a.txt")
    ents_b, notes_b = read_ann(out / "sub" / "b.ann", out / "sub" / "b.txt")
    assert {label for *_, label in ents_a + ents_b} <= LABELS
    found = {(ACCENTED[s:e], label) for s, e, label in ents_a}
    assert {("breast", "ANATOMY"), ("breast cancer", "DISEASE"), ("aspirin", "DRUG"),
            ("lung tumour", "DISEASE")} <= found
    assert {(SUB[s:e], label) for s, e, label in ents_b} >= {("Tamoxifen", "DRUG"),
                                                            ("colon carcinoma", "DISEASE")}
    assert notes_a == len(ents_a) and notes_b == len(ents_b)  # one confidence per entity
    assert "Format: brat" in result.output and "Documents predicted: 2" in result.output
    assert f"Entities written: {len(ents_a) + len(ents_b)}" in result.output
    assert "Skipped inputs: 0" in result.output


def test_predict_split_long_texts_in_two_processes(model, brat_input, tmp_path):
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    assert invoke("predict", model, brat_input, whole, "--no-progress").exit_code == 0
    result = invoke("predict", model, brat_input, parts, "--max-length", "8",
                    "--n-process", "2", "--batch-size", "2", "--no-scores", "--no-progress")
    assert result.exit_code == 0, result.output
    assert re.search(r"Documents predicted: 2 \((\d+) parts", result.output)
    n_parts = int(re.search(r"\((\d+) parts", result.output).group(1))
    assert n_parts > 2
    for name in ("a", "sub/b"):
        ents, notes = read_ann(parts / f"{name}.ann", parts / f"{name}.txt")
        assert notes == 0
        # each sentence is within 8 tokens of a cut point: same entities as unsplit
        assert sorted(ents) == sorted(read_ann(whole / f"{name}.ann", whole / f"{name}.txt")[0])


def test_predict_jsonl_with_bad_lines(model, tmp_path):
    lines = [
        json.dumps({"id": "n1", "text": "She reports lung pain since last week ."}),
        "{bad json",
        "",
        json.dumps([1, 2]),
        json.dumps({"name": "n1", "text": "Known colon carcinoma ;\r\nmetformin started ."}),
        json.dumps({"text": 5}),
        json.dumps({"id": "../x/y",
                    "text": "Café : tamoxifen was stopped because of skin pain ."}),
    ]
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    result = invoke("predict", model, src, out, "--no-progress")
    assert result.exit_code == 0, result.output
    assert "Skipped inputs: 3" in result.output
    assert "in.jsonl:2: invalid JSON" in result.output
    assert "in.jsonl:4: not a JSON object" in result.output
    assert "in.jsonl:6: no string" in result.output
    names = sorted(p.name for p in out.iterdir())
    assert names == ["_x_y.ann", "_x_y.txt", "n1.ann", "n1.txt", "n1__2.ann", "n1__2.txt"]
    assert (out / "n1__2.txt").read_bytes().decode("utf-8") == \
        "Known colon carcinoma ;\r\nmetformin started ."
    ents, _ = read_ann(out / "_x_y.ann", out / "_x_y.txt")
    assert ("tamoxifen", "DRUG") in {((out / "_x_y.txt").read_text()[s:e], lab)
                                      for s, e, lab in ents}
    assert "Documents predicted: 3" in result.output
    only_bad = tmp_path / "bad.jsonl"
    only_bad.write_text('{"id": 1}\nnot json\n', encoding="utf-8")
    result = invoke("predict", model, only_bad, tmp_path / "out2", "--no-progress")
    assert result.exit_code == 1 and "Skipped inputs: 2" in result.output
    assert "✘ none of the 2 input(s)" in result.output and "Traceback" not in result.output


def test_predict_single_txt_file_and_format_checks(model, brat_input, tmp_path):
    out = tmp_path / "out"
    result = invoke("predict", model, brat_input / "sub" / "b.txt", out, "--no-progress")
    assert result.exit_code == 0, result.output
    assert "Format: txt" in result.output
    assert sorted(p.name for p in out.iterdir()) == ["b.ann", "b.txt"]
    bad = invoke("predict", model, brat_input, out, "--format", "jsonl", "--no-progress")
    assert bad.exit_code != 0 and "needs a file" in bad.output
    same = invoke("predict", model, brat_input, brat_input, "--no-progress")
    assert same.exit_code != 0 and "would be overwritten" in same.output
    assert (brat_input / "a.ann").read_text() == "T1\tFOO 0 3\txxx\n"


# -------------------------------------------------------------------------- evaluate
def test_evaluate_brat_folder(model, tmp_path):
    data = tmp_path / "gold"
    n_t = write_brat(data, make_corpus(24, seed=5))
    metrics = tmp_path / "m" / "metrics.json"
    result = invoke("evaluate", model, data, "--output", metrics, "--no-progress")
    assert result.exit_code == 0, result.output
    m = json.loads(metrics.read_text())
    exact, errors = m["exact"], m["errors"]
    assert exact["micro"]["f"] >= 0.9 and m["token"]["micro"]["f"] >= 0.9
    assert set(exact["per_label"]) == LABELS
    assert exact["micro"]["support"] == n_t == m["conversion"]["kept"]
    assert m["conversion"]["documents"] == 24 and m["conversion"]["n_dropped"] == 0
    assert sum(errors["gold"].values()) == errors["n_gold"] == n_t
    assert sum(errors["pred"].values()) == errors["n_pred"] == exact["micro"]["predicted"]
    assert errors["gold"]["correct"] == errors["pred"]["correct"] == exact["micro"]["tp"]
    assert m["speed"]["docs"] == 24 and m["speed"]["words"] > 0
    for text in ("micro", "label_and_boundary", "words/s", f"{n_t} spans read",
                 "Saved metrics"):
        assert text in result.output
    # The tables print as tables (issue 26): one row per line, columns aligned.
    lines = result.raw.splitlines()
    for title in ("Exact spans (character offsets)", "Tokens (gold tokenization)"):
        start = lines.index(title)
        header, *rows = lines[start + 1:start + 2 + len(LABELS) + 2]
        assert header.split() == ["label", "P", "R", "F", "support", "predicted"]
        assert [row.split()[0] for row in rows] == sorted(LABELS) + ["micro", "macro"]
        assert {len(row) for row in [header] + rows[:-1]} == {len(header)}  # right-aligned
    start = lines.index("Errors: each gold and each predicted entity in one category")
    categories = [line.split()[0] for line in lines[start + 2:start + 9]]
    assert categories == ["correct", "label", "boundary", "label_and_boundary", "missed",
                          "spurious", "total"]


def test_evaluate_writes_the_error_page(model, tmp_path):
    """``--html``: one section per document, one listed error per erroneous entity, the
    same counts as the JSON's error analysis (checked in a browser in test_error_page)."""
    corpus = []
    for i, (text, ents) in enumerate(make_corpus(12, seed=7)):
        ents = list(ents)
        if i % 2:  # the model will find it: a spurious prediction
            ents = ents[:-1]
        if i % 3 == 0:  # relabelled gold: a label error on both sides
            s, e, label = ents[0]
            ents[0] = (s, e, "DRUG" if label != "DRUG" else "ANATOMY")
        corpus.append((text, ents))
    data, page, metrics = tmp_path / "gold", tmp_path / "out" / "errors.html", tmp_path / "m.json"
    write_brat(data, corpus)
    result = invoke("evaluate", model, data, "--html", page, "-o", metrics, "--no-progress")
    assert result.exit_code == 0, result.output
    assert f"Saved the error page to {page}" in result.output
    errors = json.loads(metrics.read_text())["errors"]
    html = page.read_text(encoding="utf-8")
    assert html.count('<section class="doc"') == 12
    for side, key in (("gold", "gold"), ("predicted", "pred")):
        for kind, n in errors[key].items():
            if kind != "correct":
                assert html.count(f'data-kind="{kind}" data-side="{side}"') == n, (side, kind)
    assert errors["pred"]["spurious"] >= 5 and errors["gold"]["label"] >= 3
    assert "d01.txt" in html  # documents are named by their source file


def test_evaluate_html_path_must_be_writable(model, tmp_path):
    data = tmp_path / "gold"
    write_brat(data, make_corpus(2, seed=1))
    result = invoke("evaluate", model, data, "--html", tmp_path, "--no-progress")
    assert result.exit_code == 1 and f"--html {tmp_path} is a directory" in result.output


def test_evaluate_docbin(model, tmp_path):
    nlp = spacy.blank("en")
    doc_bin = DocBin(store_user_data=True)
    for eg in make_examples(nlp, 12, seed=9):
        doc_bin.add(eg.reference)
    path = tmp_path / "dev.spacy"
    doc_bin.to_disk(path)
    metrics = tmp_path / "m.json"
    result = invoke("evaluate", model, path, "-o", metrics, "--batch-size", "4",
                    "--no-progress")
    assert result.exit_code == 0, result.output
    m = json.loads(metrics.read_text())
    assert m["conversion"] is None and m["exact"]["micro"]["f"] >= 0.9
    # gold in doc.ents (no DISEASE there) vs predictions in "sc": DISEASE is all spurious
    result = invoke("evaluate", model, path, "-o", metrics, "--gold-key", "ents",
                    "--no-progress")
    assert result.exit_code == 0, result.output
    m = json.loads(metrics.read_text())
    disease = m["errors"]["per_label"]["DISEASE"]
    assert sum(disease["gold"].values()) == 0
    assert m["exact"]["per_label"]["DISEASE"]["p"] == 0.0
    # a key the pipeline does not write: warned, scores 0
    result = invoke("evaluate", model, path, "--pred-key", "nope", "--no-progress")
    assert result.exit_code == 0 and "wrote no span group 'nope'" in result.output


@pytest.mark.parametrize(
    "args,message",
    [
        (["evaluate", "{model}", "missing_data"], "data path missing_data does not exist"),
        (["evaluate", "missing_model", "{data}"], "model missing_model not found"),
        (["predict", "missing_model", "{data}", "{out}"], "model missing_model not found"),
        (["predict", "{model}", "missing_input", "{out}"], "input path missing_input does not"),
        (["evaluate", "{model}", "{bad}"], "cannot read"),
    ],
)
def test_missing_paths_fail_cleanly(model, tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "data"
    write_brat(data, make_corpus(2, seed=1))
    (tmp_path / "bad.spacy").write_bytes(b"not a docbin")
    values = {"model": model, "data": data, "out": tmp_path / "out", "bad": "bad.spacy"}
    result = invoke(*[a.format(**values) for a in args], "--no-progress")
    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit)  # a clean exit, not a crash
    assert f"✘ {message}" in result.output
    assert "Traceback" not in result.output


def test_gpu_with_several_processes_is_refused_before_anything_runs(model, tmp_path):
    data = tmp_path / "data"
    write_brat(data, make_corpus(2, seed=1))
    for args in (["evaluate", model, data], ["predict", model, data, tmp_path / "o"]):
        result = invoke(*args, "--gpu-id", "0", "--n-process", "2", "--no-progress")
        assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
        assert "cannot be combined with --gpu-id 0" in result.output
    assert not (tmp_path / "o").exists()


def test_cpu_option_switches_a_gpu_process_back_to_the_cpu(model, tmp_path, monkeypatch):
    """``--gpu-id -1`` means the CPU even when the calling process selected a GPU."""
    import spacy
    from thinc.api import NumpyOps, get_current_ops

    calls = []
    monkeypatch.setattr(spacy, "require_cpu", lambda: calls.append("cpu") or True)
    data = tmp_path / "data"
    write_brat(data, make_corpus(2, seed=1))
    assert invoke("evaluate", model, data, "--no-progress").exit_code == 0
    assert calls == ["cpu"]
    monkeypatch.undo()
    assert invoke("evaluate", model, data, "--no-progress").exit_code == 0
    assert isinstance(get_current_ops(), NumpyOps)


def test_unavailable_gpu_fails_cleanly(model, tmp_path):
    try:
        import cupy  # noqa: F401
        pytest.skip("cupy is installed: a GPU may really be there")
    except ImportError:
        pass
    data = tmp_path / "data"
    write_brat(data, make_corpus(2, seed=1))
    for args in (["evaluate", model, data], ["predict", model, data, tmp_path / "o"]):
        result = invoke(*args, "--gpu-id", "0", "--no-progress")
        assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
        assert "✘ --gpu-id 0: GPU not available" in result.output
