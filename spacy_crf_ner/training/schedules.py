"""Learning-rate schedules for the training config.

Thinc's ``warmup_linear.v1`` always warms up from 0. That suits a pretrained transformer,
but a freshly initialised head (CNN, projection, CRF) then spends its first steps hardly
moving, while the transformer already receives its gradients. EDS-NLP's recipe starts the
head at its full rate, holds it through the warm-up and then decays it with the transformer's.
``spacy_crf_ner.warmup_linear.v1`` expresses both with one shape: a ramp from ``start_rate``
to ``initial_rate`` over ``warmup_steps``, then a linear decay to 0 at ``total_steps``.
"""
from typing import Iterator

from thinc.api import registry


def warmup_linear(
    initial_rate: float, warmup_steps: int, total_steps: int, start_rate: float = 0.0
) -> Iterator[float]:
    """Ramp ``start_rate`` -> ``initial_rate`` over ``warmup_steps``, then decay linearly to 0
    at ``total_steps`` (and stay at 0). ``start_rate = initial_rate`` holds the rate flat
    through the warm-up; ``start_rate = 0`` is Thinc's ``warmup_linear.v1``."""
    if warmup_steps < 0 or total_steps < 0:
        raise ValueError(
            f"warmup_steps and total_steps must be >= 0, got {warmup_steps} and {total_steps}"
        )
    if initial_rate < 0 or start_rate < 0:
        raise ValueError(
            f"learning rates must be >= 0, got initial_rate {initial_rate}, start_rate {start_rate}"
        )
    step = 0
    while True:
        if step < warmup_steps:
            yield start_rate + (initial_rate - start_rate) * step / warmup_steps
        else:
            remaining = max(0.0, (total_steps - step) / max(1.0, total_steps - warmup_steps))
            yield initial_rate * remaining
        step += 1


registry.schedules("spacy_crf_ner.warmup_linear.v1")(warmup_linear)
