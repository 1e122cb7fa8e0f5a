"""Torch-free rules about spans, shared by the pipe, the scorers, the data layer and the CLI:
where a doc's spans are (``getters``), which of them go to ``doc.ents`` (``selection``), and
spans <-> BIOUL tag matrices (``bioul``)."""
from .getters import SpanGetter, get_span_scores, get_spans
from .selection import select_longest_first

__all__ = ["SpanGetter", "get_spans", "get_span_scores", "select_longest_first"]
