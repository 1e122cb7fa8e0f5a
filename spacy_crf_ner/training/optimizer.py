"""Adam with parameter groups: each group has its own learning-rate schedule and weight decay.

spaCy trains with one Thinc optimizer and one learning rate. A transformer being fine-tuned
wants a small, warmed-up rate while a freshly initialised CNN + CRF head wants a larger one,
and ``grad_factor`` cannot stand in for that because Adam normalises gradients. Here every
parameter gets a readable path ``<component>/<layer name>/<param name>`` (for example
``transformer/transformer/encoder.layer.0.attention.self.query.weight`` or
``crf_ner/crf_emissions/crf.transitions``); the first group whose regular expression
matches the path (``re.search``) owns the parameter, and ``""`` matches everything.

Config::

    [training.optimizer]
    @optimizers = "spacy_crf_ner.GroupedAdam.v1"
    grad_clip = 1.0

    [training.optimizer.groups.transformer]
    pattern = "^transformer/"
    [training.optimizer.groups.transformer.learn_rate]
    @schedules = "warmup_linear.v1"
    ...

    [training.optimizer.groups.head]
    pattern = ""
    learn_rate = 0.0003

    [initialize.after_init]
    @callbacks = "spacy_crf_ner.bind_param_groups.v1"

A group may set ``weight_decay`` (else the optimizer's ``L2``) and ``frozen = true`` (its
parameters never move). ``grad_clip_scope = "global"`` clips the norm of all gradients of a
step together, as ``torch.nn.utils.clip_grad_norm_`` (and EDS-NLP's trainer) do; the default
``"tensor"`` is Thinc's behaviour, which clips each parameter tensor on its own.
Float32 CPU parameters are updated by torch's fused AdamW kernel, which computes Thinc's
update in one multithreaded pass (``fused_adam``); ``fused = false`` keeps Thinc's own loops.
Paths are matched once, after ``nlp.initialize``; a pattern that
matches nothing, or a parameter that matches no group, is an error at that point.
"""
import math
import re
import sys
from collections import OrderedDict
from functools import partial
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple, cast

import numpy

from spacy.language import Language
from spacy.util import registry
from thinc.api import Model, Optimizer
from thinc.types import Floats1d

from ..internals import pipeline_optimizer, shim_module, torch_fused_adamw
from .averaging import WeightAverages
from .fused_adam import adam_update, is_cpu_float32
from .state import TRAINING_STATE, KeyT


CLIP_SCOPES = ("tensor", "global")


def _thinc_grad(node, name: str):
    return node.get_grad(name) if node.has_grad(name) else None


def _torch_grad(param):
    return param.grad


def _walk_parameters(nlp: Language) -> Iterable[Tuple[KeyT, str, int, Callable[[], Any]]]:
    """(optimizer key, readable path, number of weights, gradient getter) for every parameter
    of ``nlp``, each once.

    Thinc parameters are keyed ``(node.id, name)``; torch parameters inside a shim are keyed
    ``(shim.id, name)``, as ``Model.finish_update`` and ``PyTorchShim.finish_update`` do.
    A layer shared by several components is listed under the first one.
    """
    seen = set()
    for comp_name, proc in nlp.components:
        model = getattr(proc, "model", None)
        if not isinstance(model, Model):
            continue
        for node in model.walk():
            found = [((node.id, name), name, int(node.get_param(name).size),
                      partial(_thinc_grad, node, name))
                     for name in node.param_names if node.has_param(name)]
            for shim in node.shims:
                module: Any = shim_module(shim)
                if hasattr(module, "named_parameters"):
                    found += [((shim.id, name), name, int(param.numel()),
                               partial(_torch_grad, param))
                              for name, param in module.named_parameters()]
            for key, name, size, grad in found:
                if key not in seen:
                    seen.add(key)
                    yield key, f"{comp_name}/{node.name}/{name}", size, grad


def parameter_paths(nlp: Language) -> "OrderedDict[KeyT, Tuple[str, int]]":
    """Optimizer key -> (readable path, number of weights) for every parameter of ``nlp``."""
    return OrderedDict((key, (path, size)) for key, path, size, _ in _walk_parameters(nlp))


def gradient_sources(nlp: Language) -> Dict[KeyT, Callable[[], Any]]:
    """Optimizer key -> zero-argument function giving the parameter's gradient right now
    (a Thinc array, a torch tensor, or None), for every parameter of ``nlp``."""
    return {key: grad for key, _, _, grad in _walk_parameters(nlp)}


def _squared_norm(grad) -> float:
    if grad is None:
        return 0.0
    if hasattr(grad, "detach"):  # torch tensor: one BLAS dot, no temporary of its size
        flat_t = grad.detach().reshape(-1)
        return float(flat_t.dot(flat_t))
    flat = grad.ravel()
    return float(flat.dot(flat))


