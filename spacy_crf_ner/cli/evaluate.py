"""``python -m spacy_crf_ner evaluate MODEL DATA``: run a pipeline on gold data and score it.

DATA is a ``.spacy`` DocBin or a BRAT standoff folder. The pipeline runs on the raw texts,
and its entities are compared with the gold ones on character offsets
(:mod:`spacy_crf_ner.evaluation`). Prints exact and token-level scores, the error
breakdown and the speed, and saves all of it as JSON with ``--output``; ``--html`` writes a
page of the errors (:mod:`spacy_crf_ner.error_page`).

The helpers used by both ``evaluate`` and ``predict`` (clean failures, GPU, model loading)
live here.
"""
import sys
import time
from pathlib import Path
from typing import Any, Dict, Optional

import typer
from wasabi import msg

from . import app
from ..data.split import allow_length
from .util import (
    check_batching, check_output_file, check_precision, echo_block, fail, load_model,
    precision_option, use_gpu,
)


def _read_gold(nlp, data: Path, gold_key: str):
    """Gold Docs from a DocBin file or a BRAT folder, and the conversion report (or None)."""
    from ..data import StandoffError, read_standoff

    if data.is_dir():
        span_key = "sc" if gold_key == "ents" else gold_key
        try:
            docs, report = read_standoff(data, nlp, span_key=span_key)
        except StandoffError as err:
            fail(str(err))
        return docs, report
    from spacy.tokens import DocBin

    try:
        docs = list(DocBin().from_disk(data).get_docs(nlp.vocab))
    except Exception as err:
        fail(f"cannot read {data} as a .spacy DocBin ({type(err).__name__}: {err}); DATA must "
             "be a .spacy file or a folder of BRAT .txt/.ann files")
    return docs, None


def _echo_conversion(report, saved: bool) -> None:
    """The BRAT reading counts in a few lines (all of them go to the JSON output)."""
    dropped = ", ".join(f"{k}: {v}" for k, v in sorted(report.dropped.items()))
    msg.info(
        f"Gold data (BRAT): {report.documents} documents ({report.parts} docs), "
        f"{report.spans_read} spans read, {report.kept} kept, {report.n_dropped} dropped"
        + (f" ({dropped})" if dropped else "")
        + f", {report.misaligned} not on token boundaries, {report.n_warnings} warnings"
    )
    for issue in report.issues[:10]:
        msg.warn(str(issue))
    if report.n_warnings > 10:
        where = " (all in --output)" if saved else ""
        msg.warn(f"... and {report.n_warnings - 10} more warning(s){where}")


