"""Scores for named-entity predictions, computed on character offsets.

Every function takes two aligned lists of Docs (``gold_docs[i]`` and ``pred_docs[i]`` must
have the same text) and a *getter* for each side, which says where the entities are:

* a span key (``"sc"``): ``doc.spans[key]`` (no such group: no entities);
* ``"ents"``: ``doc.ents``;
* a callable ``doc -> spans``; it may return spaCy ``Span`` objects or plain
  ``(start_char, end_char, label)`` tuples, so systems that do not use spaCy spans can be
  scored the same way.

Entities are compared by character offsets, never by token indices, so a system with
another tokenizer is scored on what it actually found. Each side is a *set*: the same
``(start_char, end_char, label)`` listed twice in one doc counts once.

Functions:

* :func:`exact_scores`: an entity is correct when its offsets and its label are both
  exactly those of a gold entity.
* :func:`token_scores`: per token of the gold doc and label, like EDS-NLP's ``ner_token``.
* :func:`error_analysis`: puts every gold and every predicted entity in exactly one
  category (``correct``, ``label``, ``boundary``, ``label_and_boundary``, ``missed`` /
  ``spurious``).

**Empty denominators** (see :func:`prf`). When there is gold but no prediction, precision
is 0, not 1. Some scorers return 1 in that case, which makes a system that predicts
nothing look precise. In general, a ratio with a zero denominator is 1.0 only when both
sets are empty (nothing to find, and nothing was found). Otherwise it is 0.0. F1 is 0 when
P + R = 0.
"""
from bisect import bisect_left, bisect_right
from collections import defaultdict
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple

from spacy.tokens import Doc, Span

from .data.meta import get_provenance
from .spans import SpanGetter, get_spans

# (doc index, start_char, end_char, label)
Entity = Tuple[int, int, int, str]

CATEGORIES = ("correct", "label", "boundary", "label_and_boundary")
GOLD_CATEGORIES = CATEGORIES + ("missed",)
PRED_CATEGORIES = CATEGORIES + ("spurious",)


# ---------------------------------------------------------------------------------------
# Getting entities
# ---------------------------------------------------------------------------------------
def get_entities(doc: Doc, getter: SpanGetter) -> List[Tuple[int, int, str]]:
    """``(start_char, end_char, label)`` of the doc's entities, as ``getter`` finds them,
    sorted and without duplicates."""
    out = set()
    for item in get_spans(doc, getter):
        if isinstance(item, Span):
            out.add((item.start_char, item.end_char, item.label_))
        else:
            start, end, label = item
            out.add((int(start), int(end), str(label)))
    return sorted(out)


def check_docs(gold_docs: Sequence[Doc], pred_docs: Sequence[Doc]) -> None:
    """Raise ValueError unless the two lists pair up doc by doc (same length, same texts)."""
    if len(gold_docs) != len(pred_docs):
        raise ValueError(
            f"{len(gold_docs)} gold docs but {len(pred_docs)} predicted docs; they must be "
            "aligned one to one"
        )
    for i, (gold, pred) in enumerate(zip(gold_docs, pred_docs)):
        if gold.text != pred.text:
            raise ValueError(
                f"doc {i}: the gold and predicted texts differ ({gold.text[:40]!r} vs "
                f"{pred.text[:40]!r}); character offsets cannot be compared"
            )


def _entity_sets(
    gold_docs: Sequence[Doc], pred_docs: Sequence[Doc], gold_getter: SpanGetter,
    pred_getter: SpanGetter,
) -> Tuple[List[List[Tuple[int, int, str]]], List[List[Tuple[int, int, str]]]]:
    gold_docs, pred_docs = list(gold_docs), list(pred_docs)
    check_docs(gold_docs, pred_docs)
    gold = [get_entities(doc, gold_getter) for doc in gold_docs]
    pred = [get_entities(doc, pred_getter) for doc in pred_docs]
    return gold, pred


