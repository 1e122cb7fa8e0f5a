"""``python -m spacy_crf_ner convert IN_DIR OUT.spacy``: BRAT standoff folder -> DocBin.

Prints a summary table of what was kept, changed and dropped (and why), so that nothing is
lost silently; ``--report`` saves the same counts as JSON; ``--strict`` stops at the first
problem with a non-zero exit code.
"""
import sys
from pathlib import Path
from typing import List, Optional, Tuple

import typer
from wasabi import msg

from . import app
from .util import check_output_file, check_split_regex, echo_block, fail, split_regex_option

SHOW_ISSUES = 20

# With a single registered command Typer would run it without its name; a (no-op) group
# callback keeps ``convert`` a sub-command. Only added if the app has no callback yet.
if app.registered_callback is None:

    @app.callback()
    def _group() -> None:
        """BRAT standoff conversion, prediction and evaluation for spacy-crf-ner."""


@app.command("convert")
def convert(
    in_dir: Path = typer.Argument(
        ..., metavar="INPUT_PATH", help="Folder of BRAT .txt/.ann files (searched recursively)"
    ),
    output: Path = typer.Argument(
        ..., metavar="OUTPUT_PATH", help="Output .spacy file (DocBin with user data)"
    ),
    lang: str = typer.Option("en", "--lang", help="Blank spaCy language whose tokenizer is used"),
    model: Optional[str] = typer.Option(
        None, "--model",
        help="spaCy pipeline name or path whose tokenizer is used (overrides --lang)",
    ),
    span_key: str = typer.Option("sc", "--span-key", help="Span group receiving all entities"),
    split_regex: str = split_regex_option(),
    max_length: int = typer.Option(
        0, "--max-length", help="Max part length in spaCy tokens (0 = do not split)"
    ),
    discontinuous: str = typer.Option(
        "split", "--discontinuous", help="Discontinuous entities: split | cover | skip"
    ),
    alignment: str = typer.Option(
        "split_tokens", "--alignment",
        help="Boundaries inside tokens: split_tokens | expand | contract | strict",
    ),
    no_ents: bool = typer.Option(False, "--no-ents", help="Do not set doc.ents"),
    strict: bool = typer.Option(False, "--strict", help="Fail on the first problem"),
    keep_txt_only: bool = typer.Option(
        True, "--keep-txt-only/--skip-txt-only", help="Keep .txt files that have no .ann"
    ),
    report_path: Optional[Path] = typer.Option(
        None, "--report", help="Also save the counts (and warnings) as JSON"
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bar"),
) -> None:
    """Convert a folder of BRAT standoff files into a .spacy file."""
    import spacy
    import srsly
    from spacy.tokens import DocBin
    from tqdm import tqdm

    from ..data.reader import StandoffOptions, StandoffReader, find_standoff_files
    from ..data.report import ConversionReport, StandoffError

    if not in_dir.exists():
        fail(f"input path {in_dir} does not exist")
    check_split_regex(split_regex)
    check_output_file(output, "output")
    if report_path is not None:
        check_output_file(report_path, "report")
    try:
        options = StandoffOptions(
            span_key=span_key, set_ents=not no_ents, discontinuous=discontinuous,
            alignment=alignment, split_regex=split_regex or None, max_length=max_length,
            strict=strict, keep_txt_only=keep_txt_only,
        )
    except ValueError as err:
        fail(str(err))
    problems: List[Tuple[str, str]] = []
    files = find_standoff_files(in_dir, problems)
    if not files and not problems:
        fail(f"no .txt or .ann files found under {in_dir}")
    try:
        nlp = spacy.load(model) if model else spacy.blank(lang)
    except Exception as err:  # unknown language code, missing pipeline package...
        fail(f"cannot load {'model ' + model if model else 'language ' + repr(lang)}: {err}")

    import time

    report = ConversionReport()
    reader = StandoffReader(nlp, options, report)
    try:
        reader.skip_folders(problems)
    except StandoffError as err:
        fail(f"{err} (--strict)")
    doc_bin = DocBin(store_user_data=True)
    started = time.perf_counter()
    bar = tqdm(files, desc="convert", unit="file", file=sys.stderr, disable=not progress)
    try:
        for entry in bar:
            for doc in reader.read_file(entry):
                doc_bin.add(doc)
    except StandoffError as err:
        bar.close()
        fail(f"{err} (--strict)")
    bar.close()
    report.seconds = time.perf_counter() - started
    try:
        report.check()
    except AssertionError as err:  # a bug, not bad input: say so clearly
        fail(str(err))
    try:
        doc_bin.to_disk(output)
    except OSError as err:
        fail(f"cannot write {output}: {err}")
    if report_path is not None:
        data = report.to_dict()
        data["input"] = str(in_dir)
        data["output"] = str(output)
        data["options"] = vars(options)
        srsly.write_json(report_path, data)

    echo_block(report.format_table())
    for issue in report.issues[:SHOW_ISSUES]:
        msg.warn(str(issue))
    if report.n_warnings > SHOW_ISSUES:
        more = report.n_warnings - SHOW_ISSUES
        hint = " (all in --report)" if report_path else " (use --report to save them all)"
        msg.warn(f"... and {more} more warning(s){hint}")
    msg.good(f"Saved {report.parts} docs to {output}")
