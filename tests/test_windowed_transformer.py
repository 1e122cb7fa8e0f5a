"""``spacy_crf_ner.WindowedTransformerModel.v1``: one tokenization per document, and the same
windows, word pieces, alignment and hidden states as spacy-transformers' own model with
``spacy_crf_ner.wordpiece_strided_spans.v1``."""
import pickle
from types import SimpleNamespace

import numpy
import pytest
import spacy
from spacy.util import registry
from thinc.util import to_numpy

from synthetic import ANATOMY, DISEASE_HEAD, DRUG, TEMPLATES, make_examples
from tiny_transformer import build_tiny_bert

TEXTS = [
    "The patient has breast cancer and takes aspirin daily .",
    "",
    "History of  lung carcinoma ,\n\ntreated with cisplatin in 2019 . Known skin lesion ;",
    "   ",
    "Zxqvwplmnbtrewqasdfghjkl was stopped because of liver pain . Élodie reports 肺 pain .",
    " ".join(TEMPLATES * 3).replace("{", "").replace("}", ""),
]


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    words = " ".join(TEMPLATES + ANATOMY + DISEASE_HEAD + DRUG).split()
    return str(build_tiny_bert(tmp_path_factory.mktemp("bert"), words))


def build(kind: str, name: str, window: int = 12, stride: int = 8):
    if kind == "windowed":
        make = registry.architectures.get("spacy_crf_ner.WindowedTransformerModel.v1")
        return make(name, window=window, stride=stride)
    make = registry.architectures.get("spacy-transformers.TransformerModel.v3")
    get_spans = registry.span_getters.get("spacy_crf_ner.wordpiece_strided_spans.v1")
    return make(name, get_spans(name, window=window, stride=stride), {"use_fast": True})


def predict(model, nlp, texts):
    docs = [nlp.make_doc(t) for t in texts]
    model.initialize(X=[d for d in docs if len(d)][:2])
    return docs, model.predict(docs)


def assert_same_pieces_and_doc_data(got, expected):
    """Same hidden states on every word piece (padding is read by no token, and the grouped
    forward leaves it at 0), and the same per-doc alignment and pieces for the listeners."""
    real = numpy.asarray(to_numpy(expected.wordpieces.attention_mask), dtype=bool)
    numpy.testing.assert_allclose(
        to_numpy(got.model_output.last_hidden_state.detach().cpu())[real],
        to_numpy(expected.model_output.last_hidden_state.detach().cpu())[real],
        rtol=1e-5, atol=1e-5)
    for a, b in zip(got.doc_data, expected.doc_data):
        numpy.testing.assert_array_equal(a.align.data, b.align.data)
        numpy.testing.assert_array_equal(a.align.lengths, b.align.lengths)
        assert a.wordpieces.strings == b.wordpieces.strings


def test_same_windows_pieces_alignment_and_outputs_as_spacy_transformers(bert):
    nlp = spacy.blank("en")
    _, ours = predict(build("windowed", bert), nlp, TEXTS)
    _, theirs = predict(build("span_getter", bert), nlp, TEXTS)
    assert [[(s.start, s.end) for s in d] for d in ours.spans] == \
        [[(s.start, s.end) for s in d] for d in theirs.spans]
    assert sum(len(d) for d in ours.spans) > len(TEXTS)  # several windows per long doc
    ow, tw = ours.wordpieces, theirs.wordpieces
    assert ow.strings == tw.strings and ow.lengths == tw.lengths
    numpy.testing.assert_array_equal(to_numpy(ow.input_ids), to_numpy(tw.input_ids))
    numpy.testing.assert_array_equal(to_numpy(ow.attention_mask), to_numpy(tw.attention_mask))
    numpy.testing.assert_array_equal(to_numpy(ow.token_type_ids), to_numpy(tw.token_type_ids))
    numpy.testing.assert_array_equal(ours.align.lengths, theirs.align.lengths)
    numpy.testing.assert_array_equal(to_numpy(ours.align.data), to_numpy(theirs.align.data))
    assert (ours.align.lengths == 0).sum() > 0  # whitespace tokens feed on nothing
    assert_same_pieces_and_doc_data(ours, theirs)


