"""Character-offset scores: exact, token level, error categories, on hand-counted docs."""
import random

import pytest
import spacy
from spacy.tokens import Doc, Span

from spacy_crf_ner.evaluation import (
    GOLD_CATEGORIES,
    PRED_CATEGORIES,
    error_analysis,
    evaluate_docs,
    exact_scores,
    format_report,
    get_entities,
    prf,
    token_scores,
)

NLP = spacy.blank("en")
TEXT0 = "Aspirin helps breast cancer patients ."
TEXT1 = "Tamoxifen was stopped because of lung pain ."


def make(text, ents, key="sc", nlp=NLP):
    doc = nlp.make_doc(text)
    doc.spans[key] = [doc.char_span(s, e, label=lab, alignment_mode="expand")
                      for s, e, lab in ents]
    return doc


@pytest.fixture()
def corpus():
    """Two docs; every category occurs. Hand counts in the tests below."""
    gold = [
        make(TEXT0, [(0, 7, "DRUG"), (14, 20, "ANATOMY"), (14, 27, "DISEASE")]),
        make(TEXT1, [(0, 9, "DRUG"), (33, 37, "ANATOMY")]),
    ]
    pred = [
        # correct; same offsets as DISEASE with another label; "patients" as DRUG
        make(TEXT0, [(0, 7, "DRUG"), (14, 27, "ANATOMY"), (28, 36, "DRUG")]),
        # "lung pain" as DRUG: overlaps gold ANATOMY "lung", other label, other offsets
        make(TEXT1, [(33, 42, "DRUG")]),
    ]
    return gold, pred


def approx(x):
    return pytest.approx(x, abs=1e-9)


def test_exact_scores_hand_counted(corpus):
    gold, pred = corpus
    scores = exact_scores(gold, pred, "sc", "sc")
    micro = scores["micro"]
    assert (micro["tp"], micro["fp"], micro["fn"]) == (1, 3, 4)
    assert (micro["support"], micro["predicted"]) == (5, 4)
    assert micro["p"] == approx(1 / 4) and micro["r"] == approx(1 / 5)
    assert micro["f"] == approx(2 / 9)
    per = scores["per_label"]
    assert list(per) == ["ANATOMY", "DISEASE", "DRUG"]
    assert (per["DRUG"]["p"], per["DRUG"]["r"]) == (approx(1 / 3), approx(1 / 2))
    assert (per["DRUG"]["support"], per["DRUG"]["predicted"]) == (2, 3)
    assert per["ANATOMY"]["tp"] == 0 and per["ANATOMY"]["f"] == 0
    # DISEASE: gold but no prediction -> precision 0, not 1
    assert per["DISEASE"]["predicted"] == 0
    assert (per["DISEASE"]["p"], per["DISEASE"]["r"], per["DISEASE"]["f"]) == (0, 0, 0)
    assert scores["macro"]["f"] == approx((0 + 0 + 2 * (1 / 3) * (1 / 2) / (5 / 6)) / 3)


def test_empty_predictions_give_zero_precision():
    gold = [make(TEXT0, [(0, 7, "DRUG")])]
    pred = [make(TEXT0, [])]
    micro = exact_scores(gold, pred)["micro"]
    assert (micro["p"], micro["r"], micro["f"]) == (0.0, 0.0, 0.0)
    assert token_scores(gold, pred)["micro"]["p"] == 0.0
    # predictions but no gold: recall 0, not 1
    micro = exact_scores(pred, gold)["micro"]
    assert (micro["p"], micro["r"], micro["f"]) == (0.0, 0.0, 0.0)
    # nothing on either side: perfect agreement by convention
    assert prf(0, 0, 0)["p"] == prf(0, 0, 0)["r"] == prf(0, 0, 0)["f"] == 1.0
    empty = exact_scores(pred, pred)
    assert empty["micro"]["f"] == 1.0 and empty["per_label"] == {}


def test_token_scores_hand_counted(corpus):
    gold, pred = corpus
    scores = token_scores(gold, pred)
    micro = scores["micro"]
    # gold tokens: DRUG {0:0, 1:0}, ANATOMY {0:2, 1:5}, DISEASE {0:2, 0:3}
    # pred tokens: DRUG {0:0, 0:4, 1:5, 1:6}, ANATOMY {0:2, 0:3}
    assert (micro["support"], micro["predicted"], micro["tp"]) == (6, 6, 2)
    assert micro["p"] == approx(1 / 3) and micro["r"] == approx(1 / 3)
    per = scores["per_label"]
    assert (per["DRUG"]["p"], per["DRUG"]["r"]) == (approx(0.25), approx(0.5))
    assert (per["ANATOMY"]["p"], per["ANATOMY"]["r"]) == (approx(0.5), approx(0.5))
    assert per["DISEASE"]["p"] == 0.0 and per["DISEASE"]["support"] == 2


