"""``predict ... --engine spark``: the same predictions, computed by Apache Spark.

INPUT is what ``predict`` reads (a BRAT folder, a folder of ``.txt`` files, a ``.txt`` file,
a JSONL file; read on the driver by ``predict``'s own readers, with the same skips), or
Parquet (a ``.parquet`` file or folder, read by Spark: the text in ``note_text`` or ``text``,
the id in ``note_id``, ``id`` or ``name``). OUTPUT_DIR receives:

* ``notes.parquet``: one row per input row (status, counts, entities, error), written by the
  one Spark job that runs the pipeline;
* ``entities.parquet``: one row per entity (:func:`spacy_crf_ner.spark.entity_rows`);
* ``errors.parquet``: the rows in error (null or empty text, pipeline errors) and why;
* for BRAT input, the ``.ann`` files (and ``.txt`` copies) that ``predict`` writes.

The note id of a file is its path relative to INPUT without ``.txt``; of a JSONL line, the
file name ``predict`` gives it without ``.txt``. ``--master`` picks the cluster (default:
spark-submit's, else ``local[*]``); ``--n-process`` and ``--gpu-id`` do not apply (Spark's
cores and ``spark.task.resource.gpu.amount`` do).
"""
import shutil
import time
from pathlib import Path
from typing import Dict, List, Optional

from wasabi import msg

from .util import fail
from .inputs import (
    FORMATS,
    SHOW_SKIPS,
    Skips,
    TextInput,
    detect_format,
    echo_skips,
    folder_inputs,
    jsonl_inputs,
    prepare_output,
)

TEXT_COLUMNS = ("note_text", "text")
ID_COLUMNS = ("note_id", "id", "name")


def _is_parquet(path: Path) -> bool:
    if path.suffix.lower() == ".parquet":
        return True
    return path.is_dir() and any(path.glob("*.parquet"))


def _note_id(item: TextInput) -> str:
    return item.source[:-4] if item.source.lower().endswith(".txt") else item.source


def _pick(columns: List[str], wanted, what: str, path: Path) -> str:
    for name in wanted:
        if name in columns:
            return name
    fail(f"{path}: no {what} column ({' or '.join(wanted)}); columns: {', '.join(columns)}")


