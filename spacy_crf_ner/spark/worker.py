"""Executor side of :mod:`spacy_crf_ner.spark`: what runs inside each Python worker.

``map_batches`` is the function given to ``DataFrame.mapInArrow``. The pipeline is loaded the
first time a worker sees a non-empty partition and kept in a module-level cache, so a
reused Python worker (Spark's default, ``spark.python.worker.reuse``) loads it once, not once
per task or batch. Before loading, torch's threads are set to the task's CPUs
(``spark.task.cpus``) and, when the task was given a GPU (``spark.task.resource.gpu.amount``),
spaCy is put on that GPU; otherwise it runs on the CPU.

Texts go through ``nlp.pipe`` in chunks of ``batch_size`` notes, split into parts exactly as
``predict`` splits them (``max_length`` / ``split_regex``); entity offsets are mapped back to
the original text. A null or empty text, or a text that makes the pipeline raise, becomes a
result with ``status = "error"`` and a reason; the other notes of its chunk are predicted one
by one, so one bad note never costs its neighbours their entities.
"""
import os
import socket
import time
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

from ..data.split import DEFAULT_SPLIT_REGEX
from .model import ModelError, ModelSpec, code_paths, import_code, load_pipeline, local_source

# Result columns after the id and the kept columns: (name, type). Types: "int", "double",
# "string", ["string"] (an array), or a tuple of fields (a struct) inside a list.
ENTITY_FIELDS = (
    ("start_char", "int"),
    ("end_char", "int"),
    ("label", "string"),
    ("text", "string"),
    ("confidence", "double"),
    ("span_key", "string"),
    ("nesting_level", "int"),
)
STATUSES = ("entities", "none", "error")
ERROR_REASONS = ("null_text", "empty_text", "pipeline_error")


@dataclass(frozen=True)
class Options:
    """What each worker does with its notes (travels inside the task closure)."""

    id_col: str
    text_col: str
    keep_cols: Tuple[str, ...] = ()
    span_keys: Tuple[str, ...] = ("sc",)
    max_length: int = 0
    split_regex: Optional[str] = DEFAULT_SPLIT_REGEX
    batch_size: int = 32
    brat: bool = False  # the .ann text of each note (span_keys[0]), as predict writes it
    brat_scores: bool = True
    diagnostics: bool = False  # worker name, pipeline load seconds, CPU seconds, peak RSS


def result_fields(options: Options) -> List[Tuple[str, Any]]:
    fields: List[Tuple[str, Any]] = [
        ("status", "string"),
        ("n_parts", "int"),
        ("n_words", "int"),
        ("entities", [ENTITY_FIELDS]),
        ("error", "string"),
        ("error_message", "string"),
    ]
    if options.brat:
        fields += [("ann", "string"), ("ann_issues", ["string"])]
    if options.diagnostics:
        fields += [("worker", "string"), ("load_s", "double"), ("cpu_s", "double"),
                   ("rss_mb", "double")]
    return fields


# ------------------------------------------------------------------ the pipeline, once
@dataclass
class Loaded:
    nlp: Any
    load_s: float  # imports + spacy.load, in this worker (wall time)
    threads: Optional[int]
    device: str
    cpu_at_load: float = 0.0  # the worker's CPU time when the pipeline was ready


_PIPELINES: Dict[Tuple, Loaded] = {}
_IMPORTED_CODE: set = set()
_DEVICE: List[Optional[str]] = [None]


def task_resources() -> Tuple[Optional[int], Optional[str]]:
    """(CPUs, GPU address) Spark gave the running task; (None, None) outside Spark."""
    try:
        from pyspark import TaskContext
    except ImportError:  # pragma: no cover - the worker always has pyspark
        return None, None
    ctx = TaskContext.get()
    if ctx is None:
        return None, None
    cpus = gpu = None
    try:
        cpus = int(ctx.cpus())
    except Exception:  # older Spark
        pass
    try:
        info = ctx.resources().get("gpu")
        if info is not None and info.addresses:
            gpu = str(info.addresses[0])
    except Exception:
        pass
    return cpus, gpu