def test_different_tokenizations_are_compared_on_characters():
    gold = [make(TEXT0, [(0, 7, "DRUG"), (14, 27, "DISEASE")])]
    words = ["Asp", "irin", " helps", " bre", "ast", " cancer", " patients", " ."]
    pred_doc = Doc(NLP.vocab, words=words, spaces=[False] * len(words))
    assert pred_doc.text == TEXT0
    pred_doc.spans["sc"] = [
        pred_doc[0:2].char_span(0, 7, label="DRUG"),  # "Aspirin" over two pred tokens: exact
        pred_doc.char_span(3, 7, label="DRUG"),  # "irin": wrong offsets ...
        pred_doc.char_span(17, 27, label="DISEASE"),  # "ast cancer": cuts gold token "breast"
    ]
    pred = [pred_doc]
    exact = exact_scores(gold, pred)["micro"]
    assert (exact["tp"], exact["fp"], exact["fn"]) == (1, 2, 1)
    # ... but on gold tokens, "irin" covers "Aspirin" and "ast cancer" covers both
    # "breast" and "cancer" (partial overlap counts), so token scores are perfect.
    tokens = token_scores(gold, pred)["micro"]
    assert (tokens["tp"], tokens["fp"], tokens["fn"]) == (3, 0, 0)
    errors = error_analysis(gold, pred)
    assert errors["gold"]["correct"] == 1 and errors["gold"]["boundary"] == 1
    assert errors["pred"] == {"correct": 1, "label": 0, "boundary": 2,
                              "label_and_boundary": 0, "spurious": 0}


def test_gold_offsets_inside_tokens_map_to_covering_tokens():
    """A gold entity that ends inside a token (`type Ia` in `type Ia.`) covers that token."""
    gold_doc = NLP.make_doc("It is type Ia.")
    assert [t.text for t in gold_doc] == ["It", "is", "type", "Ia."]
    pred_doc = NLP.make_doc("It is type Ia.")
    pred_doc.spans["sc"] = [Span(pred_doc, 2, 4, label="DISEASE")]

    def gold_getter(doc):
        return [(6, 13, "DISEASE")]

    exact = exact_scores([gold_doc], [pred_doc], gold_getter, "sc")["micro"]
    assert exact["tp"] == 0  # (6, 14) != (6, 13)
    tokens = token_scores([gold_doc], [pred_doc], gold_getter, "sc")["micro"]
    assert tokens["tp"] == 2 and tokens["f"] == 1.0


def test_overlapping_spans_and_duplicates():
    text = "breast cancer"
    gold = [make(text, [(0, 6, "ANATOMY"), (0, 13, "DISEASE"), (0, 13, "DISEASE")])]
    assert len(gold[0].spans["sc"]) == 3
    pred = [make(text, [(0, 6, "ANATOMY"), (0, 13, "DISEASE"), (7, 13, "DISEASE")])]
    exact = exact_scores(gold, pred)["micro"]
    assert (exact["support"], exact["predicted"], exact["tp"]) == (2, 3, 2)  # duplicate once
    errors = error_analysis(gold, pred)
    # (7, 13) DISEASE overlaps the correct gold DISEASE: a boundary error, not spurious
    assert errors["pred"]["boundary"] == 1 and errors["pred"]["spurious"] == 0
    assert errors["gold"]["correct"] == 2
    tokens = token_scores(gold, pred)["micro"]
    assert (tokens["support"], tokens["predicted"], tokens["tp"]) == (3, 3, 3)


