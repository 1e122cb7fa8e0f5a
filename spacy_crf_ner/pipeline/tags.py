"""Spans <-> per-label BIOUL tag matrices.

A document with T tokens and L labels is encoded as an int matrix ``[T, L]``: column ``l`` is
the BIOUL chain of label ``l`` (codes O=0, I=1, B=2, L=3, U=4, as in ``models.pytorch_crf``).
Spans of different labels may overlap freely; spans of the *same* label that overlap cannot
share a chain, so ``encode_spans`` keeps a non-overlapping subset per label (longest first,
then leftmost) and reports how many it dropped.

Nested spans of the same label are held by several chains per label, one per nesting level
(``encode_levels``): level 0 holds the outermost spans, level k the spans strictly inside a
level k-1 span of the same label. The matrix is then ``[T, D * L]``, chain ``k * L + l`` for
level k of label l. Spans that cross a same-label span (overlap without nesting) or sit
deeper than D levels cannot be held and are reported.
"""
from typing import Dict, Iterable, List, Sequence, Set, Tuple

import numpy

O, I, B, L, U = range(5)

# (label index, start token, end token exclusive)
SpanTuple = Tuple[int, int, int]


def select_non_overlapping(spans: Iterable[SpanTuple]) -> Tuple[List[SpanTuple], List[SpanTuple]]:
    """Per label, keep the longest spans first (ties: leftmost), drop those that overlap.

    Returns ``(kept, dropped)``, ``kept`` sorted by (label, start).
    """
    ordered = sorted(set(spans), key=lambda s: (s[0], -(s[2] - s[1]), s[1], s[2]))
    kept, dropped = [], []
    taken: Dict[int, Set[int]] = {}  # label -> tokens already covered
    for span in ordered:
        label, start, end = span
        used = taken.setdefault(label, set())
        if any(i in used for i in range(start, end)):
            dropped.append(span)
            continue
        used.update(range(start, end))
        kept.append(span)
    kept.sort()
    return kept, dropped


def encode_spans(
    spans: Iterable[SpanTuple], n_tokens: int, n_labels: int
) -> Tuple[numpy.ndarray, List[SpanTuple]]:
    """BIOUL tag matrix ``[T, L]`` for the spans, and the same-label overlaps it dropped."""
    tags = numpy.zeros((n_tokens, n_labels), dtype="int64")
    kept, dropped = select_non_overlapping(s for s in spans if s[2] > s[1])
    _write_spans(tags, kept)
    return tags, dropped


def assign_levels(
    spans: Iterable[SpanTuple], depth: int
) -> Tuple[List[List[SpanTuple]], List[SpanTuple], List[SpanTuple]]:
    """Sort same-label spans into ``depth`` nesting levels, outermost first.

    Level 0 is ``select_non_overlapping`` of all spans (so depth 1 keeps exactly what
    ``encode_spans`` keeps). Level k takes, among the spans left, those strictly inside a
    level k-1 span of their label, again longest first without overlap. Returns
    ``(levels, crossing, too_deep)``: the spans that overlap a kept span of their label
    without nesting in it or around it, and those nested deeper than ``depth`` levels.
    """
    if depth < 1:
        raise ValueError(f"depth must be >= 1, got {depth}")
    remaining = sorted({s for s in spans if s[2] > s[1]})
    levels: List[List[SpanTuple]] = []
    for k in range(depth):
        if k == 0:
            candidates = remaining
        else:
            parents = levels[-1]
            candidates = [
                s for s in remaining
                if any(p[0] == s[0] and p[1] <= s[1] and s[2] <= p[2] for p in parents)
            ]
        kept, _ = select_non_overlapping(candidates)
        levels.append(kept)
        taken = set(kept)
        remaining = [s for s in remaining if s not in taken]
        if not remaining:
            break
    levels += [[] for _ in range(depth - len(levels))]
    placed = [s for level in levels for s in level]
    crossing: List[SpanTuple] = []
    too_deep: List[SpanTuple] = []
    for s in remaining:
        crosses = any(
            p[0] == s[0] and p[1] < s[2] and s[1] < p[2]
            and not (p[1] <= s[1] and s[2] <= p[2]) and not (s[1] <= p[1] and p[2] <= s[2])
            for p in placed
        )
        (crossing if crosses else too_deep).append(s)
    return levels, crossing, too_deep


