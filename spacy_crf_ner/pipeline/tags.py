"""Spans <-> per-label BIOUL tag matrices.

A document with T tokens and L labels is encoded as an int matrix ``[T, L]``: column ``l`` is
the BIOUL chain of label ``l`` (codes O=0, I=1, B=2, L=3, U=4, as in ``models.pytorch_crf``).
Spans of different labels may overlap freely; spans of the *same* label that overlap cannot
share a chain, so ``encode_spans`` keeps a non-overlapping subset per label (longest first,
then leftmost) and reports how many it dropped.
"""
from typing import Iterable, List, Sequence, Tuple

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
    taken = {}
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
    for label, start, end in kept:
        if end - start == 1:
            tags[start, label] = U
        else:
            tags[start, label] = B
            tags[start + 1 : end - 1, label] = I
            tags[end - 1, label] = L
    return tags, dropped


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
    bounds = numpy.searchsorted(spans[:, 0], numpy.arange(1, n_docs)) if len(spans) else []
    return numpy.split(spans, bounds) if len(spans) else [spans[:0] for _ in range(n_docs)]


def valid_bioul(chain: Sequence[int]) -> bool:
    """Whether one label's tag sequence obeys BIOUL (used by tests and checks)."""
    allowed = {O: {O, B, U}, I: {I, L}, B: {I, L}, L: {O, B, U}, U: {O, B, U}}
    prev = O
    for tag in chain:
        if tag not in allowed[prev]:
            return False
        prev = tag
    return prev in (O, L, U)
