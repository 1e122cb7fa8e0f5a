"""Per-group learning rates (GroupedAdam), the JSONL training log and its plots."""
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy
import pytest
import spacy
from spacy.tokens import DocBin
from thinc.api import Config
from thinc.util import to_numpy

from spacy_crf_ner.training.optimizer import GroupedOptimizer, grouped_adam, parameter_paths
from synthetic import make_examples

ROOT = Path(__file__).resolve().parent.parent


def snapshot(nlp):
    """path -> copy of the parameter's values."""
    values = {}
    for comp_name, proc in nlp.components:
        for node in proc.model.walk():
            for name in node.param_names:
                if node.has_param(name):
                    values[f"{comp_name}/{node.name}/{name}"] = to_numpy(node.get_param(name)).copy()
            for shim in node.shims:
                for name, param in shim._model.named_parameters():
                    values[f"{comp_name}/{node.name}/{name}"] = param.detach().cpu().numpy().copy()
    return values


def test_each_group_moves_at_its_own_rate_and_frozen_does_not_move():
    nlp = spacy.blank("en")
    nlp.add_pipe("crf_ner")
    examples = make_examples(nlp, 16)
    optimizer = grouped_adam(
        groups={
            "head": {"pattern": "/crf_emissions/", "learn_rate": 1e-3},
            "cnn": {"pattern": "/crf_text_cnn/", "frozen": True},
            "rest": {"pattern": "", "learn_rate": 1e-4},
        },
        L2=0.0,
    )
    nlp.initialize(lambda: examples, sgd=optimizer)
    summary = optimizer.bind(nlp)
    assert all(row["tensors"] > 0 for row in summary.values())
    paths = [path for path, _ in parameter_paths(nlp).values()]
    assert "crf_ner/crf_emissions/crf.transitions" in paths
    before = snapshot(nlp)
    nlp.update(examples, sgd=optimizer)
    after = snapshot(nlp)

    def steps(selector):
        moved = [numpy.abs(after[p] - before[p]).ravel() for p in before if selector(p)]
        moved = numpy.concatenate(moved)
        return moved[moved > 0], moved

    head, _ = steps(lambda p: "/crf_emissions/" in p)
    rest, _ = steps(lambda p: "/crf_emissions/" not in p and "/crf_text_cnn/" not in p)
    _, cnn_all = steps(lambda p: "/crf_text_cnn/" in p)
    assert cnn_all.max() == 0.0
    # Adam's first bias-corrected step is lr * g / (|g| + eps): about lr for every weight
    # whose gradient is not tiny, whatever the gradient's scale.
    assert 0.5e-3 < numpy.median(head) <= 1.0001e-3
    assert 0.5e-4 < numpy.median(rest) <= 1.0001e-4
    assert 7 < numpy.median(head) / numpy.median(rest) < 13


def test_pattern_that_matches_nothing_is_a_clear_error():
    nlp = spacy.blank("en")
    nlp.add_pipe("crf_ner")
    examples = make_examples(nlp, 4)
    optimizer = grouped_adam(groups={"typo": {"pattern": "^transfomer/", "learn_rate": 1e-4},
                                     "rest": {"pattern": "", "learn_rate": 1e-3}})
    nlp.initialize(lambda: examples, sgd=optimizer)
    with pytest.raises(ValueError, match="'typo'.*match no parameter"):
        optimizer.bind(nlp)
    no_catch_all = grouped_adam(groups={"head": {"pattern": "crf_emissions", "learn_rate": 1e-3}})
    with pytest.raises(ValueError, match="match no optimizer group.*catch-all"):
        no_catch_all.bind(nlp)
    with pytest.raises(ValueError, match="needs a 'pattern'"):
        grouped_adam(groups={"x": {"learn_rate": 1.0}})


