"""Transformer windows counted in word pieces (``spacy_crf_ner.wordpiece_strided_spans.v1``)."""
import numpy
import pytest
import spacy
from hypothesis import given, settings
from hypothesis import strategies as st

from spacy_crf_ner.transformer.windows import (
    configure_wordpiece_strided_spans, piece_counts, windows_from_counts,
)
from synthetic import ANATOMY, DISEASE_HEAD, DRUG, TEMPLATES
from tiny_transformer import build_tiny_bert


@given(st.lists(st.integers(0, 6), max_size=60), st.integers(1, 20), st.integers(1, 20))
@settings(max_examples=300, deadline=None)
def test_windows_cover_every_token_within_the_piece_budget(counts, window, stride):
    stride = min(stride, window)
    counts = numpy.asarray(counts, dtype="int64")
    ranges = windows_from_counts(counts, window, stride)
    n = len(counts)
    if n == 0:
        assert ranges == []
        return
    assert ranges[0][0] == 0 and ranges[-1][1] == n
    for (s1, e1), (s2, e2) in zip(ranges, ranges[1:]):
        assert s1 < s2 <= e1 <= e2  # move on, never skip a token
    for s, e in ranges:
        assert e > s
        assert counts[s:e].sum() <= window or e - s == 1  # a single over-long token is kept whole


@pytest.fixture(scope="module")
def tokenizer_name(tmp_path_factory):
    words = " ".join(TEMPLATES + ANATOMY + DISEASE_HEAD + DRUG).split()
    return str(build_tiny_bert(tmp_path_factory.mktemp("bert"), words))


def test_spans_hold_at_most_window_pieces_as_the_transformer_tokenizes_them(tokenizer_name):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer_name)
    nlp = spacy.blank("en")
    text = " ".join(TEMPLATES * 4).replace("{", "").replace("}", "") + " unknownword xyz"
    doc = nlp(text)
    get_spans = configure_wordpiece_strided_spans(tokenizer_name, window=20, stride=15)
    (spans,) = get_spans([doc])
    assert len(spans) > 3
    counts = piece_counts(tok, doc)
    assert counts.sum() == len(tok(text, add_special_tokens=False)["input_ids"])
    covered = numpy.zeros(len(doc), dtype=bool)
    for span in spans:
        covered[span.start : span.end] = True
        assert len(tok(span.text, add_special_tokens=False)["input_ids"]) <= 20
    assert covered.all()
    # Windows are nearly full: all but the last hold more than window - the longest token.
    assert all(counts[s.start : s.end].sum() > 20 - counts.max() for s in spans[:-1])
    assert get_spans([nlp("")]) == [[]]


def test_bad_window_is_a_clear_error():
    with pytest.raises(ValueError, match="stride"):
        configure_wordpiece_strided_spans("x", window=10, stride=20)