class ParamGroup:
    """One group: a pattern, a learning rate (number or schedule), weight decay, frozen."""

    def __init__(self, name: str, spec: Dict[str, Any]):
        unknown = set(spec) - {"pattern", "learn_rate", "weight_decay", "frozen"}
        if unknown:
            raise ValueError(
                f"Optimizer group {name!r}: unknown setting(s) {sorted(unknown)}; use pattern, "
                "learn_rate, weight_decay, frozen."
            )
        if "pattern" not in spec:
            raise ValueError(f"Optimizer group {name!r} needs a 'pattern' (\"\" matches all).")
        self.name = name
        self.pattern_text = str(spec["pattern"])
        try:
            self.pattern = re.compile(self.pattern_text)
        except re.error as err:
            raise ValueError(f"Optimizer group {name!r}: bad pattern {self.pattern_text!r}: {err}")
        self.frozen = bool(spec.get("frozen", False))
        self.weight_decay: Optional[float] = spec.get("weight_decay")
        rate = spec.get("learn_rate", 0.0 if self.frozen else None)
        if rate is None:
            raise ValueError(f"Optimizer group {name!r} needs a learn_rate (or frozen = true).")
        if isinstance(rate, (int, float)):
            self._schedule = None
            self.learn_rate = float(rate)
        else:
            self._schedule = iter(rate)
            try:
                self.learn_rate = float(next(self._schedule))
            except StopIteration:
                raise ValueError(f"Optimizer group {name!r}: its learn_rate schedule is empty.")

    def step(self) -> None:
        if self._schedule is not None:
            try:
                self.learn_rate = float(next(self._schedule))
            except StopIteration:
                pass


