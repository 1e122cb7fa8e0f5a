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
import codecs
import json
import re
import shutil
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

import typer
from wasabi import msg

from ..data.meta import PROVENANCE_KEY
from ..data.reader import printable_name
from . import app
from .util import (
    allow_length, check_batching, check_precision, check_split_regex, fail, load_model,
    precision_option, split_regex_option, use_gpu,
)

FORMATS = ("auto", "brat", "txt", "jsonl")
JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")
SHOW_SKIPS = 20


@dataclass
class TextInput:
    """One text to predict: where it goes (``source``, relative ``.txt`` path), its text,
    and the file to copy byte for byte (None: write the text)."""

    source: str
    text: str
    copy_from: Optional[Path] = None


@dataclass
class Skips:
    reasons: Counter = field(default_factory=Counter)
    messages: List[str] = field(default_factory=list)
    renamed: int = 0

    def add(self, reason: str, message: str) -> None:
        self.reasons[reason] += 1
        self.messages.append(printable_name(message))

    @property
    def total(self) -> int:
        return sum(self.reasons.values())


def detect_format(path: Path) -> str:
    if path.is_file():
        if path.suffix.lower() in JSONL_SUFFIXES:
            return "jsonl"
        if path.suffix.lower() == ".txt":
            return "txt"
        fail(f"cannot tell the format of {path}: use --format jsonl|txt")
    from ..data import find_standoff_files

    has_ann = any(entry.ann is not None for entry in find_standoff_files(path))
    return "brat" if has_ann else "txt"


def folder_inputs(path: Path, skips: Skips) -> Tuple[int, Iterator[TextInput]]:
    """Every ``.txt`` under ``path`` (or ``path`` itself), decoded as UTF-8 and unchanged.

    Files that cannot be read (broken links, FIFOs, permissions), that are not UTF-8, or
    whose name differs from another input's only by the case of its suffix are skipped and
    counted.
    """
    from ..data import find_standoff_files
    from ..data.reader import read_file_bytes

    problems: List[Tuple[str, str]] = []
    entries = find_standoff_files(path, problems)
    collisions = [(e, extra) for e in entries for extra in e.extra
                  if extra.suffix.lower() == ".txt"]
    texts = [(e, e.txt) for e in entries if e.txt is not None]

    def generate() -> Iterator[TextInput]:
        for rel, why in problems:
            skips.add("unreadable_folder", f"{printable_name(rel)}/: {why}; its files skipped")
        for entry, extra in collisions:
            paired = entry.txt.name if entry.txt is not None else "?"
            skips.add("case_collision", f"{entry.stem + extra.suffix}: name differs from "
                                        f"{paired} only by case; skipped")
        for entry, txt in texts:
            data, why = read_file_bytes(txt)
            if data is None:
                skips.add("unreadable", f"{entry.source}: {why}; skipped")
                continue
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError as err:
                line = data[: err.start].count(b"\n") + 1
                skips.add("not_utf8", f"{entry.source}:{line}: not valid UTF-8 "
                                      f"(byte offset {err.start}); skipped")
                continue
            yield TextInput(entry.source, text, txt)

    return len(texts) + len(collisions) + len(problems), generate()


_UNSAFE = re.compile(r"[^\w.\-]+")
# File names are limited in bytes (255 on most systems); room is left for "__N" and ".ann".
MAX_NAME_BYTES = 200


def _safe_name(value: object) -> str:
    """A file name from a JSONL id: unsafe characters replaced, at most MAX_NAME_BYTES bytes
    of UTF-8 (cut between characters)."""
    name = _UNSAFE.sub("_", str(value)).lstrip(".")
    encoded = name.encode("utf-8", "replace")
    if len(encoded) > MAX_NAME_BYTES:
        name = encoded[:MAX_NAME_BYTES].decode("utf-8", "ignore")
    return name


