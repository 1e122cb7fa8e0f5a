"""BIOUL tags: the tag table, and spans <-> tag matrices (torch-free).

Every rule about tags lives here: the tag codes, which tag may follow which, which may open
and close a chain, which may sit under which at the next nesting level. The CRF
(``models.pytorch_crf``) turns these tables into score masks; the pipe encodes gold spans and
decodes predicted tags with the functions below.

Terms:

* a **chain** is one BIOUL tag sequence over a document. Every label has its own chain, so
  spans of different labels may overlap. With nesting depth D every label has D chains, one
  per nesting level, outermost first: chain ``k * n_labels + l`` is level k of label l.
* a **tag matrix** is an int array ``[T, C]`` (one document) or ``[B, T, C]`` (a batch), T
  tokens, C chains, holding ``Tag`` codes.
* a **span** is ``(chain, start, end)`` with ``end`` exclusive, as spaCy's ``doc[start:end]``.
  Decoded spans of a batch carry the document first: ``(doc, chain, start, end)``.
"""
from enum import IntEnum
from typing import Dict, Iterable, List, Sequence, Tuple

import numpy


class Tag(IntEnum):
    """Tag codes of a chain (the last axis of the CRF's score tensors)."""

    O = 0  # outside any span  # noqa: E741
    I = 1  # inside a span, neither first nor last token  # noqa: E741
    B = 2  # first token of a span of two or more tokens
    L = 3  # last token of a span of two or more tokens
    U = 4  # a one-token span


NUM_TAGS = len(Tag)

# Which tag may follow which along a chain; which tags may open and close a chain.
ALLOWED_NEXT: Dict[Tag, Tuple[Tag, ...]] = {
    Tag.O: (Tag.O, Tag.B, Tag.U),
    Tag.I: (Tag.I, Tag.L),
    Tag.B: (Tag.I, Tag.L),
    Tag.L: (Tag.O, Tag.B, Tag.U),
    Tag.U: (Tag.O, Tag.B, Tag.U),
}
ALLOWED_FIRST: Tuple[Tag, ...] = (Tag.O, Tag.B, Tag.U)
ALLOWED_LAST: Tuple[Tag, ...] = (Tag.O, Tag.L, Tag.U)

# Nesting: the tags a level k chain may take under each tag of the level k-1 chain of the
# same label. Outside an outer span (O) and under a one-token outer span (U, which has no
# proper sub-span) only O; at the outer span's first token (B) nothing may continue from
# before (O, B, U); at its last token (L) everything must end (O, L, U); inside it (I) anything.
ALLOWED_UNDER: Dict[Tag, Tuple[Tag, ...]] = {
    Tag.O: (Tag.O,),
    Tag.I: tuple(Tag),
    Tag.B: (Tag.O, Tag.B, Tag.U),
    Tag.L: (Tag.O, Tag.L, Tag.U),
    Tag.U: (Tag.O,),
}

# (label index, start token, end token exclusive)
SpanTuple = Tuple[int, int, int]


def valid_bioul(chain: Sequence[int]) -> bool:
    """Whether one chain's tag sequence obeys the table above."""
    prev = None
    for tag in chain:
        allowed = ALLOWED_FIRST if prev is None else ALLOWED_NEXT[Tag(prev)]
        if tag not in allowed:
            return False
        prev = tag
    return prev is None or prev in ALLOWED_LAST


# ------------------------------------------------------------------------------ encoding
def select_non_overlapping(spans: Iterable[SpanTuple]) -> Tuple[List[SpanTuple], List[SpanTuple]]:
    """Per label, keep the longest spans first (ties: leftmost), drop those that overlap.

    Returns ``(kept, dropped)``, ``kept`` sorted by (label, start).
    """
    ordered = sorted(set(spans), key=lambda s: (s[0], -(s[2] - s[1]), s[1], s[2]))
    kept, dropped = [], []
    taken: Dict[int, set] = {}
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