def test_error_categories_hand_counted_and_add_up(corpus):
    gold, pred = corpus
    errors = error_analysis(gold, pred)
    assert errors["gold"] == {"correct": 1, "label": 1, "boundary": 1,
                              "label_and_boundary": 1, "missed": 1}
    assert errors["pred"] == {"correct": 1, "label": 1, "boundary": 0,
                              "label_and_boundary": 1, "spurious": 1}
    per = errors["per_label"]
    assert per["ANATOMY"]["gold"]["boundary"] == per["ANATOMY"]["gold"]["label_and_boundary"] == 1
    assert per["ANATOMY"]["pred"]["label"] == 1  # the predicted ANATOMY had DISEASE's offsets
    assert per["DISEASE"]["gold"]["label"] == 1 and sum(per["DISEASE"]["pred"].values()) == 0
    assert per["DRUG"]["pred"] == {"correct": 1, "label": 0, "boundary": 0,
                                   "label_and_boundary": 1, "spurious": 1}
    _check_identities(errors, exact_scores(gold, pred))
    missed = errors["examples"]["missed"][0]
    assert missed["doc"] == 1 and missed["gold"]["text"] == "Tamoxifen" and missed["pred"] == []
    lab = errors["examples"]["label"][0]
    assert lab["gold"]["text"] == "breast cancer" and lab["pred"][0]["label"] == "ANATOMY"
    spurious = errors["examples"]["spurious"][0]
    assert spurious["pred"]["text"] == "patients" and spurious["gold"] == []
    lb = errors["examples"]["label_and_boundary"][0]
    assert lb["gold"]["text"] == "lung" and lb["pred"][0]["text"] == "lung pain"
    assert "TEXT" not in lb["gold"]["context"] and "lung" in lb["gold"]["context"]


def _check_identities(errors, exact):
    micro = exact["micro"]
    assert sum(errors["gold"].values()) == errors["n_gold"] == micro["support"]
    assert sum(errors["pred"].values()) == errors["n_pred"] == micro["predicted"]
    assert errors["gold"]["correct"] == errors["pred"]["correct"] == micro["tp"]
    assert sum(v for k, v in errors["gold"].items() if k != "correct") == micro["fn"]
    assert sum(v for k, v in errors["pred"].items() if k != "correct") == micro["fp"]
    for label, counts in errors["per_label"].items():
        per = exact["per_label"][label]
        assert sum(counts["gold"].values()) == per["support"]
        assert sum(counts["pred"].values()) == per["predicted"]
        assert counts["gold"]["correct"] == counts["pred"]["correct"] == per["tp"]
    for side, categories in (("gold", GOLD_CATEGORIES), ("pred", PRED_CATEGORIES)):
        assert tuple(errors[side]) == categories


def test_identities_hold_on_random_docs():
    rng = random.Random(3)
    text = " ".join(["word"] * 30)
    doc = NLP.make_doc(text)
    starts = [t.idx for t in doc]
    labels = ["A", "B", "C"]

    def random_ents():
        ents = []
        for _ in range(rng.randint(0, 8)):
            a = rng.randrange(len(starts))
            b = min(a + rng.randint(1, 4), len(starts))
            end = starts[b - 1] + 4
            ents.append((starts[a], end, rng.choice(labels)))
        return ents

    for _ in range(30):
        gold = [make(text, random_ents()) for _ in range(3)]
        pred = [make(text, random_ents()) for _ in range(3)]
        _check_identities(error_analysis(gold, pred), exact_scores(gold, pred))


def test_getters_ents_callable_and_missing_key():
    doc = make(TEXT0, [(0, 7, "DRUG"), (14, 20, "ANATOMY")])
    doc.ents = [doc.spans["sc"][0]]
    assert get_entities(doc, "ents") == [(0, 7, "DRUG")]
    assert get_entities(doc, "sc") == [(0, 7, "DRUG"), (14, 20, "ANATOMY")]
    assert get_entities(doc, "nope") == []
    assert get_entities(doc, lambda d: list(d.spans["sc"])[1:]) == [(14, 20, "ANATOMY")]
    scores = exact_scores([doc], [doc], "sc", "ents")["micro"]
    assert (scores["p"], scores["r"]) == (1.0, 0.5)
    with pytest.raises(ValueError):
        get_entities(doc, "")


def test_misaligned_inputs_are_refused():
    a, b = make(TEXT0, []), make(TEXT1, [])
    with pytest.raises(ValueError, match="aligned"):
        exact_scores([a], [a, a])
    with pytest.raises(ValueError, match="texts differ"):
        token_scores([a], [b])


def test_evaluate_docs_and_report(corpus):
    gold, pred = corpus
    results = evaluate_docs(gold, pred, n_examples=1)
    assert results["exact"]["micro"]["tp"] == 1 and results["token"]["micro"]["tp"] == 2
    assert all(len(v) <= 1 for v in results["errors"]["examples"].values())
    table = format_report(results)
    assert "micro" in table and "label_and_boundary" in table and "spurious" in table
    assert "25.00" in table  # micro precision of the exact scores
    assert "missed: doc 1 [0, 9) DRUG 'Tamoxifen'" in table
