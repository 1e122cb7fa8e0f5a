"""Which spans go to ``doc.ents``: one rule, for gold docs (the converter) and predictions
(the ``crf_ner`` pipe).

``doc.ents`` cannot hold overlapping spans. Of overlapping candidates the **longest in
characters** wins, then the most confident (predictions only), then the leftmost, then the
smaller label, then the smaller span id, then input order; a span is taken when none of its tokens is already taken.
Longest first keeps the outer span of nested ones, so that gold and predicted ``doc.ents``
agree on what they hold.
"""
from typing import Iterable, List, Optional

import numpy
from spacy.tokens import Span


def select_longest_first(
    spans: Iterable[Span], confidences: Optional[Iterable[float]] = None, n_tokens: int = 0
) -> List[Span]:
    """Non-overlapping subset of ``spans`` by the rule above, sorted by position.

    ``confidences``: one per span (higher wins among equally long spans).
    ``n_tokens``: length of the doc (defaults to the largest span end).
    Empty spans are never taken.
    """
    spans = list(spans)
    conf = [0.0] * len(spans) if confidences is None else [float(c) for c in confidences]
    order = sorted(
        range(len(spans)),
        key=lambda i: (-(spans[i].end_char - spans[i].start_char), -conf[i],
                       spans[i].start_char, spans[i].label_, spans[i].id_, i),
    )
    size = max([n_tokens] + [s.end for s in spans])
    taken = numpy.zeros(size, dtype=bool)
    chosen = []
    for i in order:
        span = spans[i]
        if span.start < span.end and not taken[span.start : span.end].any():
            taken[span.start : span.end] = True
            chosen.append(span)
    return sorted(chosen, key=lambda s: (s.start, s.end))