class GroupedOptimizer(Optimizer):
    """Thinc's Adam, with learning rate and weight decay chosen per parameter group."""

    def __init__(self, groups: Dict[str, Dict[str, Any]], grad_clip_scope: str = "tensor",
                 fused: bool = True, average_decay: float = 0.9999, **kwargs):
        if not groups:
            raise ValueError("GroupedAdam needs at least one group (pattern \"\" matches all).")
        if grad_clip_scope not in CLIP_SCOPES:
            raise ValueError(
                f"grad_clip_scope must be one of {CLIP_SCOPES}, got {grad_clip_scope!r}"
            )
        self.grad_clip_scope = grad_clip_scope
        self.fused_adamw = torch_fused_adamw() if fused else None
        self.grad_sources: Dict[KeyT, Callable[[], Any]] = {}
        self._clip_factor: Optional[float] = None
        self._keys_this_step: set = set()
        self.last_global_norm: Optional[float] = None
        self.grad_norm_of_last_step: Optional[float] = None
        self.groups: List[ParamGroup] = [ParamGroup(n, dict(spec)) for n, spec in groups.items()]
        # Thinc's own averages miss torch weights (see ``averaging``): ours replace them.
        self.wants_averages = bool(kwargs.pop("use_averages", False))
        if not 0.0 <= average_decay < 1.0:
            raise ValueError(f"average_decay must be in [0, 1), got {average_decay}")
        self.average_decay = average_decay
        super().__init__(self.groups[0].learn_rate, use_averages=False, **kwargs)
        self.base_L2 = self.L2
        self.key_to_group: Dict[KeyT, ParamGroup] = {}
        self.key_to_path: Dict[KeyT, str] = {}
        self.bound = False
        self.rates_of_last_step: Optional[Dict[str, float]] = None

    # ------------------------------------------------------------- binding
    def bind(self, nlp: Language, *, out=None) -> Dict[str, Dict[str, Any]]:
        """Assign every parameter of ``nlp`` to its group; print and return the summary."""
        summary = self.bind_paths(parameter_paths(nlp), out=out, grads=gradient_sources(nlp))
        self.start_averages(nlp)
        return summary

    def start_averages(self, nlp: Optional[Language]) -> None:
        """With ``use_averages``: average ``nlp``'s weights from now on (``averages`` is then
        what ``spacy train`` evaluates and saves)."""
        if self.wants_averages and nlp is not None:
            self.averages = WeightAverages(nlp, self.average_decay)

    def bind_paths(self, paths, *, out=None, verbose: bool = True,
                   grads: Optional[Dict[KeyT, Callable[[], Any]]] = None
                   ) -> Dict[str, Dict[str, Any]]:
        """Assign parameters (key -> (path, size)) to groups; print and return the summary.
        ``grads`` (key -> gradient getter) is needed for ``grad_clip_scope = "global"``."""
        if self.grad_clip and self.grad_clip_scope == "global" and not grads:
            raise ValueError(
                "GroupedAdam with grad_clip_scope = \"global\" must see the pipeline's "
                "gradients: bind it with optimizer.bind(nlp) or the "
                "spacy_crf_ner.bind_param_groups.v1 callback."
            )
        self.key_to_group.clear()
        self.key_to_path.clear()
        summary: Dict[str, Dict[str, Any]] = {
            g.name: {"pattern": g.pattern_text, "tensors": 0, "weights": 0} for g in self.groups}
        unmatched = []
        for key, (path, size) in paths.items():
            group = next((g for g in self.groups if g.pattern.search(path)), None)
            if group is None:
                unmatched.append(path)
                continue
            self.key_to_group[key] = group
            self.key_to_path[key] = path
            summary[group.name]["tensors"] += 1
            summary[group.name]["weights"] += size
        examples = ", ".join(list(dict.fromkeys(p for p, _ in paths.values()))[:4])
        empty = [g for g in self.groups if summary[g.name]["tensors"] == 0]
        if empty:
            detail = ", ".join(f"{g.name!r} (pattern {g.pattern_text!r})" for g in empty)
            raise ValueError(
                f"Optimizer group(s) {detail} match no parameter (or only parameters an earlier "
                f"group already took). Parameter paths look like: {examples}"
            )
        if unmatched:
            raise ValueError(
                f"{len(unmatched)} parameters match no optimizer group, e.g. {unmatched[:3]}. "
                "Add a catch-all group with pattern = \"\"."
            )
        self.grad_sources = {
            key: get for key, get in (grads or {}).items()
            if key in self.key_to_group and not self.key_to_group[key].frozen
        }
        self.bound = True
        if not verbose:
            return summary
        out = out or sys.stdout
        out.write("Optimizer groups (first matching pattern wins):\n")
        for g in self.groups:
            row = summary[g.name]
            rate = "frozen" if g.frozen else f"lr at start {g.learn_rate:.3g}"
            out.write(
                f"  {g.name:<16} {g.pattern_text!r:<24} {row['tensors']:>5} tensors "
                f"{row['weights']:>12,} weights  {rate}\n"
            )
        return summary

    # ------------------------------------------------------------ updating
    def learn_rates(self) -> Dict[str, float]:
        """Current learning rate of each group (0 for frozen groups)."""
        return {g.name: 0.0 if g.frozen else g.learn_rate for g in self.groups}

    def step_schedules(self) -> None:
        TRAINING_STATE.record_step(self)
        self.rates_of_last_step = self.learn_rates()
        super().step_schedules()
        # Norm of all gradients of the step that just ended, before clipping ("global" only).
        self.grad_norm_of_last_step = self.last_global_norm if self._clip_factor else None
        self._clip_factor = None
        for group in self.groups:
            group.step()
        self.learn_rate = self.groups[0].learn_rate

    def __call__(self, key, weights, gradient, *, lr_scale: float = 1.0):
        group = self.key_to_group.get(key)
        if group is None and not self.bound and TRAINING_STATE.bound_paths:
            nlp = TRAINING_STATE.pipeline
            self.bind_paths(TRAINING_STATE.bound_paths, verbose=False,  # printed at init
                            grads=gradient_sources(nlp) if nlp is not None else None)
            self.start_averages(nlp)
            group = self.key_to_group.get(key)
        if group is None:
            if not self.bound:
                raise ValueError(
                    "GroupedAdam was used before its groups were bound to the pipeline: add "
                    "[initialize.after_init] @callbacks = \"spacy_crf_ner.bind_param_groups.v1\" "
                    "(or call optimizer.bind(nlp) after nlp.initialize())."
                )
            raise ValueError(
                f"GroupedAdam got a parameter {key} that did not exist when the groups were "
                "bound (after nlp.initialize): bind again after adding components."
            )
        if group.frozen:
            gradient *= 0
            return weights, gradient
        display_rate, base_L2, base_clip = self.learn_rate, self.L2, self.grad_clip
        self.learn_rate = group.learn_rate
        if group.weight_decay is not None:
            self.L2 = group.weight_decay
        if base_clip and self.grad_clip_scope == "global":
            factor = self._global_clip_factor(key)
            if factor < 1.0:
                gradient *= factor
            self.grad_clip = 0.0  # already clipped: no per-tensor clip on top
        try:
            weights, gradient = self._update(key, weights, gradient, lr_scale)
        finally:
            self.learn_rate, self.L2, self.grad_clip = display_rate, base_L2, base_clip
        if isinstance(self.averages, WeightAverages):
            self.averages.fold(key, weights, self.nr_update[key])
        return weights, gradient

    def _update(self, key: KeyT, weights, gradient, lr_scale: float):
        """Thinc's ``Optimizer.__call__`` (Adam, clipping, weight decay) with the current
        group's settings; float32 CPU arrays go through torch's fused kernel instead of
        Thinc's loops (same update, see ``fused_adam``)."""
        if not (self.fused_adamw is not None and is_cpu_float32(weights)
                and is_cpu_float32(gradient) and gradient.size > 0
                and weights.shape == gradient.shape and self.b1 > 0.0 and self.b2 > 0.0
                and not self.use_radam and (self.L2 == 0 or self.L2_is_weight_decay)):
            averages, self.averages = self.averages, None  # folded by __call__, not Thinc
            try:
                return super().__call__(key, weights, gradient, lr_scale=lr_scale)
            finally:
                self.averages = averages
        self.nr_update[key] += 1
        if self.grad_clip:  # Thinc's Ops.clip_gradient
            norm = math.sqrt(_squared_norm(gradient))
            if norm >= self.grad_clip:
                gradient *= self.grad_clip / norm
        for moments in (self.mom1, self.mom2):  # Thinc's layout: 1-D, one per parameter
            if key not in moments:
                moments[key] = cast(Floats1d, numpy.zeros(weights.size, dtype="float32"))
        adam_update(self.fused_adamw, weights, gradient, self.mom1[key], self.mom2[key],
                    step=self.nr_update[key], learn_rate=self.learn_rate * lr_scale,
                    beta1=self.b1, beta2=self.b2, eps=self.eps, weight_decay=self.L2)
        gradient.fill(0.0)
        return weights, gradient

    def _global_clip_factor(self, key: KeyT) -> float:
        """The factor that brings the norm of all gradients of this step to ``grad_clip``.

        Computed at the first parameter of a step, before any of the step's updates (which
        zero the gradients they consume). A step starts after ``step_schedules`` or when a
        parameter comes back a second time (``nlp.update(sgd=optimizer)`` outside
        ``spacy train`` does not call ``step_schedules``)."""
        if self._clip_factor is None or key in self._keys_this_step:
            norm = math.sqrt(sum(_squared_norm(get()) for get in self.grad_sources.values()))
            self.last_global_norm = norm
            self._clip_factor = min(1.0, self.grad_clip / (norm + 1e-6))
            self._keys_this_step = set()
        self._keys_this_step.add(key)
        return self._clip_factor


