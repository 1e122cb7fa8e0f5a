"""``python -m spacy_crf_ner plot-log LOG.jsonl OUT_DIR``: training curves as PNG files.

Writes ``loss.png`` (per component, per update, with a moving average), ``scores.png`` (main
score and every ``*_f`` score at each evaluation) and, when the log has them,
``learn_rates.png`` (each optimizer group over the updates).
"""
import json
from pathlib import Path
from typing import Dict, List

import typer
from wasabi import msg

from . import app
from .util import fail


def read_log(path: Path) -> Dict[str, List[dict]]:
    events: Dict[str, List[dict]] = {"update": [], "evaluation": []}
    with open(path, encoding="utf8") as file_:
        for line_no, line in enumerate(file_, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                msg.warn(f"{path}:{line_no} is not JSON; skipped")
                continue
            events.setdefault(record.get("event", "?"), []).append(record)
    return events


def _moving_average(values: List[float], window: int) -> List[float]:
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


@app.command("plot-log")
def plot_log(
    log: Path = typer.Argument(
        ..., metavar="INPUT_PATH", help="JSONL log written by spacy_crf_ner.JsonlLogger.v1"
    ),
    out_dir: Path = typer.Argument(..., metavar="OUTPUT_PATH", help="Folder for the PNG files"),
) -> None:
    """Plot losses, dev scores and learning rates from a training log."""
    if not log.is_file():
        fail(f"no training log at {log}")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        fail("plotting needs matplotlib (pip install 'spacy-crf-ner[plots]')")
    events = read_log(log)
    updates, evals = events["update"], events["evaluation"]
    if not updates and not evals:
        fail(f"{log} holds no training events")
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []

    if updates:
        fig, ax = plt.subplots(figsize=(8, 4.5))
        x = [u["update"] for u in updates]
        for comp in sorted({k for u in updates for k in u.get("losses", {})}):
            ys = [u.get("losses", {}).get(comp, 0.0) for u in updates]
            if not any(ys):
                continue
            ax.plot(x, ys, alpha=0.3, linewidth=0.8)
            ax.plot(x, _moving_average(ys, 20), label=f"{comp} (moving avg 20)")
        ax.set_xlabel("update")
        ax.set_ylabel("loss")
        ax.set_yscale("log")
        ax.legend()
        ax.set_title("Training loss per component")
        fig.tight_layout()
        fig.savefig(out_dir / "loss.png", dpi=110)
        plt.close(fig)
        written.append("loss.png")

    if evals:
        fig, ax = plt.subplots(figsize=(8, 4.5))
        x = [e["step"] for e in evals]
        ax.plot(x, [e.get("score") or 0.0 for e in evals], marker="o", label="score", linewidth=2)
        keys = sorted({k for e in evals for k in e.get("scores", {}) if k.endswith("_f") and "." not in k})
        for key in keys:
            ax.plot(x, [e["scores"].get(key, float("nan")) for e in evals], marker=".", label=key)
        ax.set_xlabel("step")
        ax.set_ylabel("dev score")
        ax.set_ylim(0, 1)
        ax.legend()
        ax.set_title("Dev scores")
        fig.tight_layout()
        fig.savefig(out_dir / "scores.png", dpi=110)
        plt.close(fig)
        written.append("scores.png")

    rated = [u for u in updates if u.get("learn_rates")]
    if rated:
        fig, ax = plt.subplots(figsize=(8, 4.5))
        x = [u["update"] for u in rated]
        for group in rated[0]["learn_rates"]:
            ax.plot(x, [u["learn_rates"].get(group, 0.0) for u in rated], label=group)
        ax.set_xlabel("update")
        ax.set_ylabel("learning rate")
        ax.legend()
        ax.set_title("Learning rate per optimizer group")
        fig.tight_layout()
        fig.savefig(out_dir / "learn_rates.png", dpi=110)
        plt.close(fig)
        written.append("learn_rates.png")
    msg.good(f"Wrote {', '.join(written)} to {out_dir}")
