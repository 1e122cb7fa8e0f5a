"""The BIOUL CRF against brute-force enumeration of every valid tag sequence."""
import itertools

import pytest
import torch

from spacy_crf_ner.models.pytorch_crf import BIOULCRF
from spacy_crf_ner.spans.bioul import NUM_TAGS, Tag, valid_bioul

O, I, B, L, U = Tag.O, Tag.I, Tag.B, Tag.L, Tag.U



@pytest.fixture(autouse=True)
def double_precision():
    """Brute-force comparisons and gradcheck need float64; restore the default after."""
    saved = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(saved)


def valid_paths(n_tokens):
    return [p for p in itertools.product(range(NUM_TAGS), repeat=n_tokens) if valid_bioul(p)]


def path_score(crf, em, path, label):
    """Score of one path of one label's chain, written out naively. em: [T, L, K]."""
    trans, start, end = (x.detach() for x in crf.constrained_scores())
    score = start[label, path[0]] + em[0, label, path[0]]
    for t in range(1, len(path)):
        score = score + trans[label, path[t - 1], path[t]] + em[t, label, path[t]]
    return score + end[label, path[-1]]


# Both ways of running the recursions over time, whatever the device.
MODES = ["sequential", "blocked"]


def random_crf(n_labels, seed, mode="auto"):
    gen = torch.Generator().manual_seed(seed)
    crf = BIOULCRF(n_labels, scan_mode=mode)
    with torch.no_grad():
        crf.transitions.copy_(torch.randn(crf.transitions.shape, generator=gen))
        crf.start_scores.copy_(torch.randn(crf.start_scores.shape, generator=gen))
        crf.end_scores.copy_(torch.randn(crf.end_scores.shape, generator=gen))
    return crf, gen


CASES = [(n_labels, seed, mode) for n_labels in (1, 3) for seed in range(4) for mode in MODES]


@pytest.mark.parametrize("n_labels,seed,mode", CASES)
def test_partition_marginals_viterbi_match_enumeration(n_labels, seed, mode):
    crf, gen = random_crf(n_labels, seed, mode)
    lengths = [1, 2, 4, 6][: 2 + seed % 3]
    n_time = max(lengths)
    em = torch.randn(len(lengths), n_time, n_labels, NUM_TAGS, generator=gen) * 2
    mask = torch.arange(n_time)[None, :] < torch.tensor(lengths)[:, None]
    log_z = crf.log_partition(em, mask)
    marg = crf.log_marginals(em, mask).exp()
    best = crf.viterbi(em, mask)
    for b, n in enumerate(lengths):
        paths = valid_paths(n)
        for lab in range(n_labels):
            scores = torch.stack([path_score(crf, em[b], p, lab) for p in paths])
            assert torch.allclose(log_z[b, lab], torch.logsumexp(scores, 0), atol=1e-8)
            probs = (scores - torch.logsumexp(scores, 0)).exp()
            expected = torch.zeros(n, NUM_TAGS)
            for p, prob in zip(paths, probs):
                for t, tag in enumerate(p):
                    expected[t, tag] += prob
            assert torch.allclose(marg[b, :n, lab], expected, atol=1e-8)
            assert torch.allclose(marg[b, :n, lab].sum(-1), torch.ones(n), atol=1e-8)
            decoded = tuple(best[b, :n, lab].tolist())
            assert decoded == paths[int(scores.argmax())]
            assert valid_bioul(decoded)
            assert best[b, n:, lab].eq(O).all()
            # Gold path score and NLL agree with enumeration for a random valid path.
            gold = paths[int(torch.randint(len(paths), (1,), generator=gen))]
            tags = torch.zeros(len(lengths), n_time, n_labels, dtype=torch.long)
            tags[b, :n, lab] = torch.tensor(gold)
            nll = crf.nll(em, tags, mask)[b, lab]
            assert torch.allclose(nll, torch.logsumexp(scores, 0) - path_score(crf, em[b], gold, lab))


@pytest.mark.parametrize("mode", MODES)
def test_padding_does_not_change_results(mode):
    crf, gen = random_crf(2, 7, mode)
    em = torch.randn(1, 4, 2, NUM_TAGS, generator=gen)
    mask = torch.ones(1, 4, dtype=torch.bool)
    padded = torch.cat([em, torch.randn(1, 3, 2, NUM_TAGS, generator=gen) * 50], dim=1)
    pmask = torch.tensor([[True] * 4 + [False] * 3])
    assert torch.allclose(crf.log_partition(em, mask), crf.log_partition(padded, pmask))
    assert torch.equal(crf.viterbi(em, mask), crf.viterbi(padded, pmask)[:, :4])
    assert torch.allclose(crf.log_marginals(em, mask), crf.log_marginals(padded, pmask)[:, :4])


