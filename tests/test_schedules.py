"""spacy_crf_ner.warmup_linear.v1: the learning-rate shape of each optimizer group."""
import itertools

import pytest
from thinc.api import Config, registry


def take(schedule, n):
    return list(itertools.islice(schedule, n))


def resolve(**settings):
    section = {"@schedules": "spacy_crf_ner.warmup_linear.v1", **settings}
    return registry.resolve(Config({"lr": section}))["lr"]


def test_start_rate_zero_is_thincs_warmup_linear():
    ours = take(resolve(initial_rate=3e-4, warmup_steps=7, total_steps=40), 60)
    thinc = take(registry.schedules.get("warmup_linear.v1")(3e-4, 7, 40), 60)
    assert ours == pytest.approx(thinc, rel=1e-12, abs=1e-15)


def test_full_start_rate_holds_then_decays_to_zero():
    rates = take(resolve(initial_rate=3e-4, warmup_steps=10, total_steps=50, start_rate=3e-4), 60)
    assert rates[:11] == pytest.approx([3e-4] * 11)
    decay = rates[10:51]
    assert all(a > b for a, b in zip(decay, decay[1:]))  # strictly decreasing to step 50
    assert rates[30] == pytest.approx(3e-4 * 20 / 40)
    assert rates[50:] == [0.0] * 10


def test_ramp_from_a_nonzero_start():
    rates = take(resolve(initial_rate=1.0, warmup_steps=4, total_steps=8, start_rate=0.2), 9)
    assert rates == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0, 0.75, 0.5, 0.25, 0.0])


def test_project_config_head_group_starts_at_full_rate():
    from pathlib import Path

    from spacy.util import load_config

    config = load_config(Path(__file__).parents[1] / "configs" / "config.cfg")
    groups = config["training"]["optimizer"]["groups"]
    head = take(registry.resolve(Config({"lr": groups["head"]["learn_rate"]}))["lr"], 2)
    transformer = take(registry.resolve(Config({"lr": groups["transformer"]["learn_rate"]}))["lr"], 2)
    assert head[0] > 0 and head[0] == head[1]
    assert transformer[0] == 0.0 < transformer[1]


@pytest.mark.parametrize("settings", [
    {"initial_rate": 1e-3, "warmup_steps": -1, "total_steps": 10},
    {"initial_rate": -1e-3, "warmup_steps": 1, "total_steps": 10},
    {"initial_rate": 1e-3, "warmup_steps": 1, "total_steps": 10, "start_rate": -1.0},
])
def test_bad_settings_are_refused(settings):
    with pytest.raises(ValueError):
        take(resolve(**settings), 1)