@pytest.mark.parametrize("scope", ["tensor", "global"])
def test_fused_update_is_thincs_adam(scope):
    """torch's fused AdamW kernel (the default for float32 CPU arrays) makes Thinc's update:
    moments, bias correction, eps, decoupled weight decay and clipping, step after step.
    One parameter has gradients far below eps, where eps's scaling decides the step."""
    rng = numpy.random.default_rng(0)
    start = {"matrix": rng.standard_normal((30, 7)), "vector": rng.standard_normal(500),
             "tiny": rng.standard_normal(9)}
    scales = {"matrix": 1.0, "vector": 0.01, "tiny": 1e-9}
    runs = {}
    for fused in (True, False):
        optimizer = grouped_adam(groups={"all": {"pattern": "", "learn_rate": 1e-3}},
                                 L2=0.01, grad_clip=0.5, grad_clip_scope=scope, fused=fused)
        optimizer.bind_paths({(1, k): (k, v.size) for k, v in start.items()}, verbose=False,
                             grads={(1, k): (lambda: None) for k in start})
        assert (optimizer.fused_adamw is not None) == fused
        weights = {k: v.astype("float32") for k, v in start.items()}
        grads_rng = numpy.random.default_rng(1)
        for step in range(12):
            for k in weights:
                big = 30.0 if step % 3 == 0 else 1.0  # clipping on some steps only
                grad = (grads_rng.standard_normal(weights[k].shape) * scales[k] * big
                        ).astype("float32")
                weights[k], grad = optimizer((1, k), weights[k], grad)
                assert not grad.any()  # the gradient is consumed, as Thinc does
            optimizer.step_schedules()
        runs[fused] = (weights, {k: optimizer.mom2[(1, k)].copy() for k in start})
    for k in start:
        fused_w, thinc_w = runs[True][0][k], runs[False][0][k]
        moved = numpy.abs(thinc_w - start[k].astype("float32")).max()
        assert moved > 1e-3  # both really trained
        # Rounding only. Thinc rounds 1 - beta2 to float32 (0.00099998713, 1.3e-5 below the
        # kernel's), which moves each step by ~7e-6 of itself: 1e-4 of the path the 12 steps
        # of size ~lr walk is ample for that, plus a few ulps of the weight. A wrong eps,
        # bias correction or weight decay is off by a good fraction of a step.
        path = 12 * 1e-3
        tolerance = 1e-4 * path + 8 * numpy.spacing(numpy.abs(thinc_w))
        assert (numpy.abs(fused_w - thinc_w) <= tolerance).all(), k
        # (the same rounding of 1 - beta2: Thinc's second moments sit 1.3e-5 below)
        assert numpy.allclose(runs[True][1][k], runs[False][1][k], rtol=3e-5, atol=0), k


def _by_key(nlp):
    """optimizer key -> (copy of the weights, copy of the gradient or None), float64.
    (Paths are not unique: the tok2vec has several ``hashembed/E``.)"""
    out = {}
    for _, proc in nlp.components:
        for node in proc.model.walk():
            for name in node.param_names:
                if node.has_param(name):
                    grad = node.get_grad(name) if node.has_grad(name) else None
                    out[(node.id, name)] = (
                        to_numpy(node.get_param(name)).astype("float64"),
                        None if grad is None else to_numpy(grad).astype("float64"))
            for shim in node.shims:
                for name, param in shim._model.named_parameters():
                    grad = param.grad
                    out[(shim.id, name)] = (
                        param.detach().cpu().numpy().astype("float64"),
                        None if grad is None else grad.detach().cpu().numpy().astype("float64"))
    return out


def _sgd_step(nlp, examples, scope, clip):
    """One plain-SGD step (lr 1, no decay) with the given clipping: key -> weight change,
    and the raw gradients it was computed from."""
    optimizer = grouped_adam(groups={"all": {"pattern": "", "learn_rate": 1.0}},
                             beta1=0.0, beta2=0.0, L2=0.0, grad_clip=clip, grad_clip_scope=scope)
    optimizer.bind(nlp)
    nlp.update(examples, sgd=False)  # accumulate gradients only
    before = _by_key(nlp)
    for _, proc in nlp.pipeline:
        proc.finish_update(optimizer)
    after = _by_key(nlp)
    grads = {k: g for k, (_, g) in before.items() if g is not None}
    return {k: before[k][0] - after[k][0] for k in grads}, grads, optimizer


