"""Nested entities of the same label (``nesting_depth`` > 1): levels, constraints, decoding,
training, saving and writing back."""
import itertools
import warnings

import numpy
import pytest
import spacy
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from spacy.tokens import Span

from spacy_crf_ner.data import get_provenance, parse_ann, read_standoff, set_provenance, write_standoff
from spacy_crf_ner.models.pytorch_emission_head import EmissionHead
from spacy_crf_ner.spans.bioul import (
    NUM_TAGS, Tag, assign_levels, decode_tags, encode_levels, properly_nested,
    select_non_overlapping, valid_bioul,
)

from synthetic import make_nested_examples, split_by_nesting, train

NEG_INF = float("-inf")
O, U = Tag.O, Tag.U


# ------------------------------------------------------------------ gold levels
@st.composite
def labelled_spans(draw):
    n_tokens = draw(st.integers(1, 10))
    spans = draw(
        st.lists(
            st.tuples(st.integers(0, 1), st.integers(0, n_tokens - 1), st.integers(1, 6)),
            max_size=10,
        )
    )
    return n_tokens, [(lab, s, min(s + n, n_tokens)) for lab, s, n in spans]


def _inside(a, b):
    """a strictly inside b (same label, contained, not equal)."""
    return a[0] == b[0] and b[1] <= a[1] and a[2] <= b[2] and a != b


def _cross(a, b):
    return (a[0] == b[0] and a[1] < b[2] and b[1] < a[2]
            and not _inside(a, b) and not _inside(b, a) and a != b)


@given(labelled_spans(), st.integers(1, 4))
@settings(max_examples=300, deadline=None)
def test_levels_nest_and_every_span_is_accounted_for(case, depth):
    n_tokens, spans = case
    levels, crossing, too_deep = assign_levels(spans, depth)
    assert len(levels) == depth
    placed = [s for level in levels for s in level]
    assert sorted(placed + crossing + too_deep) == sorted(set(spans))
    assert levels[0] == select_non_overlapping(spans)[0]  # depth 1 keeps what it always kept
    for k, level in enumerate(levels):
        assert select_non_overlapping(level)[1] == []  # one chain per label and level
        for span in level if k else ():
            assert any(_inside(span, outer) for outer in levels[k - 1])
    for span in crossing:
        assert any(_cross(span, p) for p in placed)
    for span in too_deep:
        assert not any(_cross(span, p) for p in placed)
        assert any(_inside(span, p) for p in levels[-1])
    # Without crossings, a deep enough encoding holds every span.
    _, deep_crossing, deep_too_deep = assign_levels(spans, 12)
    assert deep_too_deep == []
    if not deep_crossing:
        assert not crossing
    tags, _, _ = encode_levels(spans, n_tokens, 2, depth)
    got = sorted((int(c), int(s), int(e)) for _, c, s, e in decode_tags(tags[None]))
    assert got == sorted((k * 2 + lab, s, e) for k, lvl in enumerate(levels) for lab, s, e in lvl)


def test_depth_counts_crossing_and_too_deep_spans():
    spans = [(0, 0, 6), (0, 1, 4), (0, 2, 3), (0, 4, 8), (0, 1, 2)]
    levels, crossing, too_deep = assign_levels(spans, 2)
    assert levels == [[(0, 0, 6)], [(0, 1, 4)]]
    assert crossing == [(0, 4, 8)]
    assert sorted(too_deep) == [(0, 1, 2), (0, 2, 3)]


# ------------------------------------------------------------ constraint checks
def _chains(n):
    return [c for c in itertools.product(range(NUM_TAGS), repeat=n) if valid_bioul(c)]


def _spans(chain):
    tags = numpy.array(chain)[None, :, None]
    return {(int(s), int(e)) for _, _, s, e in decode_tags(tags)}


def _validly_nested(outer, inner):
    """Every inner span lies in an outer span and is not a copy of a one-token outer span.
    (A copy of a longer outer span cannot be seen by a token-local constraint; decoding
    drops it afterwards, see ``properly_nested``.)"""
    outer_spans = _spans(outer)
    return all(
        any(os <= s and e <= oe for os, oe in outer_spans) and not (e - s == 1 and (s, e) in outer_spans)
        for s, e in _spans(inner)
    )


