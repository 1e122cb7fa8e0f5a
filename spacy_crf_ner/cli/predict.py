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

from . import app
from .evaluate import allow_length, check_batching, fail, load_model, use_gpu

FORMATS = ("auto", "brat", "txt", "jsonl")
JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")
SHOW_SKIPS = 20


@dataclass
class _Input:
    """One text to predict: where it goes (``source``, relative ``.txt`` path), its text,
    and the file to copy byte for byte (None: write the text)."""

    source: str
    text: str
    copy_from: Optional[Path] = None


@dataclass
class _Skips:
    reasons: Counter = field(default_factory=Counter)
    messages: List[str] = field(default_factory=list)
    renamed: int = 0

    def add(self, reason: str, message: str) -> None:
        self.reasons[reason] += 1
        self.messages.append(message)

    @property
    def total(self) -> int:
        return sum(self.reasons.values())


def _detect_format(path: Path) -> str:
    if path.is_file():
        if path.suffix.lower() in JSONL_SUFFIXES:
            return "jsonl"
        if path.suffix.lower() == ".txt":
            return "txt"
        fail(f"cannot tell the format of {path}: use --format jsonl|txt")
    from ..data import find_standoff_files

    has_ann = any(entry.ann is not None for entry in find_standoff_files(path))
    return "brat" if has_ann else "txt"


def _folder_inputs(path: Path, skips: _Skips) -> Tuple[int, Iterator[_Input]]:
    """Every ``.txt`` under ``path`` (or ``path`` itself), decoded as UTF-8 and unchanged."""
    from ..data import find_standoff_files

    entries = [e for e in find_standoff_files(path) if e.txt is not None]

    def generate() -> Iterator[_Input]:
        for entry in entries:
            try:
                data = entry.txt.read_bytes()
            except OSError as err:
                skips.add("unreadable", f"{entry.source}: cannot read ({err})")
                continue
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError as err:
                line = data[: err.start].count(b"\n") + 1
                skips.add("not_utf8", f"{entry.source}:{line}: not valid UTF-8 "
                                      f"(byte offset {err.start}); skipped")
                continue
            yield _Input(entry.source, text, entry.txt)

    return len(entries), generate()


_UNSAFE = re.compile(r"[^\w.\-]+")


def _safe_name(value: object) -> str:
    name = _UNSAFE.sub("_", str(value)).lstrip(".")
    return name[:200]


def _jsonl_inputs(path: Path, skips: _Skips) -> Tuple[int, Iterator[_Input]]:
    """One input per valid line; bad lines are skipped with their line number."""
    with open(path, "rb") as f:
        total = sum(1 for line in f if line.strip())

    def generate() -> Iterator[_Input]:
        used: Dict[str, int] = {}
        with open(path, "rb") as f:
            for lineno, raw in enumerate(f, start=1):
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
                if not isinstance(record, dict):
                    skips.add("not_an_object", f"{where}: not a JSON object; skipped")
                    continue
                text = record.get("text")
                if not isinstance(text, str):
                    reason = "no_text" if text is None else "text_not_a_string"
                    skips.add(reason, f"{where}: no string \"text\" field; skipped")
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
                yield _Input(name + ".txt", text)

    return total, generate()


