"""``python -m spacy_crf_ner predict MODEL INPUT OUTPUT_DIR``: write predictions as BRAT.

INPUT is a BRAT folder (its ``.ann`` files are ignored), a folder of ``.txt`` files (both
searched recursively, hidden files skipped), a single ``.txt`` file, or a JSONL file with
one ``{"text": ..., "id"/"name": ...}`` object per line. Long texts can be split into parts
(``--max-length``, ``--split-regex``, as in ``convert``). The predictions go back into the
coordinates of the original text and are written with :func:`write_standoff`, with one
``.ann`` per input text, the folder structure kept, and confidences as notes. The ``.txt``
files are copied byte for byte. Inputs that cannot be read are skipped, counted and
reported; they never stop the run.
"""
import shutil
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import typer
from wasabi import msg

from ..data.meta import PROVENANCE_KEY
from ..data.split import allow_length
from . import app
from .inputs import (
    FORMATS, SHOW_SKIPS, Skips, TextInput, detect_format, echo_skips, folder_inputs,
    jsonl_inputs, prepare_output,
)
from .util import (
    check_batching, check_precision, check_split_regex, fail, load_model, precision_option,
    split_regex_option, use_gpu,
)

@app.command("predict")
def predict(
    model: str = typer.Argument(
        ..., metavar="MODEL", help="Pipeline folder (or installed package name)"
    ),
    input_path: Path = typer.Argument(
        ..., metavar="INPUT", help="BRAT folder, folder of .txt files, .txt file or JSONL file"
    ),
    output_dir: Path = typer.Argument(
        ..., metavar="OUTPUT_DIR", help="Folder receiving the .txt/.ann files"
    ),
    fmt: str = typer.Option("auto", "--format", help="auto | brat | txt | jsonl"),
    batch_size: int = typer.Option(32, "--batch-size", help="Texts per batch in nlp.pipe"),
    n_process: int = typer.Option(1, "--n-process", help="Processes for nlp.pipe"),
    gpu_id: int = typer.Option(-1, "--gpu-id", help="GPU to run on (-1: CPU)"),
    span_key: str = typer.Option(
        "sc", "--span-key", help="Span group holding the predictions ('ents' for doc.ents)"
    ),
    max_length: int = typer.Option(
        0, "--max-length", help="Split texts into parts of at most this many tokens (0: no split)"
    ),
    split_regex: str = split_regex_option(),
    scores: bool = typer.Option(
        True, "--scores/--no-scores", help="Write confidences as AnnotatorNotes"
    ),
    precision: Optional[str] = precision_option(),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bar"),
    engine: str = typer.Option(
        "pipe", "--engine",
        help="pipe: nlp.pipe here (--n-process); spark: Apache Spark, Parquet output "
             "(docs/spark.md)",
    ),
    master: Optional[str] = typer.Option(
        None, "--master", help="Spark master for --engine spark, e.g. local[4] "
                               "(default: spark-submit's, else local[*])",
    ),
) -> None:
    """Predict entities in raw texts and write them as BRAT standoff files."""
    if engine == "spark":
        from .predict_spark import predict_spark

        return predict_spark(
            model, input_path, output_dir, fmt=fmt, batch_size=batch_size, n_process=n_process,
            gpu_id=gpu_id, span_key=span_key, max_length=max_length, split_regex=split_regex,
            scores=scores, progress=progress, master=master, precision=precision,
        )
    if engine != "pipe":
        fail(f"--engine must be pipe or spark; got {engine!r}")
    if master is not None:
        fail("--master needs --engine spark")
    from tqdm import tqdm

    from ..data import write_standoff
    from ..data.split import split_text
    from ..spans import get_spans

    if not input_path.exists():
        fail(f"input path {input_path} does not exist")
    if fmt not in FORMATS:
        fail(f"--format must be one of {', '.join(FORMATS)}; got {fmt!r}")
    if max_length < 0:
        fail(f"--max-length must be >= 0, got {max_length}")
    check_split_regex(split_regex)
    check_batching(batch_size, n_process, gpu_id)
    if fmt == "auto":
        fmt = detect_format(input_path)
    prepare_output(input_path, output_dir, fmt, writes_ann=fmt != "jsonl")

    check_precision(precision, gpu_id)
    use_gpu(gpu_id)
    nlp = load_model(model, precision)

    skips = Skips()
    if fmt == "jsonl":
        total, inputs = jsonl_inputs(input_path, skips)
    else:
        total, inputs = folder_inputs(input_path, skips)
    if total == 0:
        fail(f"no input texts found in {input_path} (format {fmt})")

    # Texts are read ahead so that parts and max_length are known before the pipeline runs.
    items: List[TextInput] = list(inputs)
    if not items:
        echo_skips(skips)
        fail(f"none of the {total} input(s) in {input_path} could be read")
    parts_by_source: Dict[str, List[Tuple[str, dict]]] = {}
    for item in items:
        parts_by_source[item.source] = split_text(nlp, item.text, item.source, split_regex,
                                                  max_length)
    parts = [part for source_parts in parts_by_source.values() for part in source_parts]
    raised = allow_length(nlp, [text for text, _ in parts])
    if raised:
        msg.info(f"nlp.max_length raised to {raised} for the longest text "
                 "(use --max-length to split long texts)")
    by_source = {item.source: item for item in items}

    labels: Counter = Counter()
    n_words = 0
    n_docs = 0
    write_counts: Counter = Counter()
    issues: List[str] = []
    saw_key = False
    bar = tqdm(total=len(items), desc="predict", unit="doc", file=sys.stderr,
               disable=not progress)

    def write(source: str, docs: List) -> None:
        nonlocal n_docs, n_words, saw_key
        item = by_source[source]
        try:
            report = write_standoff(docs, output_dir, span_key,
                                    write_text=item.copy_from is None, write_scores=scores)
            if item.copy_from is not None:
                shutil.copyfile(item.copy_from, output_dir / source)
        except OSError as err:  # this record's name or text; the others may still be written
            for half in (".txt", ".ann"):  # no half-written pair left behind
                try:
                    (output_dir / source).with_suffix(half).unlink(missing_ok=True)
                except OSError:
                    pass
            skips.add("cannot_write", f"{source}: cannot write its files "
                                      f"({err.strerror or err}); skipped")
            bar.update(1)
            return
        for doc in docs:
            n_words += len(doc)
            spans = get_spans(doc, span_key)
            saw_key = saw_key or span_key == "ents" or span_key in doc.spans
            labels.update(span.label_ for span in spans)
        for name, value in report.to_dict().items():
            if isinstance(value, int):
                write_counts[name] += value
        issues.extend(str(issue) for issue in report.issues)
        n_docs += 1
        bar.update(1)

    def fail_source(source: str, err: Exception) -> None:
        skips.add("pipeline_error", f"{source}: the pipeline failed on this text "
                                    f"({type(err).__name__}: {err}); skipped")
        bar.update(1)

    started = time.perf_counter()
    _run_pipeline(nlp, parts_by_source, batch_size, n_process, write, fail_source)
    bar.close()
    seconds = time.perf_counter() - started
    if n_docs == 0:
        echo_skips(skips)
        fail(f"none of the {total} input(s) in {input_path} could be predicted")

    if not saw_key and parts:
        msg.warn(f"the pipeline wrote no span group {span_key!r}; see --span-key")
    for message in issues[:SHOW_SKIPS]:
        msg.warn(message)
    msg.info(f"Format: {fmt}")
    msg.info(f"Documents predicted: {n_docs} ({len(parts)} parts, {n_words} words, "
             f"{seconds:.2f} s" + (f", {n_words / seconds:,.0f} words/s)" if seconds > 0
                                    else ")"))
    msg.info(f"Entities written: {write_counts['entities']}")
    if labels:
        msg.table(sorted(labels.items()), header=("label", "entities"), aligns=("l", "r"))
    echo_skips(skips)
    msg.good(f"Written to {output_dir}")