def test_global_clipping_scales_all_gradients_by_one_factor():
    nlp = spacy.blank("en")
    nlp.add_pipe("crf_ner")
    examples = make_examples(nlp, 16)
    nlp.initialize(lambda: examples)
    clip = 0.05
    moves, grads, optimizer = _sgd_step(nlp, examples, "global", clip)
    raw_norm = numpy.sqrt(sum((g ** 2).sum() for g in grads.values()))
    assert raw_norm > 4 * clip  # the clip is active
    assert optimizer.last_global_norm == pytest.approx(raw_norm, rel=1e-4)
    factor = clip / raw_norm
    for path, grad in grads.items():
        # SGD with lr 1: each weight moves by exactly factor * its gradient (same direction)
        assert numpy.allclose(moves[path], factor * grad, rtol=1e-3, atol=1e-7), path
    moved = numpy.sqrt(sum((m ** 2).sum() for m in moves.values()))
    assert moved == pytest.approx(clip, rel=1e-3)

    # Thinc's per-tensor clipping, for contrast: each tensor at most `clip`, more in total.
    tensor_moves, tensor_grads, _ = _sgd_step(nlp, examples, "tensor", clip)
    norms = [numpy.sqrt((m ** 2).sum()) for m in tensor_moves.values()]
    assert max(norms) <= clip * 1.001
    assert numpy.sqrt(sum(n ** 2 for n in norms)) > 2 * clip


def test_global_clipping_recomputes_the_norm_at_every_step_outside_spacy_train():
    nlp = spacy.blank("en")
    nlp.add_pipe("crf_ner")
    examples = make_examples(nlp, 16)
    optimizer = grouped_adam(groups={"all": {"pattern": "", "learn_rate": 1e-2}},
                             grad_clip_scope="global")
    nlp.initialize(lambda: examples, sgd=optimizer)
    optimizer.bind(nlp)
    norms = []
    for _ in range(3):  # nlp.update(sgd=...) never calls step_schedules
        nlp.update(examples, sgd=optimizer)
        norms.append(optimizer.last_global_norm)
    assert all(n is not None and n > 0 for n in norms)
    assert len(set(norms)) == 3
    with pytest.raises(ValueError, match="grad_clip_scope"):
        grouped_adam(groups={"all": {"pattern": "", "learn_rate": 1.0}}, grad_clip_scope="layer")
    unbound = grouped_adam(groups={"all": {"pattern": "", "learn_rate": 1.0}},
                           grad_clip_scope="global")
    with pytest.raises(ValueError, match="must see the pipeline's gradients"):
        unbound.bind_paths(parameter_paths(nlp))


GROUPED_CONFIG = """
[paths]
train = null
dev = null
train_log = null

[nlp]
lang = "en"
pipeline = ["crf_ner"]

[components]

[components.crf_ner]
factory = "crf_ner"

[corpora]

[corpora.train]
@readers = "spacy.Corpus.v1"
path = ${paths.train}

[corpora.dev]
@readers = "spacy.Corpus.v1"
path = ${paths.dev}

[training]
max_steps = 40
eval_frequency = 10
seed = 0

[training.batcher]
@batchers = "spacy.batch_by_words.v1"
size = 300

[training.logger]
@loggers = "spacy_crf_ner.JsonlLogger.v1"
path = ${paths.train_log}

[training.optimizer]
@optimizers = "spacy_crf_ner.GroupedAdam.v1"
grad_clip = 1.0
grad_clip_scope = "global"

[training.optimizer.groups]

[training.optimizer.groups.head]
pattern = "^crf_ner/crf_(emissions|text_cnn)/"

[training.optimizer.groups.head.learn_rate]
@schedules = "warmup_linear.v1"
warmup_steps = 4
total_steps = 40
initial_rate = 0.003

[training.optimizer.groups.embeddings]
pattern = ""
learn_rate = 0.001

[initialize]

[initialize.after_init]
@callbacks = "spacy_crf_ner.bind_param_groups.v1"
"""