def _head(n_labels=2, depth=2, seed=0):
    torch.manual_seed(seed)
    head = EmissionHead(input_size=3, num_labels=n_labels, nesting_depth=depth).double()
    with torch.no_grad():
        for p in head.crf.parameters():
            p.normal_()
        head.nesting_scores.normal_()
    return head


@pytest.mark.parametrize("n_time", [1, 2, 3, 4, 5])
def test_nesting_constraints_allow_exactly_the_nested_structures(n_time):
    """Enumerate every pair (outer chain, inner chain): the conditioned inner emissions are
    finite along the inner chain iff the structure is validly nested."""
    head = _head(n_labels=1)
    em = torch.zeros(1, n_time, 2, NUM_TAGS, dtype=torch.double)
    chains = _chains(n_time)
    n_valid = 0
    for outer in chains:
        above = torch.tensor(outer).view(1, n_time, 1)
        cond = head.condition_level(em[:, :, 1:], above, 1, forbidden=NEG_INF)[0, :, 0]
        for inner in chains:
            finite = bool(torch.isfinite(cond[torch.arange(n_time), list(inner)]).all())
            assert finite == _validly_nested(outer, inner), (outer, inner)
            n_valid += finite
    assert n_valid > len(chains) or n_time == 1  # nesting needs two tokens


def _path_score(trans, start, end, em, chain):
    score = start[chain[0]] + em[0, chain[0]]
    for t in range(1, len(chain)):
        score = score + trans[chain[t - 1], chain[t]] + em[t, chain[t]]
    return score + end[chain[-1]]


@pytest.mark.parametrize("seed", range(4))
def test_level_by_level_decoding_matches_brute_force(seed):
    """Level 0: best valid chain; level 1: best valid chain nested under the decoded level 0,
    with its conditioned emissions. Checked by enumerating every chain."""
    n_labels, n_time = 2, 5
    head = _head(n_labels, seed=seed)
    gen = torch.Generator().manual_seed(seed)
    em = torch.randn(2, n_time, 2 * n_labels, NUM_TAGS, generator=gen, dtype=torch.double) * 2
    lengths = [n_time, 3]
    mask = torch.arange(n_time)[None, :] < torch.tensor(lengths)[:, None]
    tags, conditioned = head.decode_levels(em, mask, use_crf=True)
    trans, start, end = head.crf.constrained_scores(forbidden=NEG_INF)
    for b, n in enumerate(lengths):
        for lab in range(n_labels):
            chains = _chains(n)
            outer_c, inner_c = lab, n_labels + lab
            best_outer = max(chains, key=lambda c: _path_score(
                trans[outer_c], start[outer_c], end[outer_c], em[b, :n, outer_c], c))
            above = torch.zeros(1, n, n_labels, dtype=torch.long)
            above[0, :, lab] = torch.tensor(best_outer)
            cond = head.condition_level(em[b : b + 1, :n, n_labels:], above, 1,
                                        forbidden=NEG_INF)[0, :, lab]
            best_inner = max(chains, key=lambda c: _path_score(
                trans[inner_c], start[inner_c], end[inner_c], cond, c))
            assert tags[b, :n, outer_c].tolist() == list(best_outer)
            assert tags[b, :n, inner_c].tolist() == list(best_inner)
            assert _validly_nested(best_outer, best_inner)
            assert (tags[b, n:] == O).all()


def test_inner_likelihood_is_normalised_over_the_nested_chains():
    """log Z of a level given the level above = log-sum over exactly the chains that nest."""
    head = _head(n_labels=1, seed=3)
    n_time = 5
    em = torch.randn(1, n_time, 2, NUM_TAGS, dtype=torch.double)
    outer = (2, 1, 3, 0, 4)  # B I L O U
    tags = torch.zeros(1, n_time, 2, dtype=torch.long)
    tags[0, :, 0] = torch.tensor(outer)
    cond = head.condition(em, tags)
    mask = torch.ones(1, n_time, dtype=torch.bool)
    log_z = head.crf.log_partition(cond, mask)[0, 1]
    trans, start, end = head.crf.constrained_scores()
    scores = [
        _path_score(trans[1], start[1], end[1], cond[0, :, 1], c)
        for c in _chains(n_time) if _validly_nested(outer, c)
    ]
    assert torch.allclose(log_z, torch.logsumexp(torch.stack(scores), 0), atol=1e-8)


