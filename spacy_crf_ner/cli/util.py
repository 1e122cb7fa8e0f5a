"""What every command of the CLI shares: failing cleanly, checking outputs, loading a model,
the GPU and batching options, and the ``--split-regex`` option.

Messages go through wasabi's ``msg`` (``good``/``info``/``warn``/``fail``/``table``), as in
spaCy's own commands. A command never shows a traceback for bad input: it prints one
``✘ ...`` line and exits with code 1 (``fail``).
"""
from pathlib import Path
from typing import NoReturn, Optional

import typer
from wasabi import msg

from ..data.split import DEFAULT_SPLIT_REGEX
from ..data.split import check_split_regex as check_regex
from ..transformer.precision import PRECISIONS


def split_regex_option() -> str:
    """The ``--split-regex`` option of ``convert`` and ``predict`` (same default as the reader)."""
    return typer.Option(
        DEFAULT_SPLIT_REGEX, "--split-regex",
        help="Where long documents may be split, with --max-length ('' = nowhere)",
    )


def check_split_regex(split_regex: Optional[str]) -> None:
    """Fail now, before any work, on an invalid ``--split-regex``."""
    try:
        check_regex(split_regex, "--split-regex")
    except ValueError as err:
        fail(str(err))


def echo_block(text: str) -> None:
    """Print pre-formatted text (a table) as it is: ``msg.text`` would re-wrap it into one
    80-column paragraph, running the rows into each other."""
    typer.echo(text)


def fail(message: str) -> NoReturn:
    """Print ``✘ message`` (wasabi, as spaCy's own commands do) and exit with code 1, with no
    traceback."""
    msg.fail(message)
    raise SystemExit(1)


def check_output_file(path: Path, what: str) -> None:
    """Fail now, before any work, if ``path`` cannot be written (a folder, no permission,
    a read-only mount...): the only reliable test is to open it."""
    if path.is_dir():
        fail(f"{what} {path} is a directory")
    parent = path.parent if str(path.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        fail(f"cannot create the folder of {what} {path}: {err}")
    existed = path.exists()
    try:
        with open(path, "ab"):
            pass
    except OSError as err:
        fail(f"{what} {path} is not writable: {err}")
    if not existed:
        path.unlink()


def use_gpu(gpu_id: int) -> None:
    """``gpu_id >= 0``: run on that GPU (``spacy.require_gpu``) or fail with a clear message;
    ``-1``: the CPU, even when the calling process had selected a GPU before."""
    import spacy

    if gpu_id < 0:
        spacy.require_cpu()
        return
    try:
        spacy.require_gpu(gpu_id)
    except Exception as err:  # no cupy, no CUDA device, bad id...
        fail(f"--gpu-id {gpu_id}: GPU not available ({type(err).__name__}: {err}). "
             "Install cupy for your CUDA version, or use --gpu-id -1 for the CPU.")


def precision_option() -> Optional[str]:
    """The ``--precision`` option of ``predict`` and ``evaluate``."""
    return typer.Option(
        None, "--precision",
        help="Run the transformer at " + " | ".join(PRECISIONS) + " instead of the pipeline's "
             "own precision: auto picks from the processor (bf16 with AVX-512 BF16 or AMX, "
             "int8 with VNNI only, else fp32; bf16/fp16 on GPUs) and says why; faster, "
             "slightly different predictions (BENCHMARKS.md, reduced precision)",
    )


def check_precision(precision: Optional[str], gpu_id: int) -> None:
    """Fail now, before any work, on a precision that cannot run here."""
    if precision is None:
        return
    if precision not in PRECISIONS:
        fail(f"--precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    if precision == "int8" and gpu_id >= 0:
        fail("--precision int8 (dynamic quantization) runs on the CPU only; "
             "use bf16 or fp16 with --gpu-id")


def load_model(model: str, precision: Optional[str] = None):
    """Load a pipeline from a folder or an installed package name, or fail clearly;
    ``precision``: run its transformer at that precision (``--precision``)."""
    import spacy
    from spacy.util import is_package

    path = Path(model)
    if not path.exists() and not is_package(model):
        fail(f"model {model} not found: no such folder, and no installed pipeline of that name")
    if path.exists() and not path.is_dir():
        fail(f"model {model} is a file; expected a pipeline folder (nlp.to_disk)")
    import warnings

    from ..integrity import MissingChecksumsWarning, check_before_load

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", MissingChecksumsWarning)
            if path.exists():
                check_before_load(path)
            nlp = spacy.load(path if path.exists() else model)
    except Exception as err:
        fail(f"cannot load model {model}: {type(err).__name__}: {err}")
    for warning in caught:  # as a message of the command, not a Python warning line
        if issubclass(warning.category, MissingChecksumsWarning):
            msg.warn(str(warning.message))
        else:
            warnings.showwarning(warning.message, warning.category, warning.filename,
                                 warning.lineno)
    if precision is not None:
        from ..transformer.model_class import set_precision

        try:
            set_precision(nlp, precision)
        except ValueError as err:
            fail(f"--precision {precision}: {err}")
    else:
        hint_precision(nlp)
    return nlp


def hint_precision(nlp) -> None:
    """Say so when the pipeline predicts in fp32 on a CPU that runs a reduced precision
    natively: ``--precision auto`` is the largest speed-up on offer there."""
    from thinc.api import get_current_ops

    from ..transformer.precision import META_KEY, choose_precision, cpu_flags

    report = nlp.meta.get(META_KEY, {}).get("precision") or {}
    if report.get("configured") != "fp32" or get_current_ops().device_type != "cpu":
        return
    chosen, why = choose_precision(cpu_flags())
    if chosen != "fp32":
        msg.info(f"This pipeline predicts in fp32; {why}: --precision auto ({chosen}) would "
                 "predict faster, with slightly different numbers (README, reduced precision)")


def check_batching(batch_size: int, n_process: int, gpu_id: int = -1) -> None:
    if batch_size < 1:
        fail(f"--batch-size must be >= 1, got {batch_size}")
    if n_process == 0 or n_process < -1:
        fail(f"--n-process must be >= 1 (or -1 for all cores), got {n_process}")
    if gpu_id >= 0 and n_process != 1:
        # Worker processes are forked, and CUDA cannot be used again in a forked child: every
        # worker would fail with "initialization error" (spaCy only warns, W114).
        fail(f"--n-process {n_process} cannot be combined with --gpu-id {gpu_id}: CUDA does "
             "not work in forked worker processes. Use --n-process 1 on the GPU, or several "
             "processes on the CPU (--gpu-id -1).")