# ---------------------------------------------------------------------------------------
# Precision, recall, F1
# ---------------------------------------------------------------------------------------
def _ratio(num: int, den: int, other_den: int) -> float:
    if den:
        return num / den
    return 1.0 if other_den == 0 else 0.0


def prf(tp: int, n_pred: int, n_gold: int) -> Dict[str, Any]:
    """Precision, recall and F1 from counts (see the module docstring for empty sets).

    ``p = tp / n_pred`` and ``r = tp / n_gold``. A zero denominator gives 1.0 when both
    counts are 0, and 0.0 otherwise: a system that predicts nothing on a corpus with gold
    entities has p = r = f = 0.
    """
    p = _ratio(tp, n_pred, n_gold)
    r = _ratio(tp, n_gold, n_pred)
    f = 2 * p * r / (p + r) if p + r else 0.0
    return {
        "p": p, "r": r, "f": f, "tp": tp, "fp": n_pred - tp, "fn": n_gold - tp,
        "support": n_gold, "predicted": n_pred,
    }


def _score_sets(gold: Set[Tuple], pred: Set[Tuple]) -> Dict[str, Any]:
    """Micro scores over two sets of tuples whose last element is the label, per label,
    and the macro average over the labels that appear on either side."""
    per_label: Dict[str, Dict[str, Any]] = {}
    labels = sorted({t[-1] for t in gold} | {t[-1] for t in pred})
    by_label_gold: Dict[str, Set[Tuple]] = defaultdict(set)
    by_label_pred: Dict[str, Set[Tuple]] = defaultdict(set)
    for t in gold:
        by_label_gold[t[-1]].add(t)
    for t in pred:
        by_label_pred[t[-1]].add(t)
    for label in labels:
        g, p = by_label_gold[label], by_label_pred[label]
        per_label[label] = prf(len(g & p), len(p), len(g))
    out = {"micro": prf(len(gold & pred), len(pred), len(gold)), "per_label": per_label}
    if labels:
        out["macro"] = {
            k: sum(per_label[label][k] for label in labels) / len(labels) for k in ("p", "r", "f")
        }
    else:
        out["macro"] = {k: out["micro"][k] for k in ("p", "r", "f")}
    return out


def exact_scores(
    gold_docs: Sequence[Doc],
    pred_docs: Sequence[Doc],
    gold_getter: SpanGetter = "sc",
    pred_getter: SpanGetter = "sc",
) -> Dict[str, Any]:
    """Exact-match scores over the sets of ``(doc index, start_char, end_char, label)``.

    Returns ``{"micro": {...}, "macro": {"p", "r", "f"}, "per_label": {label: {...}}}``.
    Each ``{...}`` holds ``p``, ``r``, ``f``, ``tp``, ``fp``, ``fn``, ``support`` (number
    of gold entities) and ``predicted`` (number of predicted entities). ``per_label``
    lists every label seen on either side. ``macro`` is the unweighted mean over those
    labels. A label that is only predicted has p = r = f = 0 and pulls the macro average
    down. When there is gold but no prediction, precision is 0 (see :func:`prf`).
    """
    gold, pred = _entity_sets(gold_docs, pred_docs, gold_getter, pred_getter)
    gold_set = {(i, s, e, lab) for i, ents in enumerate(gold) for s, e, lab in ents}
    pred_set = {(i, s, e, lab) for i, ents in enumerate(pred) for s, e, lab in ents}
    return _score_sets(gold_set, pred_set)


# ---------------------------------------------------------------------------------------
# Token level
# ---------------------------------------------------------------------------------------
def _covered_tokens(starts: List[int], ends: List[int], start: int, end: int) -> range:
    """Indices of the tokens whose characters overlap ``[start, end)``."""
    if end <= start:
        return range(0)
    first = bisect_right(ends, start)  # first token ending after `start`
    stop = bisect_left(starts, end)  # first token starting at or after `end`
    return range(first, stop)


