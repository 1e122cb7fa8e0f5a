"""The speed work on inference must not change what the default (fp32) pipeline predicts.

The windows used to go through the transformer as one batch padded to its longest window;
they now go in groups of equal length (``max_forward_pieces``). A trained pipeline run both
ways, and with groups of one or two windows, gives the same spans and the same confidences
(up to float summation order)."""
import pytest
import spacy

from pipelines import tiny_transformer_nlp
from synthetic import make_corpus, make_examples, train


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("guard")
    spacy.util.fix_random_seed(0)
    nlp = tiny_transformer_nlp(folder)
    train(nlp, make_examples(nlp, 40, seed=5), epochs=8, drop=0.0)
    nlp.to_disk(folder / "model")
    return folder / "model"


def predictions(nlp, texts):
    """Spans of doc.spans["sc"] and their confidences, per text."""
    spans, scores = [], []
    for doc in nlp.pipe(texts, batch_size=8):
        group = doc.spans["sc"]
        spans.append([(s.start_char, s.end_char, s.label_) for s in group])
        scores.append([float(c) for c in group.attrs.get("scores", [])])
    return spans, scores


def test_grouped_windows_predict_what_one_padded_batch_predicts(trained):
    texts = [text for text, _ in make_corpus(24, seed=11)]
    texts += [" ".join(texts[:6]), "", "aspirin", "   "]  # long, empty, one token, spaces
    nlp = spacy.load(trained)
    model = nlp.get_pipe("transformer").model
    assert model.max_forward_pieces == 4096 and model.precision == "fp32"
    model.max_forward_pieces = 10**9  # everything in one call, padded to the longest window
    spans_whole, scores_whole = predictions(nlp, texts)
    assert sum(map(len, spans_whole)) > len(texts) // 2, "the pipeline should find entities"
    for pieces in (4096, 30, 1):
        model.max_forward_pieces = pieces
        spans, scores = predictions(nlp, texts)
        assert spans == spans_whole, pieces
        for got, expected in zip(scores, scores_whole):
            # float32 summation order only: ~1e-6 in the hidden states, amplified up to a few
            # 1e-5 through the CRF's marginals; a wrong window or mask moves them by 1e-2
            assert got == pytest.approx(expected, abs=1e-4), pieces
