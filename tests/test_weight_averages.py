"""Averaged weights (GroupedAdam ``use_averages``): torch weights are averaged too, and what
``spacy train`` evaluates and saves is the average, not the last weights."""
import numpy
import pytest
import spacy
from spacy.tokens import DocBin

from spacy_crf_ner.training import optimizer as optimizer_module
from spacy_crf_ner.training.averaging import decay_at
from spacy_crf_ner.training.optimizer import grouped_adam
from synthetic import make_examples
from test_grouped_optimizer import GROUPED_CONFIG, snapshot, write_filled


def test_averages_follow_the_warm_up_decay_and_use_params_swaps_them_in():
    nlp = spacy.blank("en")
    nlp.add_pipe("crf_ner")
    examples = make_examples(nlp, 16)
    optimizer = grouped_adam(groups={"all": {"pattern": "", "learn_rate": 3e-3}},
                             L2=0.0, use_averages=True, average_decay=0.9999)
    nlp.initialize(lambda: examples, sgd=optimizer)
    optimizer.bind(nlp)
    expected = snapshot(nlp)  # the average starts at the initial weights
    torch_keys = [k for k in optimizer.averages if isinstance(k, str)]
    assert torch_keys and all(k.startswith("pytorch_") for k in torch_keys)
    for step in range(1, 6):
        nlp.update(examples, sgd=optimizer)
        weights = snapshot(nlp)
        keep = decay_at(step, 0.9999)
        expected = {p: keep * expected[p] + (1 - keep) * weights[p] for p in weights}
    last = snapshot(nlp)
    with nlp.use_params(optimizer.averages):
        averaged = snapshot(nlp)
    assert set(averaged) == set(last)
    for path in last:
        numpy.testing.assert_allclose(averaged[path], expected[path], rtol=1e-5, atol=1e-6,
                                      err_msg=path)
    moved = [p for p in last if not numpy.allclose(averaged[p], last[p], atol=1e-6)]
    # every trained weight differs from its average: torch's (text CNN, CRF) and Thinc's
    assert any("crf_emissions" in p for p in moved) and any("crf_text_cnn" in p for p in moved)
    assert any("crf_" not in p.split("/")[1] for p in moved)
    back = snapshot(nlp)  # and the last weights come back after the block
    assert all(numpy.array_equal(back[p], last[p]) for p in last)


def test_average_decay_is_checked():
    with pytest.raises(ValueError, match="average_decay"):
        grouped_adam(groups={"all": {"pattern": "", "learn_rate": 1.0}}, use_averages=True,
                     average_decay=1.0)


@pytest.mark.slow
def test_spacy_train_evaluates_and_saves_the_averages(tmp_path, monkeypatch):
    from spacy import util
    from spacy.training.initialize import init_nlp
    from spacy.training.loop import train as train_nlp

    created = []
    start = optimizer_module.GroupedOptimizer.start_averages

    def spy(self, nlp):
        start(self, nlp)
        if self.averages is not None:
            created.append(self.averages)

    monkeypatch.setattr(optimizer_module.GroupedOptimizer, "start_averages", spy)
    blank = spacy.blank("en")
    db = DocBin(store_user_data=True)
    for eg in make_examples(blank, 40, seed=4):
        db.add(eg.reference)
    db.to_disk(tmp_path / "train.spacy")
    write_filled(GROUPED_CONFIG, tmp_path / "config.cfg")
    config = util.load_config(tmp_path / "config.cfg", interpolate=False, overrides={
        "paths.train": str(tmp_path / "train.spacy"), "paths.dev": str(tmp_path / "train.spacy"),
        "training.optimizer.use_averages": True, "training.max_steps": 30,
        "training.eval_frequency": 10})
    nlp = init_nlp(config, use_gpu=-1)
    (tmp_path / "out").mkdir()
    nlp, _ = train_nlp(nlp, tmp_path / "out", use_gpu=-1)
    assert len(created) == 1  # the loop's optimizer, not nlp.initialize's
    last = snapshot(nlp)  # spaCy leaves the last weights in memory
    with nlp.use_params(created[0]):
        averaged = snapshot(nlp)
    saved = snapshot(spacy.load(tmp_path / "out" / "model-last"))
    assert set(saved) == set(last)
    for path in saved:
        numpy.testing.assert_allclose(saved[path], averaged[path], rtol=1e-6, atol=1e-7,
                                      err_msg=path)
    differ = [p for p in saved if not numpy.allclose(saved[p], last[p], atol=1e-6)]
    assert any("crf_emissions" in p for p in differ)
    # the averaged model learned: its F1 on the training docs is far above chance
    scores = spacy.load(tmp_path / "out" / "model-last").evaluate(
        list(make_examples(blank, 40, seed=4)))
    assert scores["spans_sc_f"] > 0.5