def predict_spark(
    model: str,
    input_path: Path,
    output_dir: Path,
    *,
    fmt: str,
    batch_size: int,
    n_process: int,
    gpu_id: int,
    span_key: str,
    max_length: int,
    split_regex: str,
    scores: bool,
    progress: bool,
    master: Optional[str],
    precision: Optional[str] = None,
) -> None:
    try:
        from pyspark.sql import SparkSession

        from .. import spark as engine
    except ImportError as err:
        fail(f"--engine spark needs pyspark: pip install 'spacy-crf-ner[spark]' ({err})")

    if not input_path.exists():
        fail(f"input path {input_path} does not exist")
    if fmt not in FORMATS + ("parquet",):
        fail(f"--format must be one of {', '.join(FORMATS + ('parquet',))}; got {fmt!r}")
    if n_process != 1:
        fail("--n-process does not apply to --engine spark: the cores come from --master "
             "(e.g. local[4]) or the cluster")
    if gpu_id >= 0:
        fail("--gpu-id does not apply to --engine spark: give executors GPUs with "
             "spark.task.resource.gpu.amount (see docs/spark.md)")
    if fmt == "auto":
        fmt = "parquet" if _is_parquet(input_path) else detect_format(input_path)
    prepare_output(input_path, output_dir, fmt, writes_ann=fmt == "brat")

    skips = Skips()
    items: Dict[str, TextInput] = {}
    if fmt != "parquet":
        total, inputs = (jsonl_inputs if fmt == "jsonl" else folder_inputs)(input_path, skips)
        if total == 0:
            fail(f"no input texts found in {input_path} (format {fmt})")
        items = {_note_id(item): item for item in inputs}
        if not items:
            echo_skips(skips)
            fail(f"none of the {total} input(s) in {input_path} could be read")

    owned = SparkSession.getActiveSession() is None
    spark = engine.local_session(master, app_name="spacy-crf-ner predict", progress=progress)
    if owned:
        spark.sparkContext.setLogLevel("ERROR")
    try:
        if fmt == "parquet":
            df = spark.read.parquet(str(input_path))
            text_col = _pick(df.columns, TEXT_COLUMNS, "text", input_path)
            id_col = _pick(df.columns, ID_COLUMNS, "id", input_path)
        else:
            text_col, id_col = "note_text", "note_id"
            import pandas

            # From pandas, with Arrow: the texts go to the JVM without Python workers.
            table = pandas.DataFrame({"note_id": list(items),
                                      "note_text": [item.text for item in items.values()]})
            df = spark.createDataFrame(table, "note_id string, note_text string")
        try:
            notes = engine.annotate_notes(
                df, model, text_col, id_col, span_keys=span_key, max_length=max_length,
                split_regex=split_regex, batch_size=batch_size, brat=fmt == "brat",
                brat_scores=scores, precision=precision)
        except ValueError as err:  # ModelError included: nothing has run yet
            fail(str(err))
        paths = {name: str(output_dir / f"{name}.parquet")
                 for name in ("notes", "entities", "errors")}
        started = time.perf_counter()
        try:
            notes.write.mode("overwrite").parquet(paths["notes"])
        except Exception as err:
            fail(f"the Spark job failed: {type(err).__name__}: {str(err)[:2000]}")
        seconds = time.perf_counter() - started
        notes = spark.read.parquet(paths["notes"])
        entities = engine.entity_rows(notes)
        entities.write.mode("overwrite").parquet(paths["entities"])
        errors = engine.error_rows(notes)
        errors.write.mode("overwrite").parquet(paths["errors"])
        counts = engine.count_notes(notes)
        labels = {row["label"]: row["count"]
                  for row in entities.groupBy("label").count().collect()}
        error_list = errors.limit(SHOW_SKIPS).collect()
        issues: List[str] = []
        ann_entities = 0
        if fmt == "brat":
            rows = notes.where("status != 'error'").select(id_col, "ann", "ann_issues")
            for row in rows.toLocalIterator():
                item = items[row[id_col]]
                target = output_dir / item.source
                target.parent.mkdir(parents=True, exist_ok=True)
                with open(target.with_suffix(".ann"), "w", encoding="utf-8", newline="") as f:
                    f.write(row["ann"])
                ann_entities += sum(line.startswith("T") for line in row["ann"].splitlines())
                if item.copy_from is not None:  # the .txt byte for byte
                    shutil.copyfile(item.copy_from, target)
                else:
                    with open(target, "w", encoding="utf-8", newline="") as file_:
                        file_.write(item.text)
                issues.extend(row["ann_issues"] or ())
        cores = spark.sparkContext.defaultParallelism
        where = spark.sparkContext.master
    finally:
        if owned:
            spark.stop()

    for message in issues[:SHOW_SKIPS]:
        msg.warn(message)
    n_docs = counts["with_entities"] + counts["without_entities"]
    words = counts["words"]
    msg.info(f"Engine: spark (master {where}, {cores} cores)")
    msg.info(f"Format: {fmt}")
    msg.info(f"Documents predicted: {n_docs} ({counts['parts']} parts, {words} words, "
             f"{seconds:.2f} s" + (f", {words / seconds:,.0f} words/s)" if seconds > 0
                                   else ")"))
    msg.info(f"Entities written: {counts['entities']}"
             + (f" ({ann_entities} T lines in the .ann files)" if fmt == "brat" else ""))
    if labels:
        msg.table(sorted(labels.items()), header=("label", "entities"), aligns=("l", "r"))
    show = msg.warn if counts["errors"] else msg.info
    show(f"Rows in error: {counts['errors']}")
    for reason, n in sorted(counts["error_reasons"].items()):
        msg.text(f"  {reason}: {n}")
    for row in error_list:
        msg.text(f"  {row[id_col]}: {row['error']}: {row['error_message']}")
    if counts["errors"] > len(error_list):
        msg.text(f"  ... and {counts['errors'] - len(error_list)} more")
    echo_skips(skips)
    msg.good(f"Written to {output_dir} (notes.parquet, entities.parquet, errors.parquet"
             + (", .ann/.txt" if fmt == "brat" else "") + ")")
