"""Exact span scores for every place a ``crf_ner`` pipe writes, through spaCy's ``Scorer``.

For each target of ``span_setter``:

* ``"ents"`` -> ``ents_p/r/f/per_type`` against the reference ``doc.ents``;
* a span key ``K`` -> ``spans_K_p/r/f/per_type`` (overlaps allowed) against the reference
  ``doc.spans[K]``, or the ``target_span_getter`` spans when the reference has no such key;
* ``"*"`` -> ``spans_labels_p/r/f/per_type`` over the union of the per-label groups.

A span is correct only if its label, first and last token match exactly (predicted spans are
mapped onto the reference tokenization first).
"""
from typing import Any, Callable, Dict, Iterable, Sequence

from spacy.scorer import Scorer
from spacy.tokens import Doc, Span
from spacy.training import Example
from spacy.util import registry

from ..spans import get_spans


def crf_ner_score(
    examples: Iterable[Example],
    *,
    span_setter: Sequence[str] = ("ents", "sc"),
    target_span_getter: str = "sc",
    labels: Sequence[str] = (),
    **kwargs: Any,
) -> Dict[str, Any]:
    examples = list(examples)
    scores: Dict[str, Any] = {}
    for target in span_setter:
        if target == "ents":
            scores.update(
                Scorer.score_spans(examples, "ents", getter=lambda doc, attr: doc.ents)
            )
            continue
        if target == "*":
            attr = "spans_labels"

            def getter(doc: Doc, attr: str, _bound: Any = tuple(labels)) -> Sequence[Span]:
                if _bound and all(label in doc.spans for label in _bound):
                    return [span for label in _bound for span in doc.spans[label]]
                return list(get_spans(doc, target_span_getter))

        else:
            attr = f"spans_{target}"

            def getter(doc: Doc, attr: str, _bound: Any = target) -> Sequence[Span]:
                if _bound in doc.spans:
                    return doc.spans[_bound]
                return get_spans(doc, target_span_getter)

        scores.update(Scorer.score_spans(examples, attr, getter=getter, allow_overlap=True))
    return scores


def make_crf_ner_scorer() -> Callable[..., Dict[str, Any]]:
    return crf_ner_score


registry.scorers("spacy_crf_ner.crf_ner_scorer.v1")(make_crf_ner_scorer)
