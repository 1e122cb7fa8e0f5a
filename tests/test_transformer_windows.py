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


def _cost(groups, lengths, call_cost):
    return sum(len(g) * max(lengths[i] for i in g) + call_cost for g in groups)


def _best_cost(lengths, max_pieces, call_cost):
    """Brute force over every way to cut the sorted rows into consecutive groups."""
    import itertools

    ordered = sorted(lengths, reverse=True)
    n, best = len(ordered), float("inf")
    for cuts in itertools.product([0, 1], repeat=max(n - 1, 0)):
        groups, start = [], 0
        for i, c in enumerate(cuts, start=1):
            if c:
                groups.append(ordered[start:i])
                start = i
        groups.append(ordered[start:])
        if all(len(g) == 1 or len(g) * g[0] <= max_pieces for g in groups):
            best = min(best, sum(len(g) * g[0] + call_cost for g in groups))
    return best


@pytest.mark.parametrize("seed", range(6))
def test_forward_groups_cover_every_window_once_within_budget_at_least_cost(seed):
    import random

    from spacy_crf_ner.transformer.windows import forward_chunks

    rng = random.Random(seed)
    lengths = [rng.choice([130, 130, 130, rng.randint(3, 130)]) for _ in range(rng.randint(1, 11))]
    max_pieces, call_cost = rng.choice([130, 300, 600, 4096]), rng.choice([0, 16, 128])
    groups = forward_chunks(lengths, max_pieces, call_cost)
    rows = sorted(int(i) for g in groups for i in g)
    assert rows == list(range(len(lengths)))
    widths = [max(lengths[i] for i in g) for g in groups]
    assert widths == sorted(widths, reverse=True)
    assert all(len(g) == 1 or len(g) * w <= max_pieces for g, w in zip(groups, widths))
    assert _cost(groups, lengths, call_cost) == _best_cost(lengths, max_pieces, call_cost)


def test_forward_groups_edge_cases():
    from spacy_crf_ner.transformer.windows import forward_chunks

    assert forward_chunks([], 4096) == []
    assert [list(g) for g in forward_chunks([500], 100)] == [[0]]  # one window over budget
    with pytest.raises(ValueError, match="max_forward_pieces"):
        forward_chunks([3], 0)