def test_windows_respect_the_budget_and_every_piece_feeds_its_own_token(bert):
    nlp = spacy.blank("en")
    model = build("windowed", bert, window=10, stride=6)
    docs, _ = predict(model, nlp, TEXTS[:1])
    windows = model.encode_windows([nlp.make_doc(t) for t in TEXTS])
    flat_tokens = [t for t in TEXTS for t in nlp.make_doc(t)]
    starts = numpy.concatenate([[0], numpy.cumsum(windows.align_lengths)])
    strings = [s for row in windows.strings for s in row]
    for i, token in enumerate(flat_tokens):
        pieces = [strings[j] for j in windows.align_data[starts[i] : starts[i + 1]]]
        if token.is_space:
            assert pieces == []
        else:  # each window holding the token gives it its pieces (here: 1 or 2 windows)
            assert pieces and all(p.lstrip("#") in token.lower_ or p == "[UNK]" for p in pieces)
    for ranges in windows.ranges:
        for (s1, e1), (s2, e2) in zip(ranges, ranges[1:]):
            assert s1 < s2 <= e1 <= e2
    long_token = len("Zxqvwplmnbtrewqasdfghjkl")
    for length in windows.lengths:
        assert length - 2 <= 10 or length - 2 == long_token  # one over-long token is kept whole


def test_a_token_longer_than_the_model_is_cut_and_still_aligned(bert):
    nlp = spacy.blank("en")
    model = build("windowed", bert, window=10, stride=6)
    predict(model, nlp, TEXTS[:1])
    model.tokenizer.model_max_length = 16
    model._window_encoder = (None, None)  # re-read the limit
    windows = model.encode_windows([nlp.make_doc("Zxqvwplmnbtrewqasdfghjkl pain .")])
    assert windows.input_ids.shape[1] == 16 and windows.lengths[0] == 16
    assert list(windows.align_lengths[:1]) == [14]


def test_copy_pickle_and_save_keep_the_one_pass_forward(bert, tmp_path):
    nlp = spacy.blank("en")
    model = build("windowed", bert)
    docs, before = predict(model, nlp, TEXTS)
    expected = to_numpy(before.model_output.last_hidden_state.detach().cpu())
    for other in (model.copy(), pickle.loads(pickle.dumps(model))):
        assert type(other).__name__ == "WindowedTransformerModel"
        out = other.predict(docs)
        numpy.testing.assert_allclose(
            to_numpy(out.model_output.last_hidden_state.detach().cpu()), expected, atol=1e-6)
    reloaded = build("windowed", bert).from_bytes(model.to_bytes())
    assert reloaded.attrs["window"] == 12 and reloaded.attrs["stride"] == 8
    numpy.testing.assert_allclose(
        to_numpy(reloaded.predict(docs).model_output.last_hidden_state.detach().cpu()),
        expected, atol=1e-6)


def test_pipeline_trains_and_listener_gradients_reach_the_transformer(tmp_path):
    from pipelines import tiny_transformer_nlp

    nlp = tiny_transformer_nlp(tmp_path)
    examples = make_examples(nlp, 40, seed=5)
    optimizer = nlp.initialize(lambda: examples)
    trf = nlp.get_pipe("transformer").model
    assert type(trf).__name__ == "WindowedTransformerModel"
    before = {n: p.detach().clone() for n, p in trf.transformer.named_parameters()}
    losses = {}
    for i in range(0, len(examples), 8):
        nlp.update(examples[i : i + 8], sgd=optimizer, losses=losses, drop=0.0)
    assert losses["crf_ner"] > 0
    moved = [n for n, p in trf.transformer.named_parameters()
             if not bool((p.detach() == before[n]).all())]
    assert len(moved) > len(before) // 2  # the CRF loss fine-tunes the transformer