def token_scores(
    gold_docs: Sequence[Doc],
    pred_docs: Sequence[Doc],
    gold_getter: SpanGetter = "sc",
    pred_getter: SpanGetter = "sc",
) -> Dict[str, Any]:
    """Token-level scores, in the manner of EDS-NLP's ``ner_token`` metric.

    Both sides become sets of ``(doc index, token index, label)``. Token indices always
    refer to the gold doc's tokens. An entity, gold or predicted, covers every gold token
    that overlaps it by at least one character. So a prediction made on another
    tokenization is mapped onto the gold tokens, and a prediction that cuts a token in the
    middle still covers that token. Whitespace tokens inside an entity count like any
    other token. Two entities of the same label on the same token count once. The result
    has the same layout as :func:`exact_scores`.
    """
    gold_docs, pred_docs = list(gold_docs), list(pred_docs)
    gold, pred = _entity_sets(gold_docs, pred_docs, gold_getter, pred_getter)
    gold_set: Set[Tuple[int, int, str]] = set()
    pred_set: Set[Tuple[int, int, str]] = set()
    for i, doc in enumerate(gold_docs):
        starts = [t.idx for t in doc]
        ends = [t.idx + len(t.text) for t in doc]
        for target, ents in ((gold_set, gold[i]), (pred_set, pred[i])):
            for s, e, label in ents:
                target.update((i, k, label) for k in _covered_tokens(starts, ends, s, e))
    return _score_sets(gold_set, pred_set)


# ---------------------------------------------------------------------------------------
# Error analysis
# ---------------------------------------------------------------------------------------
class _Index:
    """Entities of one doc, sorted by start, for overlap queries."""

    def __init__(self, ents: List[Tuple[int, int, str]]):
        self.ents = sorted(ents)
        self.starts = [e[0] for e in self.ents]
        self.max_len = max((e[1] - e[0] for e in self.ents), default=0)

    def overlapping(self, start: int, end: int) -> List[Tuple[int, int, str]]:
        if end <= start:
            return []
        lo = bisect_left(self.starts, start - self.max_len)
        hi = bisect_left(self.starts, end)
        return [e for e in self.ents[lo:hi] if e[1] > start and e[0] < end]


def _classify(
    ent: Tuple[int, int, str], exact: Set[Tuple[int, int, str]], others: _Index, none: str
) -> Tuple[str, List[Tuple[int, int, str]]]:
    """Category of ``ent`` given the entities of the other side (see error_analysis)."""
    if ent in exact:
        return "correct", [ent]
    start, end, label = ent
    near = others.overlapping(start, end)
    same_offsets = [o for o in near if o[0] == start and o[1] == end]
    if same_offsets:
        return "label", same_offsets
    same_label = [o for o in near if o[2] == label]
    if same_label:
        return "boundary", same_label
    if near:
        return "label_and_boundary", near
    return none, []


def classify_entities(
    gold_ents: List[Tuple[int, int, str]], pred_ents: List[Tuple[int, int, str]]
) -> Tuple[List[str], List[str]]:
    """The category of each gold and each predicted entity of one doc, in the given order
    (the rules of :func:`error_analysis`)."""
    exact = set(gold_ents) & set(pred_ents)
    g_index, p_index = _Index(gold_ents), _Index(pred_ents)
    return ([_classify(e, exact, p_index, "missed")[0] for e in gold_ents],
            [_classify(e, exact, g_index, "spurious")[0] for e in pred_ents])


def _describe(text: str, ent: Tuple[int, int, str], context: int) -> Dict[str, Any]:
    start, end, label = ent
    return {
        "start": start, "end": end, "label": label, "text": text[start:end],
        "context": text[max(0, start - context):end + context],
    }