def limit_threads(n: Optional[int]) -> None:
    """At most ``n`` threads for torch and the BLAS libraries in this worker."""
    if not n or n < 1:
        return
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(name, str(n))  # read when the libraries start
    import torch

    if torch.get_num_threads() != n:
        torch.set_num_threads(n)


def use_device(gpu: Optional[str]) -> None:
    import spacy

    if _DEVICE[0] == (gpu or "cpu"):
        return
    if gpu is None:
        spacy.require_cpu()
    else:
        spacy.require_gpu(int(gpu))
    _DEVICE[0] = gpu or "cpu"


def get_pipeline(spec: ModelSpec) -> Loaded:
    """The pipeline for ``spec`` in this worker, loaded on first use."""
    cpus, gpu = task_resources()
    key = spec.key + (gpu,)
    loaded = _PIPELINES.get(key)
    if loaded is not None:
        use_device(gpu)
        return loaded
    start = time.perf_counter()
    limit_threads(cpus)
    use_device(gpu)
    paths = [p for p in code_paths(spec) if str(p) not in _IMPORTED_CODE]
    import_code(paths)
    _IMPORTED_CODE.update(str(p) for p in paths)
    if spec.precision == "int8" and gpu is not None:
        raise ModelError(f"model {spec.description}: precision int8 runs on CPUs only, and "
                         f"this task was given GPU {gpu}; use bf16 or fp16 on GPUs")
    nlp = load_pipeline(local_source(spec), spec.description, spec.precision)
    loaded = Loaded(nlp, time.perf_counter() - start, cpus,
                    "cpu" if gpu is None else f"gpu:{gpu}", time.process_time())
    _PIPELINES[key] = loaded
    return loaded


# ------------------------------------------------------------------ notes -> results
def nesting_levels(spans: Sequence) -> List[int]:
    """0 for a span that no other span of its label contains, k for a span inside k of them
    (crf_ner decodes level by level, so this is the level that predicted it)."""
    by_label: Dict[str, List[int]] = {}
    for i, span in enumerate(spans):
        by_label.setdefault(span.label_, []).append(i)
    levels = [0] * len(spans)
    for indices in by_label.values():
        for i in indices:
            a, b = spans[i].start_char, spans[i].end_char
            levels[i] = sum(
                1 for j in indices
                if j != i and spans[j].start_char <= a and b <= spans[j].end_char
                and (spans[j].start_char, spans[j].end_char) != (a, b)
            )
    return levels


def _error(reason: str, message: str) -> Dict[str, Any]:
    return {"status": "error", "error": reason, "error_message": message}


def _result(docs: List, text: str, name: str, options: Options) -> Dict[str, Any]:
    """Entities of one note from its predicted parts (offsets in the original text)."""
    from ..data import PROVENANCE_KEY, format_ann
    from ..data.writer import WriteReport
    from ..spans import get_span_scores, get_spans

    entities = []
    for doc in docs:
        offset = doc.user_data[PROVENANCE_KEY]["offset"]
        for key in options.span_keys:
            spans, scores = get_spans(doc, key), get_span_scores(doc, key)
            for i, (span, level) in enumerate(zip(spans, nesting_levels(spans))):
                start, end = offset + span.start_char, offset + span.end_char
                entities.append({
                    "start_char": start,
                    "end_char": end,
                    "label": span.label_,
                    "text": text[start:end],
                    "confidence": None if scores is None else float(scores[i]),
                    "span_key": key,
                    "nesting_level": level,
                })
    result: Dict[str, Any] = {
        "status": "entities" if entities else "none",
        "n_parts": len(docs),
        "n_words": sum(len(doc) for doc in docs),
        "entities": entities,
    }
    if options.brat:
        report = WriteReport()
        result["ann"] = format_ann(docs, options.span_keys[0], text=text,
                                   write_scores=options.brat_scores, report=report,
                                   source=name)
        result["ann_issues"] = [str(issue) for issue in report.issues]
    return result