def write_filled(config_text: str, path: Path) -> None:
    """Complete a partial config with spaCy's defaults, as `spacy init fill-config` does."""
    from spacy.cli.init_config import fill_config

    partial = path.with_suffix(".partial.cfg")
    partial.write_text(config_text)
    fill_config(path, partial, silent=True)


@pytest.mark.slow
def test_spacy_train_with_groups_logs_plots_and_resumes(tmp_path):
    nlp = spacy.blank("en")
    db = DocBin(store_user_data=True)
    for eg in make_examples(nlp, 40, seed=4):
        db.add(eg.reference)
    db.to_disk(tmp_path / "train.spacy")
    write_filled(GROUPED_CONFIG, tmp_path / "config.cfg")
    cmd = [sys.executable, "-m", "spacy", "train", tmp_path / "config.cfg",
           "--paths.train", tmp_path / "train.spacy", "--paths.dev", tmp_path / "train.spacy"]
    out = subprocess.run([str(c) for c in cmd + ["--output", tmp_path / "out",
                          "--paths.train_log", tmp_path / "log.jsonl"]],
                         capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    assert "Optimizer groups" in out.stdout
    # spacy train saves through nlp.to_disk: the checksums are written (checked on load)
    assert (tmp_path / "out" / "model-last" / "checksums.sha256").is_file()
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    updates = [r for r in records if r["event"] == "update"]
    evals = [r for r in records if r["event"] == "evaluation"]
    assert len(updates) >= 40 and len(evals) >= 4
    assert all(r["losses"]["crf_ner"] > 0 for r in updates)
    rates = [r["learn_rates"] for r in updates]
    assert rates[-1]["embeddings"] == pytest.approx(0.001)
    assert max(r["head"] for r in rates) == pytest.approx(0.003, rel=0.01)
    assert rates[1]["head"] < rates[3]["head"]  # warming up
    norms = [r["grad_norm"] for r in updates]  # global clipping: one norm per step, logged
    assert all(n > 0 for n in norms) and len(set(norms)) > 10
    assert evals[-1]["scores"]["spans_sc_f"] > 0.5

    plots = subprocess.run([sys.executable, "-m", "spacy_crf_ner", "plot-log", str(tmp_path / "log.jsonl"),
                            str(tmp_path / "plots")], capture_output=True, text=True)
    assert plots.returncode == 0, plots.stderr
    for name in ("loss.png", "scores.png", "learn_rates.png"):
        assert (tmp_path / "plots" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # Resume: source the trained component and keep training with the same groups.
    sections = re.split(r"(?m)^(?=\[)", (tmp_path / "config.cfg").read_text())
    sections = [sec for sec in sections if not sec.startswith("[components.crf_ner")]
    sections.append(f'[components.crf_ner]\nsource = "{tmp_path / "out" / "model-last"}"\n\n')
    (tmp_path / "resume.cfg").write_text("".join(sections))
    cmd[4] = tmp_path / "resume.cfg"
    out = subprocess.run([str(c) for c in cmd + ["--output", tmp_path / "out2",
                          "--training.max_steps", "10", "--training.eval_frequency", "5"]],
                         capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    resumed = spacy.load(tmp_path / "out2" / "model-last")
    scores = resumed.evaluate(list(make_examples(resumed, 20, seed=4)))
    assert scores["spans_sc_f"] > evals[0]["scores"]["spans_sc_f"]