def test_properly_nested_drops_copies_and_orphans():
    # (doc, chain, start, end) with 1 label: chain 0 = outer level, chain 1 = inner.
    spans = numpy.array([
        [0, 0, 0, 5], [0, 1, 1, 3],  # kept: inside
        [0, 1, 0, 5],                # copy of the outer span
        [0, 1, 6, 7],                # no outer span around it
        [1, 1, 1, 3],                # other doc: no outer span
    ])
    assert properly_nested(spans, 1).tolist() == [True, True, False, False, False]


# ------------------------------------------------------------------ the pipe
def new_nlp(**cfg):
    nlp = spacy.blank("en")
    nlp.add_pipe("crf_ner", config=cfg)
    return nlp


def triples(doc, key="sc"):
    return {(s.start_char, s.end_char, s.label_) for s in doc.spans[key]}


def nested_recall(nlp, examples):
    """Recall of outer and of inner gold spans, and the predicted spans, on the examples."""
    docs = list(nlp.pipe([eg.reference.text for eg in examples]))
    hits = {"outer": [0, 0], "inner": [0, 0]}
    for doc, eg in zip(docs, examples):
        pred = triples(doc)
        for part, gold in zip(("outer", "inner"), split_by_nesting(triples(eg.reference))):
            hits[part][0] += len(gold & pred)
            hits[part][1] += len(gold)
    return {k: tp / n for k, (tp, n) in hits.items()}, docs


@pytest.fixture(scope="module")
def trained_depths():
    """The same nested corpus trained at depth 1 and at depth 2 (tok2vec, seconds)."""
    out = {}
    for depth in (1, 2):
        nlp = new_nlp(nesting_depth=depth)
        examples = make_nested_examples(nlp, 80, seed=5)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # depth 1 warns about the inner spans
            train(nlp, examples, epochs=15)
        out[depth] = (nlp, examples)
    return out


def test_depth_two_learns_inner_spans_and_depth_one_cannot(trained_depths):
    rec1, _ = nested_recall(*trained_depths[1])
    rec2, docs = nested_recall(*trained_depths[2])
    print("recall depth 1", rec1, "depth 2", rec2)
    assert rec2["inner"] >= 0.9 and rec2["outer"] >= 0.9
    assert rec1["outer"] >= 0.9
    assert rec1["inner"] <= 0.5  # one chain per label holds only one of two nested spans
    # Structure of what depth 2 writes: inner spans strictly inside an outer span of their
    # label, never crossing one; doc.ents non-overlapping, outermost.
    n_nested = 0
    for doc in docs:
        spans = sorted((s.start, s.end, s.label_) for s in doc.spans["sc"])
        assert len(set(spans)) == len(spans)
        for a, b in itertools.combinations(spans, 2):
            if a[2] == b[2] and a[0] < b[1] and b[0] < a[1]:
                assert (a[0] <= b[0] and b[1] <= a[1]) or (b[0] <= a[0] and a[1] <= b[1])
                n_nested += 1
        ents = [(e.start, e.end) for e in doc.ents]
        assert all(e1[1] <= e2[0] for e1, e2 in zip(ents, ents[1:]))
        for s, e, label in spans:  # every outermost span of a label is in doc.ents
            if not any(o != (s, e, label) and o[2] == label and o[0] <= s and e <= o[1] for o in spans):
                assert any(x.start == s and x.end == e for x in doc.ents) or any(
                    x.start < e and s < x.end for x in doc.ents)
    assert n_nested > 0


def test_nested_output_is_scored(trained_depths):
    nlp, examples = trained_depths[2]
    scores = nlp.evaluate(examples)
    assert scores["spans_sc_f"] >= 0.9
    assert set(scores["spans_sc_per_type"]) == {"ANATOMY", "DISORDER", "DRUG"}


