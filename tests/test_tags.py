"""Spans -> BIOUL tag matrix -> spans."""
import numpy
from hypothesis import given, settings
from hypothesis import strategies as st

from spacy_crf_ner.spans.bioul import (
    Tag, decode_tags, encode_levels, select_non_overlapping, spans_per_doc, valid_bioul,
)

O, I, B, L, U = Tag.O, Tag.I, Tag.B, Tag.L, Tag.U


def encode_spans(spans, n_tokens, n_labels):
    """One nesting level: the tag matrix and the same-label overlaps it could not hold."""
    tags, crossing, too_deep = encode_levels(spans, n_tokens, n_labels, depth=1)
    return tags, crossing + too_deep


@st.composite
def docs_with_spans(draw):
    n_tokens = draw(st.integers(1, 12))
    n_labels = draw(st.integers(1, 4))
    spans = draw(
        st.lists(
            st.tuples(st.integers(0, n_labels - 1), st.integers(0, n_tokens - 1), st.integers(1, 5)),
            max_size=10,
        )
    )
    spans = [(lab, s, min(s + n, n_tokens)) for lab, s, n in spans]
    return n_tokens, n_labels, spans


@given(docs_with_spans())
@settings(max_examples=300, deadline=None)
def test_encode_decode_round_trip(case):
    n_tokens, n_labels, spans = case
    tags, dropped = encode_spans(spans, n_tokens, n_labels)
    kept, dropped_again = select_non_overlapping(spans)
    assert sorted(dropped) == sorted(dropped_again)
    # Every distinct span is either kept or dropped; dropped ones overlap a kept one of the
    # same label that is at least as long.
    assert len(kept) + len(dropped) == len(set(spans))
    for lab, s, e in dropped:
        assert any(
            k[0] == lab and k[1] < e and s < k[2] and (k[2] - k[1]) >= (e - s) for k in kept
        )
    for lab in range(n_labels):
        assert valid_bioul(tags[:, lab].tolist())
    decoded = decode_tags(tags[None])
    got = sorted((int(lab), int(s), int(e)) for _, lab, s, e in decoded)
    assert got == sorted(kept)


def test_different_labels_may_overlap_same_label_cannot():
    tags, dropped = encode_spans([(0, 0, 3), (1, 1, 2), (0, 1, 2)], 4, 2)
    assert tags[:, 0].tolist() == [B, I, L, O]
    assert tags[:, 1].tolist() == [O, U, O, O]
    assert dropped == [(0, 1, 2)]


@given(st.lists(st.integers(0, 4), min_size=1, max_size=10))
@settings(max_examples=300, deadline=None)
def test_lenient_decoding_of_any_sequence(chain):
    """Per-token argmax can produce invalid BIOUL; every non-O token still lands in exactly
    one well-formed span and O tokens in none."""
    spans = decode_tags(numpy.array(chain)[None, :, None])
    covered = []
    for _, _, s, e in spans:
        assert s < e
        covered.extend(range(s, e))
    assert sorted(covered) == [i for i, t in enumerate(chain) if t != O]


def test_spans_per_doc_keeps_empty_docs():
    tags = numpy.zeros((3, 4, 1), dtype="int64")
    tags[2, 1, 0] = U
    parts = spans_per_doc(decode_tags(tags), 3)
    assert [len(p) for p in parts] == [0, 0, 1]
    assert parts[2].tolist() == [[2, 0, 1, 2]]
