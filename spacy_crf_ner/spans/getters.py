"""Where a doc's entities are: one getter rule for the whole package.

A *span getter* is

* ``"ents"``: ``doc.ents``;
* any other non-empty string: the span group ``doc.spans[key]`` (no such group: no spans);
* a callable ``doc -> iterable``: whatever it returns (spaCy spans, or for scoring other
  systems plain ``(start_char, end_char, label)`` tuples).
"""
from typing import Any, Callable, Iterable, Optional, Sequence, Union

from spacy.tokens import Doc

SpanGetter = Union[str, Callable[[Doc], Iterable[Any]]]


def check_span_getter(getter: Any) -> SpanGetter:
    """The getter itself, or a ValueError saying what a getter may be."""
    if callable(getter) or (isinstance(getter, str) and getter):
        return getter
    raise ValueError(f"a span getter must be 'ents', a span key or a callable; got {getter!r}")


def get_spans(doc: Doc, getter: SpanGetter) -> Sequence[Any]:
    """The spans ``getter`` designates on ``doc`` (see the module docstring)."""
    if callable(getter):
        return list(getter(doc))
    if getter == "ents":
        return doc.ents
    check_span_getter(getter)
    return doc.spans[getter] if getter in doc.spans else ()


def get_span_scores(doc: Doc, getter: SpanGetter) -> Optional[Sequence[float]]:
    """One score per span of a span group (``attrs["scores"]``, as ``crf_ner`` and spaCy's
    spancat write it), or None: for ``doc.ents``, a callable, a missing group, or scores
    that do not match the group's length."""
    if callable(getter) or getter == "ents" or getter not in doc.spans:
        return None
    group = doc.spans[getter]
    scores = group.attrs.get("scores")
    return scores if scores is not None and len(scores) == len(group) else None