@app.command("evaluate")
def evaluate(
    model: str = typer.Argument(
        ..., metavar="MODEL", help="Pipeline folder (or installed package name)"
    ),
    data: Path = typer.Argument(
        ..., metavar="DATA_PATH", help="Gold data: a .spacy DocBin or a BRAT folder"
    ),
    output: Optional[Path] = typer.Option(
        None, "--output", "-o", help="Save all scores, counts and examples as JSON"
    ),
    gold_key: str = typer.Option(
        "sc", "--gold-key", help="Span group holding the gold entities ('ents' for doc.ents)"
    ),
    pred_key: str = typer.Option(
        "sc", "--pred-key", help="Span group the pipeline writes ('ents' for doc.ents)"
    ),
    gpu_id: int = typer.Option(-1, "--gpu-id", help="GPU to run on (-1: CPU)"),
    batch_size: int = typer.Option(32, "--batch-size", help="Texts per batch in nlp.pipe"),
    n_process: int = typer.Option(1, "--n-process", help="Processes for nlp.pipe"),
    n_examples: int = typer.Option(3, "--examples", help="Error examples kept per category"),
    precision: Optional[str] = precision_option(),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bar"),
    html_page: Optional[Path] = typer.Option(
        None, "--html", help="Write an HTML page: per document, gold and predicted entities "
        "side by side, errors coloured by kind (missed, spurious, boundary, label)"
    ),
) -> None:
    """Run MODEL on the texts of DATA and score its entities against the gold ones."""
    import srsly
    from tqdm import tqdm

    from ..evaluation import evaluate_docs, format_report
    from ..spans import get_spans

    if not data.exists():
        fail(f"data path {data} does not exist")
    if data.is_file() and data.suffix.lower() in (".txt", ".ann"):
        fail(f"data path {data} is a single standoff file; give its folder (BRAT) or a .spacy")
    check_batching(batch_size, n_process, gpu_id)
    if output is not None:
        check_output_file(output, "output")
    if html_page is not None:
        check_output_file(html_page, "--html")
    check_precision(precision, gpu_id)
    use_gpu(gpu_id)
    nlp = load_model(model, precision)

    gold_docs, conversion = _read_gold(nlp, data, gold_key)
    if not gold_docs:
        fail(f"no documents in {data}")
    if conversion is not None:
        _echo_conversion(conversion, saved=output is not None)
    n_gold = sum(
        len(d.ents) if gold_key == "ents" else len(d.spans.get(gold_key, ())) for d in gold_docs
    )
    if n_gold == 0:
        found = sorted({k for d in gold_docs for k in d.spans})
        msg.warn(f"no gold entities under --gold-key {gold_key!r} "
                 f"(span groups in the data: {found or 'none'})")

    texts = [doc.text for doc in gold_docs]
    raised = allow_length(nlp, texts)
    if raised:
        msg.info(f"nlp.max_length raised to {raised} for the longest text")
    bar = tqdm(total=len(texts), desc="evaluate", unit="doc", file=sys.stderr,
               disable=not progress)
    started = time.perf_counter()
    pred_docs = []
    try:
        for doc in nlp.pipe(texts, batch_size=batch_size, n_process=n_process):
            pred_docs.append(doc)
            bar.update(1)
    except Exception as err:
        bar.close()
        fail(f"the pipeline failed: {type(err).__name__}: {err}")
    seconds = time.perf_counter() - started
    bar.close()
    n_words = sum(len(doc) for doc in pred_docs)
    n_pred = sum(len(get_spans(d, pred_key)) for d in pred_docs)
    if n_pred == 0 and pred_key != "ents" and not any(pred_key in d.spans for d in pred_docs):
        found = sorted({k for d in pred_docs for k in d.spans})
        msg.warn(f"the pipeline wrote no span group {pred_key!r} "
                 f"(it wrote: {found or 'none'}); see --pred-key")

    results: Dict[str, Any] = evaluate_docs(gold_docs, pred_docs, gold_key, pred_key,
                                            n_examples=n_examples)
    speed = {
        "docs": len(pred_docs), "words": n_words, "seconds": seconds,
        "words_per_second": n_words / seconds if seconds > 0 else None,
    }
    echo_block(format_report(results))
    wps = speed["words_per_second"]
    msg.info(f"Speed: {len(pred_docs)} docs, {n_words} words in {seconds:.2f} s"
               + (f" ({wps:,.0f} words/s)" if wps else ""))
    if output is not None:
        payload = {
            "model": model, "data": str(data), "gold_key": gold_key, "pred_key": pred_key,
            "pipeline": list(nlp.pipe_names), **results, "speed": speed,
            "conversion": conversion.to_dict() if conversion is not None else None,
        }
        try:
            srsly.write_json(output, payload)
        except OSError as err:
            fail(f"cannot write {output}: {err}")
        msg.good(f"Saved metrics to {output}")
    if html_page is not None:
        from ..error_page import write_error_page

        try:
            write_error_page(html_page, gold_docs, pred_docs, gold_key, pred_key,
                             title=f"Errors of {model} on {data}")
        except OSError as err:
            fail(f"cannot write {html_page}: {err}")
        msg.good(f"Saved the error page to {html_page}")
