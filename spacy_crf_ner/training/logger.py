"""``spacy_crf_ner.JsonlLogger.v1``: a JSON-lines training log beside spaCy's console logger.

One line per update (``"event": "update"``: loss of each component in that update, and the
learning rate of each optimizer group when GroupedAdam is used, and with
``grad_clip_scope = "global"`` the step's gradient norm before clipping) and one per evaluation
(``"event": "evaluation"``: step, epoch, main score, every numeric score, losses since the
last evaluation, seconds, words). ``python -m spacy_crf_ner plot-log`` turns it into PNGs.
"""
import json
import sys
from pathlib import Path
from typing import IO, Any, Callable, Dict, List, Optional, Tuple

from spacy.language import Language
from spacy.util import registry

from .state import TRAINING_STATE


def _numeric_scores(scores: Dict[str, Any], prefix: str = "") -> Dict[str, float]:
    out = {}
    for key, value in (scores or {}).items():
        if isinstance(value, bool):
            continue
        if isinstance(value, (int, float)):
            out[prefix + key] = float(value)
        elif isinstance(value, dict):
            out.update(_numeric_scores(value, prefix=f"{prefix}{key}."))
    return out


def jsonl_logger(
    path: Optional[str] = None, console: bool = True, progress_bar: Optional[str] = None
) -> Callable:
    """Write the training log to ``path`` (no file when null) and, with ``console``, print
    spaCy's usual table too (``progress_bar``: null, "train" or "eval", as in
    ``spacy.ConsoleLogger.v3``)."""

    def setup(nlp: Language, stdout: IO = sys.stdout, stderr: IO = sys.stderr) -> Tuple[Callable, Callable]:
        console_step, console_finalize = (None, None)
        if console:
            console_logger = registry.get("loggers", "spacy.ConsoleLogger.v3")(progress_bar=progress_bar)
            console_step, console_finalize = console_logger(nlp, stdout, stderr)
        file_ = None
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            file_ = open(path, "w", encoding="utf8")

        def write(record: Dict[str, Any]) -> None:
            if file_ is not None:
                file_.write(json.dumps(record) + "\n")
                file_.flush()

        counter = {"update": 0}
        pending: List[Dict[str, Any]] = []  # update records waiting for the end of their step (learning rates)
        original_update = nlp.update

        def flush() -> None:
            rates = TRAINING_STATE.rates_of_last_step()
            grad_norm = TRAINING_STATE.grad_norm_of_last_step()
            for record in pending:
                if rates is not None:
                    record["learn_rates"] = rates
                if grad_norm is not None:
                    record["grad_norm"] = grad_norm
                write(record)
            pending.clear()

        def update(*args, **kwargs):
            # spaCy steps the optimizer between updates: the previous step is complete.
            if pending and TRAINING_STATE.rates_of_last_step() is not None:
                flush()
            losses = kwargs.get("losses")
            before = dict(losses) if losses is not None else {}
            result = original_update(*args, **kwargs)
            after = losses if losses is not None else (result or {})
            counter["update"] += 1
            record = {
                "event": "update",
                "update": counter["update"],
                "losses": {k: float(v) - float(before.get(k, 0.0)) for k, v in after.items()},
            }
            pending.append(record)
            return result

        if file_ is not None:
            # spaCy has no per-update hook that sees the losses: an instance attribute
            # shadows the method while training, and finalize() removes it.
            nlp.update = update  # type: ignore[method-assign]

        def log_step(info: Optional[Dict[str, Any]]) -> None:
            if console_step is not None:
                console_step(info)
            if info is None:
                return
            flush()
            record = {
                "event": "evaluation",
                "update": counter["update"],
                "step": info.get("step"),
                "epoch": info.get("epoch"),
                "score": info.get("score"),
                "scores": _numeric_scores(info.get("other_scores", {})),
                "losses": {k: float(v) for k, v in (info.get("losses") or {}).items()},
                "seconds": info.get("seconds"),
                "words": info.get("words"),
            }
            write(record)

        def finalize() -> None:
            if console_finalize is not None:
                console_finalize()
            if file_ is not None:
                flush()
                file_.close()
                if nlp.__dict__.get("update") is update:
                    del nlp.update

        return log_step, finalize

    return setup


registry.loggers("spacy_crf_ner.JsonlLogger.v1")(jsonl_logger)