def test_bad_settings_are_clear_errors(bert):
    with pytest.raises(ValueError, match="stride"):
        build("windowed", bert, window=8, stride=12)
    from transformers import BertTokenizer

    from spacy_crf_ner.transformer.encoding import WindowEncoder

    with pytest.raises(ValueError, match="fast"):
        WindowEncoder(BertTokenizer.from_pretrained(bert))
    model = build("windowed", bert)
    with pytest.raises(ValueError, match="not initialized"):
        model.predict([spacy.blank("en")("some text")])


def test_empty_batches(bert):
    nlp = spacy.blank("en")
    model = build("windowed", bert)
    predict(model, nlp, TEXTS[:1])
    out = model.predict([nlp.make_doc(""), nlp.make_doc("")])
    assert [len(d) for d in out.spans] == [0, 0]
    assert model.predict([]).spans == []


def build_tiny_roberta(path) -> str:
    """A tiny RoBERTa with a byte-level BPE trained on the synthetic texts: another template
    (<s> ... </s>) and pieces that carry the space before them."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaConfig, RobertaModel, RobertaTokenizerFast

    bpe = ByteLevelBPETokenizer()
    corpus = [" ".join(TEMPLATES).replace("{", "").replace("}", "")] + ANATOMY + DRUG
    bpe.train_from_iterator(corpus * 5, vocab_size=400, min_frequency=1,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    path.mkdir(parents=True, exist_ok=True)
    bpe.save_model(str(path))
    tokenizer = RobertaTokenizerFast(vocab_file=str(path / "vocab.json"),
                                     merges_file=str(path / "merges.txt"), model_max_length=512)
    tokenizer.save_pretrained(str(path))
    config = RobertaConfig(vocab_size=tokenizer.vocab_size + 5, hidden_size=32,
                           num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                           max_position_embeddings=520, pad_token_id=tokenizer.pad_token_id)
    RobertaModel(config).save_pretrained(str(path))
    return str(path)


def test_other_templates_and_byte_level_pieces(tmp_path):
    name = build_tiny_roberta(tmp_path / "roberta")
    nlp = spacy.blank("en")
    model = build("windowed", name, window=9, stride=6)
    texts = [TEXTS[2], TEXTS[5]]
    docs, out = predict(model, nlp, texts)
    windows = model.encode_windows(docs)
    assert all(row[0] == "<s>" and row[length - 1] == "</s>"
               for row, length in zip(windows.strings, windows.lengths))
    assert max(windows.lengths) <= 9 + 2
    starts = numpy.concatenate([[0], numpy.cumsum(windows.align_lengths)])
    strings = [s for row in windows.strings for s in row]
    tokens = [t for d in docs for t in d]
    for i, token in enumerate(tokens):
        pieces = [strings[j].replace("Ġ", "").replace("Ċ", "") for j in
                  windows.align_data[starts[i] : starts[i + 1]]]
        if token.is_space:
            assert all(p == "" for p in pieces)
        else:
            assert pieces and all(p in token.text for p in pieces), (token.text, pieces)
    assert out.model_output.last_hidden_state.shape[:2] == windows.input_ids.shape


def test_two_processes_give_the_same_hidden_states(tmp_path):
    from pipelines import tiny_transformer_nlp

    nlp = tiny_transformer_nlp(tmp_path)
    examples = make_examples(nlp, 8, seed=2)
    nlp.initialize(lambda: examples)
    texts = [eg.reference.text for eg in examples] + TEXTS
    single = [d._.trf_data for d in nlp.pipe(texts, batch_size=4)]
    multi = [d._.trf_data for d in nlp.pipe(texts, batch_size=4, n_process=2)]
    assert len(multi) == len(single)
    for a, b in zip(single, multi):
        numpy.testing.assert_array_equal(a.align.lengths, b.align.lengths)
        if a.model_output:
            numpy.testing.assert_allclose(to_numpy(a.model_output.last_hidden_state),
                                          to_numpy(b.model_output.last_hidden_state), atol=1e-5)


def test_training_matches_spacy_transformers_model_step_for_step(tmp_path):
    """Same forward, same backward, same draws from Python's `random` (spaCy's shuffling)
    and from torch's dropout: training under either model ends with the same weights.
    (Our default training dropout draws its masks from other random numbers, so the
    windowed model keeps torch's here: ``fast_cpu_dropout = false``.)"""
    import random

    from spacy.util import fix_random_seed

    from pipelines import tiny_transformer_nlp

    weights = {}
    for kind in ("windowed", "span_getter"):
        fix_random_seed(0)
        settings = {"fast_cpu_dropout": False} if kind == "windowed" else {}
        nlp = tiny_transformer_nlp(tmp_path / kind, kind, transformer_settings=settings)
        examples = make_examples(nlp, 24, seed=1)
        optimizer = nlp.initialize(lambda: examples)
        for _ in range(2):
            random.shuffle(examples)
            for i in range(0, len(examples), 6):
                nlp.update(examples[i : i + 6], sgd=optimizer, drop=0.1)
        weights[kind] = [to_numpy(p.detach().cpu()) for p in
                         nlp.get_pipe("transformer").model.transformer.parameters()]
        weights[kind] += [to_numpy(p.detach().cpu()) for p in
                          nlp.get_pipe("crf_ner").head.parameters()]
    assert len(weights["windowed"]) == len(weights["span_getter"]) > 10
    for a, b in zip(weights["windowed"], weights["span_getter"]):
        numpy.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def _grads_after_backprop(model, docs, d_hidden):
    """Parameter gradients of the Hugging Face model after one backprop of ``d_hidden``."""
    from transformers.utils import ModelOutput

    hf = model.transformer
    hf.zero_grad(set_to_none=True)
    output, backprop = model.begin_update(docs)
    backprop(SimpleNamespace(model_output=ModelOutput(last_hidden_state=d_hidden)))
    return output, {n: p.grad.detach().clone() for n, p in hf.named_parameters()
                    if p.grad is not None}


def test_windows_grouped_by_length_give_the_same_outputs_and_gradients(bert):
    """Groups of equal-length windows, each padded to its own width, are the whole padded
    batch computed without the padding: same hidden states, same per-doc data, same
    gradients (dropout off, so that both runs compute the same function)."""
    import torch

    nlp = spacy.blank("en")
    no_dropout = {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}
    make = registry.architectures.get("spacy_crf_ner.WindowedTransformerModel.v1")
    whole = make(bert, window=12, stride=8, transformer_config=dict(no_dropout))
    grouped = make(bert, window=12, stride=8, transformer_config=dict(no_dropout),
                   max_forward_pieces=30)  # two windows of 14 pieces per group
    docs, expected = predict(whole, nlp, TEXTS)
    _, got = predict(grouped, nlp, TEXTS)
    from spacy_crf_ner.transformer.windows import forward_chunks

    assert len(forward_chunks(got.wordpieces.lengths, 30)) > 3
    assert len(set(got.wordpieces.lengths)) > 2  # short last windows, not only full ones
    assert_same_pieces_and_doc_data(got, expected)
    for a, b in zip(got.doc_data, expected.doc_data):
        if a.model_output:
            read = a.align.data.ravel()  # what the listeners read
            numpy.testing.assert_allclose(
                a.model_output.last_hidden_state.reshape(
                    -1, a.model_output.last_hidden_state.shape[-1])[read],
                b.model_output.last_hidden_state.reshape(
                    -1, b.model_output.last_hidden_state.shape[-1])[read], atol=1e-5)
    d_hidden = torch.randn(expected.model_output.last_hidden_state.shape,
                           generator=torch.Generator().manual_seed(0))
    for row, length in enumerate(expected.wordpieces.lengths):
        d_hidden[row, length:] = 0.0  # padding has no gradient
    _, grads_whole = _grads_after_backprop(whole, docs, d_hidden)
    _, grads_grouped = _grads_after_backprop(grouped, docs, d_hidden)
    assert grads_whole.keys() == grads_grouped.keys() and len(grads_whole) > 10
    for name, grad in grads_whole.items():
        # Sums over other groupings of the windows: float reordering, relative to the scale.
        scale = max(1.0, float(grad.abs().max()))
        numpy.testing.assert_allclose(grads_grouped[name].numpy(), grad.numpy(),
                                      rtol=1e-4, atol=1e-5 * scale, err_msg=name)


def test_reduced_precision_copies_predict_close_and_never_touch_the_float32_weights(bert):
    import torch

    nlp = spacy.blank("en")
    make = registry.architectures.get("spacy_crf_ner.WindowedTransformerModel.v1")
    exact = make(bert, window=12, stride=8)
    docs, expected = predict(exact, nlp, TEXTS)
    reference = to_numpy(expected.model_output.last_hidden_state.detach().cpu())
    saved = exact.to_bytes()
    for precision in ("int8", "bf16"):
        model = make(bert, window=12, stride=8, precision=precision).from_bytes(saved)
        out = model.predict(docs).model_output.last_hidden_state
        assert str(out.dtype) == "torch.float32"
        got = to_numpy(out.detach().cpu())
        real = numpy.asarray(expected.wordpieces.attention_mask, dtype=bool)
        assert not numpy.array_equal(got[real], reference[real])  # really another precision
        cosine = (got[real] * reference[real]).sum(-1) / (
            numpy.linalg.norm(got[real], axis=-1) * numpy.linalg.norm(reference[real], axis=-1))
        assert cosine.min() > 0.95, (precision, cosine.min())
        # The model's own weights stay float32 and identical: a reload at fp32 is exact.
        weights = model.transformer.state_dict()
        for name, tensor in exact.transformer.state_dict().items():
            assert weights[name].dtype == tensor.dtype and torch.equal(weights[name], tensor)
        back = make(bert, window=12, stride=8).from_bytes(model.to_bytes())
        numpy.testing.assert_array_equal(
            to_numpy(back.predict(docs).model_output.last_hidden_state.detach().cpu()),
            reference)
    with pytest.raises(ValueError, match="precision"):
        make(bert, window=12, stride=8, precision="int4")


def test_a_training_step_renews_the_reduced_precision_copy(bert):
    import torch

    nlp = spacy.blank("en")
    make = registry.architectures.get("spacy_crf_ner.WindowedTransformerModel.v1")
    model = make(bert, window=12, stride=8, precision="int8")
    docs, first = predict(model, nlp, TEXTS)
    output, backprop = model.begin_update(docs)  # a training forward: float32, dropout on
    with torch.no_grad():  # what an optimizer step does to the float32 weights
        for p in model.transformer.parameters():
            p.mul_(1.5)
    after = model.predict(docs).model_output.last_hidden_state
    assert not torch.allclose(after, first.model_output.last_hidden_state, atol=1e-3)


def test_lean_loading_gives_the_same_weights_as_spacy_transformers(bert):
    """Our shim loads the bytes spacy-transformers' HFShim writes into the very same tensors,
    and the bytes it writes load with theirs."""
    import torch
    from spacy_transformers.layers.hf_shim import HFShim

    from spacy_crf_ner.transformer.model_class import LeanHFShim

    nlp = spacy.blank("en")
    make = registry.architectures.get("spacy_crf_ner.WindowedTransformerModel.v1")
    model = make(bert, window=12, stride=8)
    docs, expected = predict(model, nlp, TEXTS)
    saved = model.to_bytes()
    lean = make(bert, window=12, stride=8).from_bytes(saved)
    assert type(lean.layers[0].shims[0]) is LeanHFShim
    theirs = make(bert, window=12, stride=8)
    theirs.layers[0].shims[0].__class__ = HFShim
    theirs.from_bytes(saved)
    a, b = lean.transformer.state_dict(), theirs.transformer.state_dict()
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    for loaded in (lean, theirs):
        numpy.testing.assert_array_equal(
            to_numpy(loaded.predict(docs).model_output.last_hidden_state.detach().cpu()),
            to_numpy(expected.model_output.last_hidden_state.detach().cpu()))
    assert type(pickle.loads(pickle.dumps(lean)).layers[0].shims[0]) is LeanHFShim
    assert type(lean.copy().layers[0].shims[0]) is LeanHFShim