def _predict(nlp, notes: List[Tuple[int, str, str]], options: Options) -> Dict[int, Dict]:
    """Results of notes ``(index, name, text)`` predicted together (raises if any fails)."""
    from ..data.split import allow_length
    from ..data import PROVENANCE_KEY
    from ..data.split import split_text

    parts: List[Tuple[str, Tuple[int, Dict[str, Any]]]] = []
    for index, name, text in notes:
        parts.extend((part, (index, prov))
                     for part, prov in split_text(nlp, text, name, options.split_regex,
                                                  options.max_length))
    allow_length(nlp, [part for part, _ in parts])
    docs: Dict[int, List] = {index: [] for index, _, _ in notes}
    for doc, (index, prov) in nlp.pipe(parts, as_tuples=True, batch_size=options.batch_size):
        doc.user_data[PROVENANCE_KEY] = dict(prov)
        docs[index].append(doc)
    return {index: _result(docs[index], text, name, options) for index, name, text in notes}


def annotate_texts(nlp, texts: Sequence[Optional[str]], names: Sequence[str],
                   options: Options) -> List[Dict[str, Any]]:
    """One result per text (see :func:`result_fields`); never raises for a bad text."""
    results: List[Optional[Dict[str, Any]]] = [None] * len(texts)
    todo = []
    for index, (text, name) in enumerate(zip(texts, names)):
        if text is None:
            results[index] = _error("null_text", "the text is null")
        elif text == "":
            results[index] = _error("empty_text", "the text is empty")
        else:
            todo.append((index, name, text))
    if todo:
        try:
            done = _predict(nlp, todo, options)
        except Exception:
            done = {}
            for note in todo:  # find the culprit(s); the others get their entities
                try:
                    done.update(_predict(nlp, [note], options))
                except Exception as err:
                    done[note[0]] = _error("pipeline_error", f"{type(err).__name__}: {err}")
        for index, result in done.items():
            results[index] = result
    return [result for result in results if result is not None]  # every text has one


# ------------------------------------------------------------------ Arrow in, Arrow out
def arrow_type(kind):
    import pyarrow as pa

    if isinstance(kind, list):
        return pa.list_(arrow_type(kind[0]))
    if isinstance(kind, tuple):
        return pa.struct([(name, arrow_type(sub)) for name, sub in kind])
    return {"int": pa.int32(), "double": pa.float64(), "string": pa.string()}[kind]


def peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def _record_batch(chunk, results: List[Dict[str, Any]], options: Options, loaded: Loaded):
    import pyarrow as pa

    columns = [chunk.column(0)] + [chunk.column(2 + i) for i in range(len(options.keep_cols))]
    names = [options.id_col, *options.keep_cols]
    extra = {}
    if options.diagnostics:
        extra = {"worker": f"{socket.gethostname()}:{os.getpid()}", "load_s": loaded.load_s,
                 "cpu_s": time.process_time() - loaded.cpu_at_load, "rss_mb": peak_rss_mb()}
    for name, kind in result_fields(options):
        values = [extra[name] if name in extra else r.get(name) for r in results]
        if name == "entities":
            values = [v or [] for v in values]
        columns.append(pa.array(values, type=arrow_type(kind)))
        names.append(name)
    return pa.RecordBatch.from_arrays(columns, names=names)


def map_batches(batches: Iterator, spec: ModelSpec, options: Options) -> Iterator:
    """``mapInArrow`` function: input columns id, text, kept columns; one output row per
    input row."""
    loaded = None
    for batch in batches:
        if batch.num_rows == 0:
            continue
        if loaded is None:
            loaded = get_pipeline(spec)
        for start in range(0, batch.num_rows, options.batch_size):
            chunk = batch.slice(start, options.batch_size)
            names = ["" if v is None else str(v) for v in chunk.column(0).to_pylist()]
            results = annotate_texts(loaded.nlp, chunk.column(1).to_pylist(), names, options)
            yield _record_batch(chunk, results, options, loaded)