def _run_pipeline(nlp, parts_by_source: Dict[str, List[Tuple[str, dict]]], batch_size: int,
                  n_process: int, write, fail_source) -> None:
    """Run ``nlp.pipe`` over every part and call ``write(source, docs)`` once per source.

    One text that makes the pipeline raise must not stop the run: when the stream raises,
    the sources of the batch it was on are run alone, each either written or passed to
    ``fail_source``, and the stream restarts after them. Without failures this is a single
    ``nlp.pipe`` call, batched across sources.
    """
    queue = list(parts_by_source)
    while queue:
        stream = ((part, prov) for source in list(queue) for part, prov in parts_by_source[source])
        pending: List = []
        try:
            for doc, prov in nlp.pipe(stream, as_tuples=True, batch_size=batch_size,
                                      n_process=n_process):
                doc.user_data[PROVENANCE_KEY] = dict(prov)
                pending.append(doc)
                source = prov["source"]
                if len(pending) == len(parts_by_source[source]):
                    queue.remove(source)
                    write(source, pending)
                    pending = []
            return
        except typer.Exit:  # fail() while writing: the output is unusable, stop
            raise
        except Exception:  # noqa: BLE001 - reported per source below
            suspects, n = [], 0
            for source in queue:
                if n >= batch_size:
                    break
                suspects.append(source)
                n += len(parts_by_source[source])
            for source in suspects:
                queue.remove(source)
                source_parts = parts_by_source[source]
                try:
                    docs = list(nlp.pipe((p for p, _ in source_parts), batch_size=batch_size))
                except Exception as err:  # noqa: BLE001 - counted as a skipped input
                    fail_source(source, err)
                    continue
                for doc, (_, prov) in zip(docs, source_parts):
                    doc.user_data[PROVENANCE_KEY] = dict(prov)
                write(source, docs)
