"""Training on long documents (``spacy_crf_ner.Corpus.v1``): parts of at most ``max_length``
tokens, no gold span lost or moved, and a step's activations bounded by the batch size."""
import random

import pytest
import spacy
import torch
from spacy.tokens import DocBin
from spacy.training import Example
from spacy.util import registry

from spacy_crf_ner.data.training_corpus import SplitCorpus
from pipelines import tiny_transformer_nlp
from synthetic import make_corpus, make_examples


def long_reference(nlp, n_texts: int, seed: int = 0, crossing: bool = False):
    """One document made of ``n_texts`` synthetic notes laid end to end, with their spans;
    ``crossing``: also a span over each sentence end between the notes 3k and 3k+1."""
    texts, spans, offset = [], [], 0
    for text, ents in make_corpus(n_texts, seed):
        texts.append(text)
        spans += [(s + offset, e + offset, label) for s, e, label in ents]
        offset += len(text) + 1
    text = " ".join(texts)
    doc = nlp.make_doc(text)
    if crossing:  # "... daily . The patient ..." as one span, across the cut points
        starts = [0]
        for t in texts[:-1]:
            starts.append(starts[-1] + len(t) + 1)
        for k in range(3, len(texts), 3):
            end_of_prev = starts[k] - 1
            spans.append((end_of_prev - 1, starts[k] + 3, "CROSS"))
    doc.spans["sc"] = [doc.char_span(s, e, label=lab, alignment_mode="expand")
                       for s, e, lab in spans]
    doc.ents = [s for s in doc.spans["sc"]
                if s.label_ not in ("DISEASE", "CROSS")]
    return doc


def char_spans(doc, offset=0):
    return {(s.start_char + offset, s.end_char + offset, s.label_) for s in doc.spans["sc"]}


def read_parts(tmp_path, nlp, docs, max_length):
    db = DocBin(store_user_data=True)
    for doc in docs:
        db.add(doc)
    db.to_disk(tmp_path / "train.spacy")
    corpus = SplitCorpus(tmp_path / "train.spacy", max_length=max_length)
    return corpus, list(corpus(nlp))


@pytest.mark.parametrize("crossing", [False, True])
def test_split_keeps_every_span_at_its_characters(tmp_path, crossing, capsys):
    nlp = spacy.blank("en")
    doc = long_reference(nlp, 60, crossing=crossing)
    short = make_examples(nlp, 5, seed=3)
    corpus, examples = read_parts(tmp_path, nlp, [doc] + [eg.reference for eg in short], 40)
    parts = [eg.reference for eg in examples[: len(examples) - 5]]
    assert len(parts) >= len(doc) // 40
    # the parts are the document, in order: their texts make it up again
    assert "".join(p.text_with_ws for p in parts) == doc.text_with_ws
    offsets, pos = [], 0
    for part in parts:
        offsets.append(pos)
        pos += len(part.text_with_ws)
    found = set().union(*(char_spans(p, o) for p, o in zip(parts, offsets)))
    assert found == char_spans(doc)
    assert sum(len(p.spans["sc"]) for p in parts) == len(doc.spans["sc"])
    assert sum(len(p.ents) for p in parts) == len(doc.ents)
    stats = corpus.stats
    assert (stats.docs, stats.docs_split, stats.parts) == (6, 1, len(parts))
    longer = [p for p in parts if len(p) > 40]
    assert stats.over_length == len(longer)
    if not crossing:  # sentence ends everywhere: every part within the limit
        assert not longer
    # each predicted doc is the part's text, tokenized by the pipeline
    assert all(eg.predicted.text == eg.reference.text for eg in examples)
    assert "1 of 6 documents longer than 40 tokens split" in capsys.readouterr().out
    list(SplitCorpus(tmp_path / "train.spacy", max_length=40)(nlp))  # spacy train's 2nd read
    assert "split" not in capsys.readouterr().out  # said once per process
    # short documents and max_length = 0 are untouched
    assert [eg.reference.text for eg in examples[-5:]] == [eg.reference.text for eg in short]
    whole = list(SplitCorpus(tmp_path / "train.spacy", max_length=0)(nlp))
    assert whole[0].reference.text == doc.text and len(whole) == 6


def test_a_span_over_every_boundary_is_kept_in_a_longer_part_and_counted(tmp_path):
    nlp = spacy.blank("en")
    doc = long_reference(nlp, 6)
    doc.spans["sc"] = list(doc.spans["sc"]) + [doc[2:len(doc) - 2]]  # nearly all of it
    doc.spans["sc"][-1].label_ = "ALL"
    corpus, examples = read_parts(tmp_path, nlp, [doc], 10)
    assert char_spans(doc) == set().union(*(char_spans(eg.reference, doc[0].idx if i == 0 else
                                                       _offset(doc, eg.reference))
                                            for i, eg in enumerate(examples)))
    assert corpus.stats.over_length >= 1
    assert corpus.stats.longest_part >= len(doc) - 4


def _offset(doc, part):
    return doc.text.index(part.text)


def test_bad_settings_are_clear_errors(tmp_path):
    DocBin().to_disk(tmp_path / "empty.spacy")
    with pytest.raises(ValueError, match="max_length"):
        SplitCorpus(tmp_path / "empty.spacy", max_length=-1)
    with pytest.raises(ValueError, match="not a valid regular expression"):
        SplitCorpus(tmp_path / "empty.spacy", max_length=10, split_regex="(")
    reader = registry.readers.get("spacy_crf_ner.Corpus.v1")
    with pytest.raises(ValueError, match="needs a path"):
        reader(None)


def saved_bytes_per_step(nlp, batches, optimizer):
    """Bytes of the tensors each update keeps for its backward pass (the activations)."""
    per_step = []
    for batch in batches:
        total = [0]

        def pack(tensor):
            total[0] += tensor.numel() * tensor.element_size()
            return tensor

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            nlp.update(batch, sgd=optimizer, drop=0.0)
        per_step.append(total[0])
    return per_step


@pytest.mark.slow
def test_a_document_ten_times_the_batch_trains_within_the_bound(tmp_path):
    """The step over a document 10x the batch size keeps no more activations than a step of
    short documents (x1.5: the batcher's tolerance and part lengths), once split; whole, it
    keeps several times more."""
    nlp = tiny_transformer_nlp(tmp_path)
    size = 60
    batcher = registry.batchers.get("spacy.batch_by_words.v1")(
        size=size, tolerance=0.2, discard_oversize=False)
    short = make_examples(nlp, 40, seed=1)
    optimizer = nlp.initialize(lambda: short)
    long_doc = long_reference(nlp, 70, seed=2)
    assert len(long_doc) >= 10 * size
    random.Random(0).shuffle(short)
    short_steps = saved_bytes_per_step(nlp, list(batcher(short)), optimizer)
    corpus, parts = read_parts(tmp_path, nlp, [long_doc], size)
    split_steps = saved_bytes_per_step(nlp, list(batcher(parts)), optimizer)
    whole = [Example(nlp.make_doc(long_doc.text), long_doc)]
    whole_steps = saved_bytes_per_step(nlp, list(batcher(whole)), optimizer)
    assert len(split_steps) >= 8 and len(whole_steps) == 1
    assert max(split_steps) <= 1.5 * max(short_steps)
    assert whole_steps[0] >= 4 * max(short_steps)
    # and it learns from the parts: loss on them goes down
    losses = []
    for _ in range(6):
        step_losses = {}
        for batch in batcher(parts):
            nlp.update(batch, sgd=optimizer, losses=step_losses)
        losses.append(step_losses["crf_ner"])
    assert losses[-1] < 0.5 * losses[0]