def _parts(nlp, item: _Input, split_regex: Optional[str], max_length: int):
    """(text, provenance) for each part of one input (one part when not splitting)."""
    from ..data import set_provenance, split_doc

    n = len(item.text)
    whole = {"source": item.source, "offset": 0, "length": n, "part": 0, "n_parts": 1}
    if max_length <= 0:
        return [(item.text, whole)]
    doc = nlp.tokenizer(item.text) if n > nlp.max_length else nlp.make_doc(item.text)
    set_provenance(doc, item.source, 0, n)
    return [(part.text, dict(part.user_data["standoff"]))
            for part in split_doc(doc, split_regex or None, max_length)]


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
    split_regex: str = typer.Option(
        r"\r?\n(?:\r?\n)+", "--split-regex",
        help="Preferred split points, as in convert ('': none, cut only at the limit)",
    ),
    scores: bool = typer.Option(
        True, "--scores/--no-scores", help="Write confidences as AnnotatorNotes"
    ),
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
            scores=scores, progress=progress, master=master,
        )
    if engine != "pipe":
        fail(f"--engine must be pipe or spark; got {engine!r}")
    if master is not None:
        fail("--master needs --engine spark")
    from tqdm import tqdm

    from ..data import write_standoff
    from ..data.writer import get_spans

    if not input_path.exists():
        fail(f"input path {input_path} does not exist")
    if fmt not in FORMATS:
        fail(f"--format must be one of {', '.join(FORMATS)}; got {fmt!r}")
    if max_length < 0:
        fail(f"--max-length must be >= 0, got {max_length}")
    if split_regex:
        try:
            re.compile(split_regex)
        except re.error as err:
            fail(f"--split-regex {split_regex!r} is not a valid regular expression: {err}")
    check_batching(batch_size, n_process, gpu_id)
    if fmt == "auto":
        fmt = _detect_format(input_path)
    if fmt == "jsonl" and not input_path.is_file():
        fail(f"--format jsonl needs a file; {input_path} is a folder")
    if fmt in ("brat", "txt") and input_path.is_file() and input_path.suffix.lower() != ".txt":
        fail(f"--format {fmt} needs a folder or a .txt file; got {input_path}")
    if output_dir.exists() and not output_dir.is_dir():
        fail(f"output {output_dir} is a file, not a folder")
    in_root = input_path if input_path.is_dir() else input_path.parent
    if output_dir.exists() and output_dir.resolve() == in_root.resolve() and fmt != "jsonl":
        fail("OUTPUT_DIR is the input folder: the input .ann files would be overwritten; "
             "choose another folder")
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        fail(f"cannot create {output_dir}: {err}")

    use_gpu(gpu_id)
    nlp = load_model(model)

    skips = _Skips()
    if fmt == "jsonl":
        total, inputs = _jsonl_inputs(input_path, skips)
    else:
        total, inputs = _folder_inputs(input_path, skips)
    if total == 0:
        fail(f"no input texts found in {input_path} (format {fmt})")

    # Texts are read ahead so that parts and max_length are known before the pipeline runs.
    items: List[_Input] = list(inputs)
    if not items:
        _echo_skips(skips)
        fail(f"none of the {total} input(s) in {input_path} could be read")
    parts: List[Tuple[str, dict]] = []
    for item in items:
        parts.extend(_parts(nlp, item, split_regex, max_length))
    raised = allow_length(nlp, [text for text, _ in parts])
    if raised:
        typer.echo(f"Note: nlp.max_length raised to {raised} for the longest text "
                   "(use --max-length to split long texts)", err=True)
    by_source = {item.source: item for item in items}

    labels: Counter = Counter()
    n_words = 0
    n_docs = 0
    write_counts: Counter = Counter()
    issues: List[str] = []
    saw_key = False
    bar = tqdm(total=len(items), desc="predict", unit="doc", file=sys.stderr,
               disable=not progress)
    pending: List = []

    def flush() -> None:
        nonlocal n_docs
        if not pending:
            return
        source = pending[0].user_data["standoff"]["source"]
        item = by_source[source]
        report = write_standoff(pending, output_dir, span_key, write_text=item.copy_from is None,
                                write_scores=scores)
        if item.copy_from is not None:
            shutil.copyfile(item.copy_from, output_dir / source)
        for name, value in report.to_dict().items():
            if isinstance(value, int):
                write_counts[name] += value
        issues.extend(str(issue) for issue in report.issues)
        n_docs += 1
        pending.clear()
        bar.update(1)

    started = time.perf_counter()
    try:
        for doc, prov in nlp.pipe(parts, as_tuples=True, batch_size=batch_size,
                                  n_process=n_process):
            doc.user_data["standoff"] = dict(prov)
            n_words += len(doc)
            spans, _ = get_spans(doc, span_key)
            saw_key = saw_key or span_key == "ents" or span_key in doc.spans
            labels.update(span.label_ for span in spans)
            if pending and pending[0].user_data["standoff"]["source"] != prov["source"]:
                flush()
            pending.append(doc)
        flush()
    except OSError as err:
        bar.close()
        fail(f"cannot write to {output_dir}: {err}")
    except Exception as err:
        bar.close()
        fail(f"the pipeline failed: {type(err).__name__}: {err}")
    bar.close()
    seconds = time.perf_counter() - started

    if not saw_key and parts:
        typer.echo(f"Warning: the pipeline wrote no span group {span_key!r}; see --span-key",
                   err=True)
    for message in issues[:SHOW_SKIPS]:
        typer.echo(f"warning: {message}", err=True)
    typer.echo(f"Format: {fmt}")
    typer.echo(f"Documents predicted: {n_docs} ({len(parts)} parts, {n_words} words, "
               f"{seconds:.2f} s" + (f", {n_words / seconds:,.0f} words/s)" if seconds > 0
                                      else ")"))
    typer.echo(f"Entities written: {write_counts['entities']}")
    width = max([len(label) for label in labels] + [5])
    for label, n in sorted(labels.items()):
        typer.echo(f"  {label.ljust(width)}  {n}")
    _echo_skips(skips)
    typer.echo(f"Written to {output_dir}")


def _echo_skips(skips: _Skips) -> None:
    typer.echo(f"Skipped inputs: {skips.total}")
    for reason, n in sorted(skips.reasons.items()):
        typer.echo(f"  {reason}: {n}")
    if skips.renamed:
        typer.echo(f"Renamed (name used before): {skips.renamed}")
    for message in skips.messages[:SHOW_SKIPS]:
        typer.echo(f"  {message}")
    if len(skips.messages) > SHOW_SKIPS:
        typer.echo(f"  ... and {len(skips.messages) - SHOW_SKIPS} more")