def test_depth_one_decodes_exactly_as_a_single_chain_crf(trained_depths):
    """At depth 1 the nesting machinery is a no-op: plain Viterbi over every label's chain,
    the same spans and the same confidences."""
    from thinc.api import xp2torch

    from spacy_crf_ner.models.padding import lengths_to_mask

    nlp, examples = trained_depths[1]
    ner = nlp.get_pipe("crf_ner")
    docs = [nlp.make_doc(eg.reference.text) for eg in examples[:16]]
    em_xp, lengths = ner.model.predict(docs)
    got = ner.decode((em_xp, lengths))
    em = xp2torch(em_xp)  # on the GPU under `pytest --gpu-id`
    mask = lengths_to_mask(torch.as_tensor(lengths, device=em.device), em.shape[1])
    with torch.no_grad():
        spans = decode_tags(ner.crf.viterbi(em, mask).cpu().numpy())
        alphas, betas, log_z = ner.crf.forward_backward(em, mask)
        idx = torch.as_tensor(spans, device=em.device)
        conf = ner.crf.span_log_probs(em, alphas, betas, log_z, idx).exp().cpu().numpy()
    want = sorted((tuple(int(x) for x in span), min(float(c), 1.0)) for span, c in zip(spans, conf))
    have = sorted(((i, *(int(x) for x in span)), float(c))
                  for i, (doc_spans, doc_conf) in enumerate(got)
                  for span, c in zip(doc_spans, doc_conf))
    assert [h[0] for h in have] == [w[0] for w in want]
    assert numpy.allclose([h[1] for h in have], [w[1] for w in want], atol=1e-6)


def test_depth_two_round_trips_through_disk_and_wins_over_config(trained_depths, tmp_path):
    nlp, examples = trained_depths[2]
    texts = [eg.reference.text for eg in examples[:20]]
    before = [(triples(d), list(d.spans["sc"].attrs["scores"])) for d in nlp.pipe(texts)]
    nlp.to_disk(tmp_path / "m")
    again = spacy.load(tmp_path / "m")
    assert again.get_pipe("crf_ner").nesting_depth == 2
    assert [(triples(d), list(d.spans["sc"].attrs["scores"])) for d in again.pipe(texts)] == before
    with pytest.warns(UserWarning, match="trained with nesting_depth=2"):
        forced = spacy.load(tmp_path / "m", config={"components": {"crf_ner": {"nesting_depth": 1}}})
    assert [triples(d) for d in forced.pipe(texts)] == [b[0] for b in before]


def test_spans_beyond_depth_are_counted_and_reported():
    nlp = new_nlp(nesting_depth=2)
    examples = make_nested_examples(nlp, 6, seed=1)
    ref = examples[0].reference
    n = len(ref)
    # A third level inside whatever is nested, and a span crossing the first entity.
    first = max(ref.spans["sc"], key=len)
    extra = [Span(ref, first.start, first.start + 1, label=first.label_)]
    if first.end < n:
        extra.append(Span(ref, first.start + 1, first.end + 1, label=first.label_))
    ref.spans["sc"] = list(ref.spans["sc"]) + extra
    with pytest.warns(UserWarning, match="gold spans cannot be trained on"):
        nlp.initialize(lambda: examples)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nlp.update(examples, sgd=nlp.create_optimizer())
    stats = nlp.get_pipe("crf_ner").stats
    total = sum(len(eg.reference.spans["sc"]) for eg in examples)
    assert stats["gold_spans"] == total
    assert stats["same_label_crossing"] + stats["nested_too_deep"] >= 1


def test_bad_nesting_depth_is_a_clear_error():
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="nesting_depth"):
            new_nlp(nesting_depth=bad)


def test_nested_predictions_round_trip_through_the_standoff_writer(trained_depths, tmp_path):
    nlp, examples = trained_depths[2]
    docs = list(nlp.pipe([eg.reference.text for eg in examples[:12]]))
    for i, doc in enumerate(docs):
        set_provenance(doc, f"doc{i}.txt")
    assert any(split_by_nesting(triples(d))[1] for d in docs)
    write_standoff(docs, tmp_path)
    again, _ = read_standoff(tmp_path, spacy.blank("en"))
    by_name = {get_provenance(d).source: d for d in again}
    for i, doc in enumerate(docs):
        assert triples(by_name[f"doc{i}.txt"]) == triples(doc)
        ann = parse_ann((tmp_path / f"doc{i}.ann").read_text())
        assert len(ann.entities) == len(doc.spans["sc"])


def test_converter_keeps_nested_same_label_spans():
    from spacy_crf_ner.data import standoff_to_docs

    text = "Known chronic kidney disease since 2015 ."
    ann = "T1\tDISORDER 6 28\tchronic kidney disease\nT2\tDISORDER 14 28\tkidney disease\n"
    (doc,) = standoff_to_docs(spacy.blank("en"), text, ann, source="n.txt")
    assert triples(doc) == {(6, 28, "DISORDER"), (14, 28, "DISORDER")}
    assert [(e.start_char, e.end_char) for e in doc.ents] == [(6, 28)]
