"""Batch inference on Spark (``spacy_crf_ner.spark``, ``predict --engine spark``) on the
session's ``local[2]`` SparkSession: the same entities as ``nlp.pipe``, every input row
accounted for, a bad model refused on the driver before any task."""
import json
import re
import subprocess
import sys
import tarfile

import pytest
import spacy

from spacy_crf_ner.data import DEFAULT_SPLIT_REGEX
from spacy_crf_ner.data.split import split_text

from cli_runner import invoke
from pipelines import tiny_transformer_nlp
from synthetic import (
    NESTED_TEMPLATES, NESTED_WORDS, make_nested_corpus, make_nested_examples, train,
)


ID0 = 10_000_000_000  # ids beyond 32 bits: the id column keeps its type
MAX_LENGTH = 16  # tokens: the long notes below are split, the short ones are not
# Components for a pipeline that raises on some texts and finds nothing in others,
# shipped to the executors as a code file.
CODE = '''
from spacy.language import Language


@Language.component("spark_test_raise_on_boom")
def raise_on_boom(doc):
    if "BOOM" in doc.text:
        raise ValueError("BOOM in the text")
    return doc


@Language.component("spark_test_clear_if_quiet")
def clear_if_quiet(doc):
    if "QUIET" in doc.text:
        doc.spans["sc"] = []
    return doc
'''