def jsonl_inputs(path: Path, skips: Skips) -> Tuple[int, Iterator[TextInput]]:
    """One input per valid line; bad lines are skipped with their line number."""
    with open(path, "rb") as f:
        total = sum(1 for line in f if line.strip())

    def generate() -> Iterator[TextInput]:
        used: Dict[str, int] = {}
        with open(path, "rb") as f:
            for lineno, raw in enumerate(f, start=1):
                if lineno == 1 and raw.startswith(codecs.BOM_UTF8):
                    raw = raw[len(codecs.BOM_UTF8):]
                if not raw.strip():
                    continue
                where = f"{path.name}:{lineno}"
                try:
                    record = json.loads(raw.decode("utf-8"))
                except UnicodeDecodeError:
                    skips.add("not_utf8", f"{where}: not valid UTF-8; skipped")
                    continue
                except ValueError as err:
                    skips.add("bad_json", f"{where}: invalid JSON ({err}); skipped")
                    continue
                except RecursionError:
                    skips.add("bad_json", f"{where}: JSON nested too deeply to read; skipped")
                    continue
                if not isinstance(record, dict):
                    skips.add("not_an_object", f"{where}: not a JSON object; skipped")
                    continue
                text = record.get("text")
                if not isinstance(text, str):
                    reason = "no_text" if text is None else "text_not_a_string"
                    skips.add(reason, f"{where}: no string \"text\" field; skipped")
                    continue
                try:
                    text.encode("utf-8")
                except UnicodeEncodeError as err:  # a lone surrogate such as "\\ud800"
                    skips.add("not_encodable", f"{where}: \"text\" has {err.reason} at "
                                               f"character {err.start}; skipped")
                    continue
                ident = record.get("id", record.get("name"))
                name = _safe_name(ident) if ident is not None else ""
                if not name:
                    name = f"line{lineno:06d}"
                if name in used:
                    used[name] += 1
                    new = f"{name}__{used[name]}"
                    while new in used:
                        used[name] += 1
                        new = f"{name}__{used[name]}"
                    skips.renamed += 1
                    skips.messages.append(f"{where}: name {name!r} used before; written as "
                                          f"{new!r}")
                    name = new
                used[name] = used.get(name, 1)
                yield TextInput(name + ".txt", text)

    return total, generate()


def prepare_output(input_path: Path, output_dir: Path, fmt: str, writes_ann: bool) -> None:
    """Fail now if the input does not fit ``fmt`` or the output folder cannot be used (a
    file; the input folder itself when ``.ann`` files would be written over the input's);
    else create the output folder."""
    if fmt == "jsonl" and not input_path.is_file():
        what = "a folder" if input_path.is_dir() else "not a regular file (a FIFO, socket or " \
            "device: it is read twice, so save it to a file first)"
        fail(f"--format jsonl needs a file; {input_path} is {what}")
    if fmt in ("brat", "txt") and input_path.is_file() and input_path.suffix.lower() != ".txt":
        fail(f"--format {fmt} needs a folder or a .txt file; got {input_path}")
    if output_dir.exists() and not output_dir.is_dir():
        fail(f"output {output_dir} is a file, not a folder")
    in_root = input_path if input_path.is_dir() else input_path.parent
    if output_dir.exists() and output_dir.resolve() == in_root.resolve() and writes_ann:
        fail("OUTPUT_DIR is the input folder: the input .ann files would be overwritten; "
             "choose another folder")
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        fail(f"cannot create {output_dir}: {err}")


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


def echo_skips(skips: Skips) -> None:
    """How many inputs were skipped, by reason, and the first messages."""
    show = msg.warn if skips.total else msg.info
    show(f"Skipped inputs: {skips.total}")
    for reason, n in sorted(skips.reasons.items()):
        msg.text(f"  {reason}: {n}")
    if skips.renamed:
        msg.info(f"Renamed (name used before): {skips.renamed}")
    for message in skips.messages[:SHOW_SKIPS]:
        msg.text(f"  {message}")
    if len(skips.messages) > SHOW_SKIPS:
        msg.text(f"  ... and {len(skips.messages) - SHOW_SKIPS} more")