def encode_levels(
    spans: Iterable[SpanTuple], n_tokens: int, n_labels: int, depth: int
) -> Tuple[numpy.ndarray, List[SpanTuple], List[SpanTuple]]:
    """BIOUL matrix ``[T, depth * L]`` (chain ``k * L + l``), plus the crossing and too-deep
    spans that it cannot hold (see ``assign_levels``)."""
    levels, crossing, too_deep = assign_levels(spans, depth)
    tags = numpy.zeros((n_tokens, depth * n_labels), dtype="int64")
    for k, level in enumerate(levels):
        _write_spans(tags, [(k * n_labels + lab, s, e) for lab, s, e in level])
    return tags, crossing, too_deep


def _write_spans(tags: numpy.ndarray, spans: Iterable[SpanTuple]) -> None:
    for chain, start, end in spans:
        if end - start == 1:
            tags[start, chain] = U
        else:
            tags[start, chain] = B
            tags[start + 1 : end - 1, chain] = I
            tags[end - 1, chain] = L


def properly_nested(spans: numpy.ndarray, n_labels: int) -> numpy.ndarray:
    """Which decoded ``(doc, chain, start, end_incl)`` rows to keep: every level 0 span, and
    a level k > 0 span only if it lies inside a kept level k-1 span of its label and differs
    from it. Constrained Viterbi already guarantees containment; this also covers leniently
    read argmax tags, and drops inner copies of an outer span."""
    keep = numpy.ones(len(spans), dtype=bool)
    if not len(spans):
        return keep
    level, label = spans[:, 1] // n_labels, spans[:, 1] % n_labels
    if level.max() == 0:
        return keep
    keep = level == 0
    parents: Dict[Tuple[int, int], List[Tuple[int, int]]] = {}
    for i in numpy.nonzero(keep)[0]:
        parents.setdefault((spans[i, 0], label[i]), []).append((spans[i, 2], spans[i, 3]))
    for k in range(1, int(level.max()) + 1):
        found: Dict[Tuple[int, int], List[Tuple[int, int]]] = {}
        for i in numpy.nonzero(level == k)[0]:
            key, s, e = (spans[i, 0], label[i]), spans[i, 2], spans[i, 3]
            if any(ps <= s and e <= pe and (ps, pe) != (s, e) for ps, pe in parents.get(key, ())):
                keep[i] = True
                found.setdefault(key, []).append((s, e))
        parents = found
    return keep


def decode_tags(tags: numpy.ndarray) -> numpy.ndarray:
    """Spans from a batch of tag tensors ``[B, T, L]`` -> int array ``[N, 4]``.

    Each row is ``(doc, label, start, end_inclusive)``, sorted by doc, label, start.
    Valid BIOUL (what Viterbi produces) decodes exactly. Invalid sequences (per-token argmax
    in "independent" mode) are read leniently: a span starts at B or U, or at an I/L that
    does not continue a B/I; it ends at L or U, or at a B/I not followed by I/L.
    """
    tags = numpy.asarray(tags)
    n_batch, n_time, n_labels = tags.shape
    chains = tags.transpose(0, 2, 1)  # [B, L, T]
    prev = numpy.full_like(chains, O)
    prev[..., 1:] = chains[..., :-1]
    nxt = numpy.full_like(chains, O)
    nxt[..., :-1] = chains[..., 1:]
    inside = (chains == I) | (chains == L)
    opens = (chains == B) | (chains == I)
    is_start = (chains == B) | (chains == U) | (inside & ~((prev == B) | (prev == I)))
    is_end = (chains == L) | (chains == U) | (opens & ~((nxt == I) | (nxt == L)))
    # Starts and ends alternate along each chain, so the k-th start pairs with the k-th end.
    doc_s, lab_s, start = numpy.nonzero(is_start)
    _, _, end = numpy.nonzero(is_end)
    return numpy.stack([doc_s, lab_s, start, end], axis=1).astype("int64")


def spans_per_doc(spans: numpy.ndarray, n_docs: int) -> List[numpy.ndarray]:
    """Split ``decode_tags`` output into one ``[n, 4]`` array per document."""
    if not len(spans):
        return [spans[:0] for _ in range(n_docs)]
    return numpy.split(spans, numpy.searchsorted(spans[:, 0], numpy.arange(1, n_docs)))


def valid_bioul(chain: Sequence[int]) -> bool:
    """Whether one label's tag sequence obeys BIOUL (used by tests and checks)."""
    allowed = {O: {O, B, U}, I: {I, L}, B: {I, L}, L: {O, B, U}, U: {O, B, U}}
    prev = O
    for tag in chain:
        if tag not in allowed[prev]:
            return False
        prev = tag
    return prev in (O, L, U)