def grouped_adam(
    groups: Dict[str, Dict[str, Any]],
    beta1: float = 0.9,
    beta2: float = 0.999,
    eps: float = 1e-08,
    L2: float = 0.01,
    L2_is_weight_decay: bool = True,
    grad_clip: float = 1.0,
    grad_clip_scope: str = "tensor",
    use_averages: bool = False,
    average_decay: float = 0.9999,
    fused: bool = True,
) -> GroupedOptimizer:
    """Adam(W) whose learning rate and weight decay depend on the parameter's group.
    ``grad_clip_scope``: "tensor" (Thinc: each tensor's norm clipped to ``grad_clip``) or
    "global" (the norm of all gradients of the step, as torch's ``clip_grad_norm_``).
    ``fused``: update float32 CPU parameters with torch's fused AdamW kernel (the same
    update as Thinc's Adam in one multithreaded pass); false keeps Thinc's loops.
    ``use_averages``: keep a moving average of every weight, torch's included (Thinc's own
    skips them), which ``spacy train`` evaluates and saves; ``average_decay`` caps its
    warm-up decay ``(1 + t) / (10 + t)``."""
    return GroupedOptimizer(
        groups,
        average_decay=average_decay,
        grad_clip_scope=grad_clip_scope,
        fused=fused,
        beta1=beta1,
        beta2=beta2,
        eps=eps,
        L2=L2,
        L2_is_weight_decay=L2_is_weight_decay,
        grad_clip=grad_clip,
        use_averages=use_averages,
    )


registry.optimizers("spacy_crf_ner.GroupedAdam.v1")(grouped_adam)


def make_bind_param_groups() -> Callable[[Language], Language]:
    """``[initialize.after_init]`` callback: bind a GroupedAdam to the initialized pipeline."""

    def bind_param_groups(nlp: Language) -> Language:
        paths, grads = parameter_paths(nlp), gradient_sources(nlp)
        TRAINING_STATE.bind_pipeline(nlp, paths)
        optimizer = pipeline_optimizer(nlp)
        if isinstance(optimizer, GroupedOptimizer):
            optimizer.bind_paths(paths, grads=grads)  # fail here, at start, on a bad pattern
        return nlp

    return bind_param_groups


registry.callbacks("spacy_crf_ner.bind_param_groups.v1")(make_bind_param_groups)
