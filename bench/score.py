"""The one scorer of the benchmark: exact (doc, start char, end char, label) match against the
raw BRAT ``.ann`` files, micro-averaged and per label.

Gold: every ``T`` line of the test split. A discontinuous entity (``s e;s e``) gives one span
per fragment after fragments separated only by whitespace are merged (BRAT splits entities at
line breaks that way); this is what both spacy-crf-ner's converter (default ``split``) and
EDS-NLP's ``standoff_dict2doc`` do. Predictions: JSON lines ``{"doc", "start", "end", "label"}``
written by each system's ``infer``. Both sides are sets: a duplicate counts once.

    python bench/score.py DATA/test predictions.jsonl
"""
import json
import sys
from pathlib import Path
from typing import Dict, Iterable, Set, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

Span = Tuple[str, int, int, str]


def _fragments(offsets: str, text: str):
    frags = sorted(tuple(int(x) for x in part.split()) for part in offsets.split(";"))
    merged = [list(frags[0])]
    for start, end in frags[1:]:
        if text[merged[-1][1] : start].strip() == "":
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return merged


def read_gold(split_dir: Path) -> Set[Span]:
    gold = set()
    for doc_id, text in common.read_split(split_dir):
        with open(Path(split_dir) / doc_id, encoding="utf8", newline="") as file_:
            for line in file_.read().splitlines():
                if not line.startswith("T"):
                    continue
                label, offsets = line.split("\t")[1].split(" ", 1)
                for start, end in _fragments(offsets, text):
                    gold.add((doc_id, start, end, label))
    return gold


def read_predictions(path: Path) -> Set[Span]:
    preds = set()
    with open(path, encoding="utf8") as file_:
        for line in file_:
            if line.strip():
                p = json.loads(line)
                preds.add((p["doc"], int(p["start"]), int(p["end"]), p["label"]))
    return preds


def prf(tp: int, n_pred: int, n_gold: int) -> Dict[str, float]:
    """P, R, F1 from counts. An empty denominator gives 0 (1 only if both sides are empty),
    so predicting nothing never scores a precision of 1."""
    if n_pred == 0 and n_gold == 0:
        return {"p": 1.0, "r": 1.0, "f": 1.0, "tp": 0, "pred": 0, "gold": 0}
    p = tp / n_pred if n_pred else 0.0
    r = tp / n_gold if n_gold else 0.0
    f = 2 * tp / (n_pred + n_gold)
    return {"p": p, "r": r, "f": f, "tp": tp, "pred": n_pred, "gold": n_gold}


def score(gold: Set[Span], pred: Set[Span]) -> Dict:
    labels: Iterable[str] = sorted({s[3] for s in gold} | {s[3] for s in pred})
    per_label = {}
    for label in labels:
        g = {s for s in gold if s[3] == label}
        p = {s for s in pred if s[3] == label}
        per_label[label] = prf(len(g & p), len(p), len(g))
    gold_labels = sorted({s[3] for s in gold})
    # Macro F1: the mean of the gold labels' F1, so that a rare label weighs as much as a
    # frequent one (a label only predicted, never in gold, is left out).
    macro = sum(per_label[label]["f"] for label in gold_labels) / len(gold_labels) \
        if gold_labels else 0.0
    return {"micro": prf(len(gold & pred), len(pred), len(gold)), "macro_f": macro,
            "per_label": per_label}


def main() -> None:
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    result = score(read_gold(Path(sys.argv[1])), read_predictions(Path(sys.argv[2])))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