def assign_levels(
    spans: Iterable[SpanTuple], depth: int
) -> Tuple[List[List[SpanTuple]], List[SpanTuple], List[SpanTuple]]:
    """Sort same-label spans into ``depth`` nesting levels, outermost first.

    Level 0 is ``select_non_overlapping`` of all spans. Level k takes, among the spans left,
    those strictly inside a level k-1 span of their label, again longest first without
    overlap. Returns ``(levels, crossing, too_deep)``: the spans that overlap a kept span of
    their label without nesting in it or around it, and those nested deeper than ``depth``.
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
    """Tag matrix ``[T, depth * n_labels]`` (chain ``k * n_labels + l``), plus the crossing
    and too-deep spans that it cannot hold (see ``assign_levels``)."""
    levels, crossing, too_deep = assign_levels(spans, depth)
    tags = numpy.zeros((n_tokens, depth * n_labels), dtype="int64")
    for k, level in enumerate(levels):
        for label, start, end in level:
            chain = k * n_labels + label
            if end - start == 1:
                tags[start, chain] = Tag.U
            else:
                tags[start, chain] = Tag.B
                tags[start + 1 : end - 1, chain] = Tag.I
                tags[end - 1, chain] = Tag.L
    return tags, crossing, too_deep


# ------------------------------------------------------------------------------ decoding
def decode_tags(tags: numpy.ndarray) -> numpy.ndarray:
    """Spans from a batch of tag matrices ``[B, T, C]`` -> int array ``[N, 4]``.

    Each row is ``(doc, chain, start, end)``, end exclusive, sorted by doc, chain, start.
    Valid BIOUL (what Viterbi produces) decodes exactly. Invalid sequences (per-token argmax
    in "independent" mode) are read leniently: a span starts at B or U, or at an I/L that
    does not continue a B/I; it ends at L or U, or at a B/I not followed by I/L.
    """
    tags = numpy.asarray(tags)
    chains = tags.transpose(0, 2, 1)  # [B, C, T]
    prev = numpy.full_like(chains, Tag.O)
    prev[..., 1:] = chains[..., :-1]
    nxt = numpy.full_like(chains, Tag.O)
    nxt[..., :-1] = chains[..., 1:]
    inside = (chains == Tag.I) | (chains == Tag.L)
    opens = (chains == Tag.B) | (chains == Tag.I)
    is_start = (chains == Tag.B) | (chains == Tag.U) | (inside & ~((prev == Tag.B) | (prev == Tag.I)))
    is_last = (chains == Tag.L) | (chains == Tag.U) | (opens & ~((nxt == Tag.I) | (nxt == Tag.L)))
    # Starts and last tokens alternate along each chain: the k-th start pairs with the k-th last.
    doc, chain, start = numpy.nonzero(is_start)
    _, _, last = numpy.nonzero(is_last)
    return numpy.stack([doc, chain, start, last + 1], axis=1).astype("int64")


def properly_nested(spans: numpy.ndarray, n_labels: int) -> numpy.ndarray:
    """Which decoded ``(doc, chain, start, end)`` rows to keep: every level 0 span, and a
    level k > 0 span only if it lies inside a kept level k-1 span of its label and differs
    from it. Constrained Viterbi already guarantees containment; this also covers leniently
    read argmax tags, and drops inner copies of an outer span."""
    keep = numpy.ones(len(spans), dtype=bool)
    if not len(spans):
        return keep
    level, label = spans[:, 1] // n_labels, spans[:, 1] % n_labels
    if level.max() == 0:
        return keep
    keep = level == 0
    parents: Dict[tuple, list] = {}
    for i in numpy.nonzero(keep)[0]:
        parents.setdefault((spans[i, 0], label[i]), []).append((spans[i, 2], spans[i, 3]))
    for k in range(1, int(level.max()) + 1):
        found: Dict[tuple, list] = {}
        for i in numpy.nonzero(level == k)[0]:
            key, s, e = (spans[i, 0], label[i]), spans[i, 2], spans[i, 3]
            if any(ps <= s and e <= pe and (ps, pe) != (s, e) for ps, pe in parents.get(key, ())):
                keep[i] = True
                found.setdefault(key, []).append((s, e))
        parents = found
    return keep


def spans_per_doc(spans: numpy.ndarray, n_docs: int) -> List[numpy.ndarray]:
    """Split ``decode_tags`` output (sorted by doc) into one ``[n, 4]`` array per document."""
    if not len(spans):
        return [spans[:0] for _ in range(n_docs)]
    bounds = numpy.searchsorted(spans[:, 0], numpy.arange(1, n_docs))
    return numpy.split(spans, bounds)