@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A tiny transformer + crf_ner pipeline that finds nested entities (nesting depth 2)."""
    import torch

    folder = tmp_path_factory.mktemp("spark_model")
    words = [w for values in NESTED_WORDS.values() for w in values]
    words += re.sub(r"[\[\]{}]", " ", " ".join(NESTED_TEMPLATES)).split()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        nlp = tiny_transformer_nlp(folder / "build", words=words, nesting_depth=2)
        train(nlp, make_nested_examples(nlp, 60, seed=5), epochs=8, drop=0.0)
    finally:
        torch.set_num_threads(threads)
    nlp.to_disk(folder / "model")
    return folder / "model"


def notes_corpus():
    """230 short notes and 12 long ones (five short notes joined by blank lines)."""
    short = [text for text, _ in make_nested_corpus(230, seed=11)]
    long = ["\n\n".join(short[i : i + 5]) for i in range(0, 60, 5)]
    return short + long


def levels(spans):
    return [sum(1 for o in spans if o is not s and o.label_ == s.label_
                and o.start_char <= s.start_char and s.end_char <= o.end_char
                and (o.start_char, o.end_char) != (s.start_char, s.end_char))
            for s in spans]


def reference(nlp, texts, max_length=0, batch_size=None):
    """{(index, start, end, label, level): confidence} from nlp.pipe over predict's parts,
    offsets mapped back to the texts; and the number of parts of each text."""
    parts, n_parts = [], []
    for index, text in enumerate(texts):
        mine = split_text(nlp, text, str(index), DEFAULT_SPLIT_REGEX, max_length)
        parts.extend((part, (index, prov["offset"])) for part, prov in mine)
        n_parts.append(len(mine))
    out = {}
    for doc, (index, offset) in nlp.pipe(parts, as_tuples=True, batch_size=batch_size):
        group = doc.spans["sc"]
        for span, level, conf in zip(group, levels(list(group)), group.attrs["scores"]):
            key = (index, offset + span.start_char, offset + span.end_char, span.label_, level)
            out[key] = float(conf)
    return out, n_parts


def assert_same(got, want):
    assert set(got) == set(want)
    worst = max((abs(got[k] - want[k]) for k in want), default=0.0)
    assert worst <= 1e-5, worst


# ------------------------------------------------------------------------ the API
def test_spark_output_equals_nlp_pipe_span_for_span(spark, model_dir):
    from spacy_crf_ner.spark import (
        OMOP_COLUMNS, OMOP_EXTRAS, annotate, annotate_notes, count_notes, entity_rows,
    )

    texts = notes_corpus()
    rows = [(ID0 + i, f"p{i % 7}", text) for i, text in enumerate(texts)]
    df = spark.createDataFrame(rows, "note_id long, person_id string, note_text string")
    notes = annotate_notes(df, str(model_dir), keep_cols=["person_id"], max_length=MAX_LENGTH,
                           diagnostics=True).cache()
    entities = entity_rows(notes).collect()
    per_note = notes.select("note_id", "person_id", "status", "n_parts", "worker",
                            "load_s").collect()
    counts = count_notes(notes)

    nlp = spacy.load(model_dir)
    want, n_parts = reference(nlp, texts, MAX_LENGTH)
    got = {}
    for e in entities:
        index = e.note_id - ID0
        assert e.person_id == f"p{index % 7}"  # kept columns travel with the entities
        assert e.text == texts[index][e.start_char : e.end_char]
        assert e.span_key == "sc"
        got[(index, e.start_char, e.end_char, e.label, e.nesting_level)] = e.confidence
    assert_same(got, want)
    assert any(k[4] == 1 for k in got), "the model should predict nested spans"

    assert sorted(r.note_id for r in per_note) == [ID0 + i for i in range(len(texts))]
    assert {r.note_id - ID0: r.n_parts for r in per_note} == dict(enumerate(n_parts))
    long_ids = range(230, len(texts))
    assert all(n_parts[i] > 1 for i in long_ids) and all(n == 1 for n in n_parts[:230])
    # entities of later parts are mapped back past the first part
    assert any(k[0] in long_ids and k[1] > texts[k[0]].index("\n\n") for k in got)
    assert counts["rows"] == len(texts) == counts["with_entities"] + counts["without_entities"]
    assert counts["errors"] == 0 and counts["entities"] == len(entities)
    # one pipeline load per Python worker, at most two workers under local[2]
    loads = {(r.worker, r.load_s) for r in per_note}
    assert len(loads) == len({w for w, _ in loads}) <= 2
    notes.unpersist()

    small = df.limit(20)
    omop = annotate(small, str(model_dir), keep_cols=["person_id"], omop=True)
    assert tuple(omop.columns) == OMOP_COLUMNS + OMOP_EXTRAS + ("person_id",)
    first = omop.orderBy("note_id", "start_char", "end_char", "note_nlp_source_value").first()
    assert first.lexical_variant == texts[first.note_id - ID0][first.start_char : first.end_char]
    assert first.offset == str(first.start_char) and first.nlp_system.startswith("spacy-crf-ner")


def test_bad_rows_are_reported_and_every_row_is_accounted_for(spark, model_dir, tmp_path):
    from spacy_crf_ner.spark import annotate_notes, count_notes, entity_rows, error_rows

    code = tmp_path / "spark_test_components.py"
    code.write_text(CODE)
    spacy.util.import_file("spacy_crf_ner_code_spark_test_components", str(code))
    nlp = spacy.load(model_dir)
    nlp.add_pipe("spark_test_raise_on_boom", first=True)
    nlp.add_pipe("spark_test_clear_if_quiet")
    nlp.to_disk(tmp_path / "model")

    good = [text for text, _ in make_nested_corpus(40, seed=12)]
    texts = list(good)
    texts[3] = None
    texts[9] = ""
    texts[17] = "BOOM " + good[17]
    texts[18] = "BOOM"
    texts[25] = "QUIET " + good[25]
    texts[30] = "QUIET"
    df = spark.createDataFrame([(i, t) for i, t in enumerate(texts)], "id int, body string")
    notes = annotate_notes(df, tmp_path / "model", "body", "id", code=[code],
                           batch_size=8).cache()
    counts = count_notes(notes)
    errors = {r.id: (r.error, r.error_message) for r in error_rows(notes).collect()}
    statuses = {r.id: r.status for r in notes.select("id", "status").collect()}
    got = {}
    for e in entity_rows(notes).collect():
        got[(e.id, e.start_char, e.end_char, e.label, e.nesting_level)] = e.confidence
    notes.unpersist()

    assert counts["rows"] == len(texts) == len(statuses)
    assert counts["rows"] == counts["with_entities"] + counts["without_entities"] + counts["errors"]
    assert counts["error_reasons"] == {"null_text": 1, "empty_text": 1, "pipeline_error": 2}
    assert errors[3] == ("null_text", "the text is null")
    assert errors[9] == ("empty_text", "the text is empty")
    assert errors[17] == errors[18] == ("pipeline_error", "ValueError: BOOM in the text")
    assert statuses[25] == statuses[30] == "none"
    assert counts["without_entities"] >= 2
    # the neighbours of the raising notes (same batches of 8) keep their entities
    clean = [i for i, t in enumerate(texts) if t and "BOOM" not in t and "QUIET" not in t]
    want, _ = reference(spacy.load(model_dir), [texts[i] for i in clean])
    assert_same(got, {(clean[k[0]],) + k[1:]: v for k, v in want.items()})


def test_bad_model_is_a_clear_error_before_any_task(spark, model_dir, tmp_path):
    from spacy_crf_ner.spark import ModelError, annotate

    df = spark.createDataFrame([(1, "Known lung cancer .")], "note_id int, note_text string")
    (tmp_path / "empty").mkdir()
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.cfg").write_text("[nlp]\nlang = \"xx-nope\"\n")
    (tmp_path / "model.txt").write_text("not a model")
    tracker = spark.sparkContext.statusTracker()
    jobs = tracker.getJobIdsForGroup(None)
    cases = [
        (tmp_path / "missing", "not found: no such folder or archive, and no installed"),
        (tmp_path / "empty", "is not a spaCy pipeline folder: no config.cfg"),
        (broken, "cannot load model"),
        (tmp_path / "model.txt", "is a file; expected a pipeline folder, an archive"),
    ]
    for model, message in cases:
        with pytest.raises(ModelError, match=message):
            annotate(df, model)
    with pytest.raises(ValueError, match="text_col 'text' is not a column"):
        annotate(df, model_dir, text_col="text")
    with pytest.raises(ValueError, match="split_regex"):
        annotate(df, model_dir, split_regex="(")
    result = invoke("predict", tmp_path / "missing", tmp_path / "model.txt", tmp_path / "out",
                    "--engine", "spark")
    assert result.exit_code == 1
    assert "✘ model" in result.output and "not found" in result.output
    assert tracker.getJobIdsForGroup(None) == jobs  # no job, so no task, was launched


def test_model_shipped_to_executors_as_an_archive(spark, model_dir, tmp_path):
    from spacy_crf_ner.spark import annotate, prepare_model

    texts = [text for text, _ in make_nested_corpus(16, seed=13)]
    df = spark.createDataFrame(list(enumerate(texts)), "note_id int, note_text string")
    want, _ = reference(spacy.load(model_dir), texts)
    archive = tmp_path / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:  # the folder itself inside the archive
        tar.add(model_dir, arcname="model")
    first = prepare_model(spark, model_dir, ship=True)
    assert first.kind == "archive"  # a second call reuses the archive Spark registered
    assert prepare_model(spark, model_dir, ship=True, check_load=False) == first
    for model, ship in ((model_dir, True), (archive, None)):
        rows = annotate(df, model, ship=ship).collect()
        got = {(r.note_id, r.start_char, r.end_char, r.label, r.nesting_level): r.confidence
               for r in rows}
        assert_same(got, want)


def test_executors_run_the_transformer_at_the_precision_asked(spark, model_dir):
    from spacy_crf_ner.spark import ModelError, annotate, prepare_model
    from spacy_crf_ner.transformer.model_class import set_precision

    texts = [text for text, _ in make_nested_corpus(24, seed=17)]
    df = spark.createDataFrame(list(enumerate(texts)), "note_id int, note_text string")
    nlp = spacy.load(model_dir)
    fp32, _ = reference(nlp, texts, batch_size=1)
    set_precision(nlp, "int8")
    # One note per batch on both sides: int8 scales each batch's activations on its own.
    want, _ = reference(nlp, texts, batch_size=1)
    rows = annotate(df, model_dir, precision="int8", batch_size=1).collect()
    got = {(r.note_id, r.start_char, r.end_char, r.label, r.nesting_level): r.confidence
           for r in rows}
    assert_same(got, want)
    # ... and int8 really ran there: its confidences are not float32's
    shared = set(fp32) & set(want)
    assert shared and max(abs(fp32[k] - want[k]) for k in shared) > 1e-4

    with pytest.raises(ModelError, match="precision must be one of"):
        annotate(df, model_dir, precision="int4")

    class GpuTasks:  # a session whose tasks are given GPUs: int8 cannot run there
        class conf:
            @staticmethod
            def get(key, default=None):
                return "1" if key == "spark.task.resource.gpu.amount" else default

    with pytest.raises(ModelError, match="int8 runs on CPUs only"):
        prepare_model(GpuTasks(), model_dir, precision="int8")


def test_pyspark_is_not_imported_by_the_component_or_the_cli(model_dir):
    script = (
        "import sys, spacy, spacy_crf_ner\n"
        "from spacy_crf_ner.cli import _register_commands\n"
        "_register_commands()\n"
        f"nlp = spacy.load({str(model_dir)!r})\n"
        "nlp('Known lung cancer .')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pyspark', 'py4j')))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"


# ------------------------------------------------------------------------ the CLI
def test_cli_brat_input_gives_predict_s_ann_files_and_parquet(spark, model_dir, tmp_path):
    import pyarrow.parquet as pq

    # 200 documents: the comparison docs/spark.md states (T lines byte for byte, confidences
    # within one unit of their 4th decimal) holds over batches of different compositions.
    texts = [text for text, _ in make_nested_corpus(200, seed=14)]
    brat = tmp_path / "brat"
    (brat / "sub").mkdir(parents=True)
    for i, text in enumerate(texts):
        folder = brat / "sub" if i % 4 == 0 else brat
        long = text + "\r\n\r\n" + texts[(i + 1) % len(texts)]
        (folder / f"n{i:02d}.txt").write_bytes(long.encode("utf-8"))
        (folder / f"n{i:02d}.ann").write_text("T1\tFOO 0 3\txxx\n")  # ignored
    (brat / "empty.txt").write_text("")
    local, spark_out = tmp_path / "local", tmp_path / "spark"
    common = ["--max-length", MAX_LENGTH, "--no-progress"]
    assert invoke("predict", model_dir, brat, local, *common).exit_code == 0
    result = invoke("predict", model_dir, brat, spark_out, *common, "--engine", "spark",
                    "--master", "local[2]")
    assert result.exit_code == 0, result.output

    anns = sorted(p.relative_to(local).as_posix() for p in local.rglob("*.ann"))
    assert sorted(p.relative_to(spark_out).as_posix() for p in spark_out.rglob("*.ann")) == [
        a for a in anns if a != "empty.ann"]  # the empty text is a row in error
    n_lines = n_docs = 0
    for name in [a for a in anns if a != "empty.ann"]:
        mine = (spark_out / name).read_text(encoding="utf-8").splitlines()
        theirs = (local / name).read_text(encoding="utf-8").splitlines()
        assert [x for x in mine if x.startswith("T")] == [x for x in theirs if x.startswith("T")]
        conf = [[float(x.rsplit("=", 1)[1]) for x in lines if x.startswith("#")]
                for lines in (mine, theirs)]
        assert len(conf[0]) == len(conf[1])
        assert all(abs(a - b) <= 1e-4 + 1e-9 for a, b in zip(*conf))
        n_lines += sum(x.startswith("T") for x in mine)
        n_docs += 1
        txt = name[:-4] + ".txt"
        assert (spark_out / txt).read_bytes() == (brat / txt).read_bytes()
    assert n_lines > 0 and n_docs == 200

    entities = pq.read_table(spark_out / "entities.parquet").to_pylist()
    errors = pq.read_table(spark_out / "errors.parquet").to_pylist()
    notes = pq.read_table(spark_out / "notes.parquet").to_pylist()
    assert len(notes) == len(texts) + 1
    assert [(e["note_id"], e["error"]) for e in errors] == [("empty", "empty_text")]
    assert {e["note_id"] for e in entities} <= {n["note_id"] for n in notes}
    assert all(brat.joinpath(e["note_id"] + ".txt").read_bytes().decode("utf-8")
               [e["start_char"] : e["end_char"]] == e["text"] for e in entities)
    assert "Engine: spark" in result.output and "Format: brat" in result.output
    assert f"Documents predicted: {len(texts)} (" in result.output
    out = result.output
    assert f"Entities written: {len(entities)} ({n_lines} T lines in the .ann files)" in out
    assert "Rows in error: 1 empty_text: 1 empty: empty_text: the text is empty" in out
    assert "Skipped inputs: 0" in result.output


def test_cli_jsonl_skips_and_parquet_input(spark, model_dir, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    texts = [text for text, _ in make_nested_corpus(8, seed=15)]
    lines = [json.dumps({"id": f"n{i}", "text": t}) for i, t in enumerate(texts)]
    lines += ["{not json", json.dumps({"id": "nothing", "text": None})]
    jsonl = tmp_path / "notes.jsonl"
    jsonl.write_text("\n".join(lines) + "\n")
    result = invoke("predict", model_dir, jsonl, tmp_path / "out_jsonl", "--no-progress",
                    "--engine", "spark")
    assert result.exit_code == 0, result.output
    assert "Format: jsonl" in result.output
    assert f"Documents predicted: {len(texts)} (" in result.output
    assert "Skipped inputs: 2 bad_json: 1 no_text: 1" in result.output
    assert not list((tmp_path / "out_jsonl").glob("*.ann"))  # Parquet only
    from_jsonl = pq.read_table(tmp_path / "out_jsonl" / "entities.parquet").to_pylist()

    table = pa.table({"note_id": [f"n{i}" for i in range(len(texts))], "note_text": texts})
    pq.write_table(table, tmp_path / "notes.parquet")
    result = invoke("predict", model_dir, tmp_path / "notes.parquet", tmp_path / "out_parquet",
                    "--no-progress", "--engine", "spark")
    assert result.exit_code == 0, result.output
    assert "Format: parquet" in result.output and "Rows in error: 0" in result.output
    from_parquet = pq.read_table(tmp_path / "out_parquet" / "entities.parquet").to_pylist()

    def key(e):
        return (e["note_id"], e["start_char"], e["end_char"], e["label"])

    assert sorted(map(key, from_jsonl)) == sorted(map(key, from_parquet)) != []