@pytest.mark.parametrize("mode", MODES)
def test_forbidden_paths_never_decoded_even_with_huge_emissions(mode):
    crf = BIOULCRF(1, scan_mode=mode)
    em = torch.zeros(1, 3, 1, NUM_TAGS)
    em[0, 0, 0, I] = 1e6  # start on I is forbidden
    em[0, 1, 0, B] = 1e6  # ending on B (next is O) is forbidden
    tags = crf.viterbi(em, torch.ones(1, 3, dtype=torch.bool))[0, :, 0].tolist()
    assert valid_bioul(tags)


@pytest.mark.parametrize("mode", MODES)
def test_span_log_probs_match_enumeration(mode):
    crf, gen = random_crf(2, 3, mode)
    n = 5
    em = torch.randn(1, n, 2, NUM_TAGS, generator=gen)
    mask = torch.ones(1, n, dtype=torch.bool)
    alphas, betas, log_z = crf.forward_backward(em, mask)
    paths = valid_paths(n)
    spans = [(0, lab, s, e) for lab in range(2) for s in range(n) for e in range(s + 1, n + 1)]
    got = crf.span_log_probs(em, alphas, betas, log_z, torch.tensor(spans)).exp()
    for (_, lab, s, e), p in zip(spans, got):
        scores = torch.stack([path_score(crf, em[0], path, lab) for path in paths])
        probs = (scores - torch.logsumexp(scores, 0)).exp()
        want = [U] if e - s == 1 else [B] + [I] * (e - s - 2) + [L]
        expected = sum(prob for path, prob in zip(paths, probs) if list(path[s:e]) == want)
        assert torch.allclose(p, expected, atol=1e-8), (lab, s, e)


@pytest.mark.parametrize("mode", MODES)
def test_gradcheck_nll_and_marginals(mode):
    crf, gen = random_crf(2, 11, mode)
    em = torch.randn(2, 4, 2, NUM_TAGS, generator=gen, requires_grad=True)
    mask = torch.tensor([[True] * 4, [True, True, False, False]])
    tags = torch.tensor([[[B, O], [L, U], [O, B], [U, L]], [[U, O], [O, O], [O, O], [O, O]]])
    assert torch.autograd.gradcheck(lambda e: crf.nll(e, tags, mask).sum(), (em,))
    assert torch.autograd.gradcheck(lambda e: crf.log_marginals(e, mask)[mask].sum(-2), (em,))
    trans = crf.transitions
    assert torch.autograd.gradcheck(
        lambda tr: _nll_with_transitions(crf, tr, em.detach(), tags, mask), (trans.detach().requires_grad_(),)
    )


def _nll_with_transitions(crf, transitions, em, tags, mask):
    saved = crf.transitions
    try:
        del crf.transitions
        crf.transitions = transitions
        return crf.nll(em, tags, mask).sum()
    finally:
        del crf.transitions
        crf.transitions = saved


def test_blocked_scan_equals_sequential_on_long_ragged_batches():
    """Blocks of ~sqrt(T) steps, some only padding, give the step-by-step results."""
    crf, gen = random_crf(3, 5, "sequential")
    blocked = BIOULCRF(3, scan_mode="blocked")
    blocked.load_state_dict(crf.state_dict())
    lengths = torch.tensor([57, 1, 30, 2, 44])
    n_time = int(lengths.max())
    em = torch.randn(len(lengths), n_time, 3, NUM_TAGS, generator=gen) * 3
    mask = torch.arange(n_time)[None, :] < lengths[:, None]
    for a, b in zip(crf.forward_backward(em, mask), blocked.forward_backward(em, mask)):
        assert torch.allclose(a[torch.isfinite(a)], b[torch.isfinite(a)], atol=1e-9)
    assert torch.equal(crf.viterbi(em, mask), blocked.viterbi(em, mask))
    tags = blocked.viterbi(em, mask)
    em = em.requires_grad_()
    loss = blocked.nll(em, tags, mask).sum() + blocked.log_marginals(em, mask)[mask].exp().sum()
    loss.backward()
    assert torch.isfinite(em.grad).all() and torch.isfinite(blocked.transitions.grad).all()
    assert em.grad[~mask].abs().max() == 0


def test_unknown_scan_mode_is_refused():
    with pytest.raises(ValueError, match="scan_mode"):
        BIOULCRF(2, scan_mode="parallel")