def error_analysis(
    gold_docs: Sequence[Doc],
    pred_docs: Sequence[Doc],
    gold_getter: SpanGetter = "sc",
    pred_getter: SpanGetter = "sc",
    *,
    n_examples: int = 3,
    context: int = 30,
) -> Dict[str, Any]:
    """Put every gold entity and every predicted entity in exactly one category.

    An entity is a ``(start_char, end_char, label)`` in one doc. Two entities *overlap*
    when they share at least one character. A gold entity is compared with the predicted
    entities of its doc, and a predicted entity with the gold entities of its doc. The
    first rule that applies gives its category:

    1. ``correct``: the other side has an entity with the same offsets and the same label.
    2. ``label``: the other side has an entity with the same offsets and another label.
    3. ``boundary``: an overlapping entity with the same label (so other offsets).
    4. ``label_and_boundary``: an overlapping entity (so other label and other offsets).
    5. ``missed`` for a gold entity, ``spurious`` for a predicted one: nothing overlaps.

    The rules look at every entity of the other side, including entities that are
    themselves ``correct``. Gold ``[0, 10) A`` with predictions ``[0, 10) A`` and
    ``[0, 4) A`` gives one ``correct`` gold and two predictions: one ``correct`` and one
    ``boundary``.

    Each entity gets exactly one category, so the counts add up (tested):

        sum(gold categories) = number of gold entities      = tp + fn
        sum(pred categories) = number of predicted entities = tp + fp
        gold["correct"] = pred["correct"] = tp              (exact_scores' micro tp)

    ``per_label`` has the same counts for each label. Gold entities count under their
    gold label, predicted entities under their predicted label. For a ``label`` error the
    two sides therefore add to different labels.

    Returns ``{"gold": {category: n}, "pred": {category: n}, "per_label": {label:
    {"gold": {...}, "pred": {...}}}, "n_gold", "n_pred", "examples": {category: [...]}}``.
    ``examples`` keeps the first ``n_examples`` errors per category, in document order.
    Each one has the doc index, the source file when the gold doc has standoff provenance,
    the entity, and the entities of the other side that decided its category. Every
    entity comes with its ``text`` and a ``context`` window of ``context`` characters.
    Gold-side examples are shown for ``label``, ``boundary``, ``label_and_boundary`` and
    ``missed``, and predicted-side examples for ``spurious``.
    """
    gold_docs, pred_docs = list(gold_docs), list(pred_docs)
    gold, pred = _entity_sets(gold_docs, pred_docs, gold_getter, pred_getter)
    totals = {"gold": dict.fromkeys(GOLD_CATEGORIES, 0), "pred": dict.fromkeys(PRED_CATEGORIES, 0)}
    per_label: Dict[str, Dict[str, Dict[str, int]]] = {}
    examples: Dict[str, List[Dict[str, Any]]] = {
        c: [] for c in ("label", "boundary", "label_and_boundary", "missed", "spurious")
    }

    def label_counts(label: str) -> Dict[str, Dict[str, int]]:
        if label not in per_label:
            per_label[label] = {
                "gold": dict.fromkeys(GOLD_CATEGORIES, 0),
                "pred": dict.fromkeys(PRED_CATEGORIES, 0),
            }
        return per_label[label]

    for i, doc in enumerate(gold_docs):
        text = doc.text
        g_ents, p_ents = gold[i], pred[i]
        exact = set(g_ents) & set(p_ents)
        g_index, p_index = _Index(g_ents), _Index(p_ents)
        source = _source(doc)
        for side, ents, others, none in (
            ("gold", g_ents, p_index, "missed"), ("pred", p_ents, g_index, "spurious")
        ):
            other_side = "pred" if side == "gold" else "gold"
            for ent in ents:
                category, why = _classify(ent, exact, others, none)
                totals[side][category] += 1
                label_counts(ent[2])[side][category] += 1
                show = category != "correct" and (side == "gold") != (category == "spurious")
                if show and len(examples[category]) < n_examples:
                    example = {"doc": i, side: _describe(text, ent, context),
                               other_side: [_describe(text, o, context) for o in why]}
                    if source is not None:
                        example["source"] = source
                    examples[category].append(example)
    return {
        "gold": totals["gold"],
        "pred": totals["pred"],
        "n_gold": sum(len(e) for e in gold),
        "n_pred": sum(len(e) for e in pred),
        "per_label": dict(sorted(per_label.items())),
        "examples": examples,
    }


