"""Transformer windows counted in word pieces: ``spacy_crf_ner.wordpiece_strided_spans.v1``.

spacy-transformers' ``strided_spans.v1`` counts its window in spaCy tokens, so a window of
128 tokens holds anywhere from 128 to several hundred word pieces (biomedical words split a
lot), and every window of a batch is padded to the longest one, so much of what the
transformer computes is padding (BENCHMARKS.md, "Design figures"). This getter cuts windows of at most ``window``
word pieces (plus the model's special tokens), ``stride`` pieces apart, as EDS-NLP does, so
windows are full and of nearly equal length. Windows still start and end on spaCy tokens,
and every token is covered.
"""
from functools import lru_cache, partial
from typing import Any, Callable, Iterable, List

import numpy
from spacy.attrs import IDX, LENGTH
from spacy.tokens import Doc, Span


@lru_cache(maxsize=4)
def _load_tokenizer(name: str) -> Any:
    from transformers import AutoTokenizer

    from .name import resolve_transformer_name

    return AutoTokenizer.from_pretrained(resolve_transformer_name(name), use_fast=True)


def piece_owners(token_starts: numpy.ndarray, token_ends: numpy.ndarray,
                 piece_offsets: numpy.ndarray) -> numpy.ndarray:
    """The spaCy token that owns each word piece [n_pieces], from character offsets.

    ``token_starts``/``token_ends``: [n_tokens] character offsets of the tokens (n_tokens >= 1);
    ``piece_offsets``: [n_pieces, 2] (start, end) of each piece. A piece belongs to the token
    holding its first character; a piece that starts in the whitespace after a token belongs to
    the next token. This one rule decides both where windows are cut and which pieces feed
    which token.
    """
    n = len(token_starts)
    owner = (numpy.searchsorted(token_starts, piece_offsets[:, 0], side="right") - 1).clip(0, n - 1)
    owner += (piece_offsets[:, 0] >= token_ends[owner]) & (owner < n - 1)
    return owner


def piece_counts(tokenizer: Any, doc: Doc) -> numpy.ndarray:
    """Word pieces per spaCy token [len(doc)], from one tokenisation of the whole text."""
    if not len(doc):
        return numpy.zeros((0,), dtype="int64")
    enc = tokenizer(doc.text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
    offsets = numpy.asarray(enc["offset_mapping"], dtype="int64").reshape(-1, 2)
    columns = doc.to_array([IDX, LENGTH]).astype("int64")
    owner = piece_owners(columns[:, 0], columns[:, 0] + columns[:, 1], offsets)
    return numpy.bincount(owner, minlength=len(doc))


def check_window(window: int, stride: int) -> None:
    """Windows must advance and leave no token out: 0 < stride <= window."""
    if not 0 < stride <= window:
        raise ValueError(f"need 0 < stride <= window, got window={window}, stride={stride}")


def windows_from_counts(counts: numpy.ndarray, window: int, stride: int) -> List[tuple]:
    """(start, end) token ranges: each holds at most ``window`` pieces (or one token, if
    that token alone is longer); the next starts ``stride`` pieces later; the last reaches
    the end. Consecutive windows overlap or touch, so no token is left out."""
    n = len(counts)
    cum = numpy.concatenate([[0], numpy.cumsum(counts)])
    ranges, start = [], 0
    while start < n:
        end = int(numpy.searchsorted(cum, cum[start] + window, side="right")) - 1
        end = min(max(end, start + 1), n)
        ranges.append((start, end))
        if end >= n:
            break
        nxt = int(numpy.searchsorted(cum, cum[start] + stride, side="left"))
        start = min(max(nxt, start + 1), end)
    return ranges


def get_wordpiece_strided_spans(
    docs: Iterable[Doc], name: str, window: int, stride: int
) -> List[List[Span]]:
    tokenizer = _load_tokenizer(name)
    return [
        [doc[s:e] for s, e in windows_from_counts(piece_counts(tokenizer, doc), window, stride)]
        for doc in docs
    ]


def configure_wordpiece_strided_spans(
    name: str, window: int = 128, stride: int = 96
) -> Callable[[Iterable[Doc]], List[List[Span]]]:
    """Span getter for spacy-transformers: windows of at most ``window`` word pieces of the
    tokenizer of ``name`` (same value as the transformer's name), ``stride`` pieces apart."""
    check_window(window, stride)
    return partial(get_wordpiece_strided_spans, name=name, window=window, stride=stride)


def forward_chunks(lengths: List[int], max_pieces: int,
                   call_cost: int = 128) -> List[numpy.ndarray]:
    """Rows of a batch of windows grouped for the transformer's forward, longest first.

    Each group is padded only to its own longest window and holds at most ``max_pieces``
    padded word pieces (at least one window). Padding is computed and thrown away, so the
    groups are cut where the padding they would compute costs more than another forward
    call, counted as ``call_cost`` word pieces: with the windows sorted by length, the split
    that minimises (padded pieces + call_cost per group) is found exactly, in one pass per
    window over the group sizes that fit. Most windows are full, so they form the first
    groups; the short last windows of the documents follow, grouped with windows of about
    their own length. Returns the row indices of each group, in order of decreasing length.
    """
    if max_pieces < 1:
        raise ValueError(f"max_forward_pieces must be at least 1, got {max_pieces}")
    sizes = numpy.asarray(lengths, dtype="int64")
    order = numpy.argsort(-sizes, kind="stable")
    ordered = sizes[order]
    n = len(order)
    # best[i]: least cost of the first i rows (sorted); cut[i]: where its last group starts.
    best = [0.0] + [float("inf")] * n
    cut = [0] * (n + 1)
    for end in range(1, n + 1):
        for start in range(end - 1, -1, -1):
            width = max(int(ordered[start]), 1)  # the group's first row is its longest
            rows = end - start
            if rows > 1 and rows * width > max_pieces:
                break
            cost = best[start] + rows * width + call_cost
            if cost < best[end]:
                best[end], cut[end] = cost, start
    groups: List[numpy.ndarray] = []
    end = n
    while end > 0:
        groups.append(order[cut[end] : end])
        end = cut[end]
    return groups[::-1]