def _source(doc: Doc) -> Optional[str]:
    prov = get_provenance(doc)
    return prov.source if prov is not None else None


def evaluate_docs(
    gold_docs: Sequence[Doc],
    pred_docs: Sequence[Doc],
    gold_getter: SpanGetter = "sc",
    pred_getter: SpanGetter = "sc",
    *,
    n_examples: int = 3,
) -> Dict[str, Any]:
    """All three at once: ``{"exact": ..., "token": ..., "errors": ...}``."""
    gold_docs, pred_docs = list(gold_docs), list(pred_docs)
    return {
        "exact": exact_scores(gold_docs, pred_docs, gold_getter, pred_getter),
        "token": token_scores(gold_docs, pred_docs, gold_getter, pred_getter),
        "errors": error_analysis(gold_docs, pred_docs, gold_getter, pred_getter,
                                 n_examples=n_examples),
    }


def format_report(results: Dict[str, Any]) -> str:
    """Readable tables of :func:`evaluate_docs`' results (used by the ``evaluate`` CLI)."""
    lines: List[str] = []
    for title, key in (("Exact spans (character offsets)", "exact"),
                       ("Tokens (gold tokenization)", "token")):
        scores = results[key]
        rows = [(label, s) for label, s in scores["per_label"].items()]
        rows.append(("micro", scores["micro"]))
        width = max([len(r[0]) for r in rows] + [5])
        lines.append(title)
        lines.append(f"{'label'.ljust(width)}  {'P':>6}  {'R':>6}  {'F':>6}  {'support':>7}  "
                     f"{'predicted':>9}")
        for label, s in rows:
            lines.append(
                f"{label.ljust(width)}  {100 * s['p']:6.2f}  {100 * s['r']:6.2f}  "
                f"{100 * s['f']:6.2f}  {s['support']:7d}  {s['predicted']:9d}"
            )
        macro = scores["macro"]
        lines.append(f"{'macro'.ljust(width)}  {100 * macro['p']:6.2f}  {100 * macro['r']:6.2f}  "
                     f"{100 * macro['f']:6.2f}")
        lines.append("")
    errors = results["errors"]
    lines.append("Errors: each gold and each predicted entity in one category")
    labels = list(errors["per_label"])
    width = max([len("label_and_boundary")] + [len(label) for label in labels])
    header = f"{'category'.ljust(width)}  {'gold':>6}  {'pred':>6}"
    lines.append(header)
    for category in ("correct", "label", "boundary", "label_and_boundary", "missed", "spurious"):
        g = errors["gold"].get(category)
        p = errors["pred"].get(category)
        lines.append(f"{category.ljust(width)}  {'-' if g is None else g:>6}  "
                     f"{'-' if p is None else p:>6}")
    lines.append(f"{'total'.ljust(width)}  {errors['n_gold']:>6}  {errors['n_pred']:>6}")
    for category, items in errors["examples"].items():
        for ex in items:
            side = "pred" if category == "spurious" else "gold"
            ent = ex[side]
            other = "; ".join(f"{o['label']} {o['text']!r}" for o in ex.get(
                "gold" if side == "pred" else "pred", []))
            where = ex.get("source", f"doc {ex['doc']}")
            line = f"  {category}: {where} [{ent['start']}, {ent['end']}) {ent['label']} " \
                   f"{ent['text']!r}"
            lines.append(line + (f" <-> {other}" if other else ""))
    return "\n".join(lines)
