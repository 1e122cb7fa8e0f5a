"""Averaged weights that spaCy's training loop can evaluate and save, torch weights included.

With ``use_averages = true`` Thinc's optimizer keeps a moving average of every parameter, and
``spacy train`` evaluates and saves ``nlp.use_params(optimizer.averages)``. For torch modules
that never works: Thinc keys their averages ``(shim.id, name)`` while
``PyTorchShim.use_params`` looks for ``"pytorch_<shim.id>_<name>"`` and then loads a full
``state_dict`` strictly. So a pipeline whose weights are all torch (transformer, text CNN,
CRF) trains, evaluates and saves its last weights, silently.

``WeightAverages`` is the dict spaCy hands to ``use_params``, filled so that both readers find
their entries:

* Thinc parameters under their optimizer key ``(node.id, name)``;
* torch parameters under ``"pytorch_<shim.id>_<name>"``, plus the module's other state
  entries (persistent buffers) as views of the live tensors, so the strict load sees a
  complete state dict and leaves those entries as they are.

Every average starts as a copy of the initial weights (so frozen parameters average to
themselves) and folds in the weights after each update of that parameter, with Thinc's
warm-up decay ``min(max_decay, (1 + t) / (10 + t))`` at its t-th update: early steps weigh
little, and by the end the average covers about the last ``t / 9`` steps.
"""
from typing import Any, Dict, Iterator, Optional, Set, Tuple

import numpy
from thinc.api import Model

from ..internals import shim_module
from .state import KeyT


def decay_at(update: int, max_decay: float) -> float:
    """Weight kept by the average at a parameter's ``update``-th update (1 for the first)."""
    return min(max_decay, (1.0 + update) / (10.0 + update))


def _pipeline_entries(nlp) -> Iterator[Tuple[Optional[KeyT], Any, Any, bool]]:
    """(optimizer key or None, use_params key, live array, is a parameter) of every state
    entry of the pipeline's models, each once."""
    seen: Set[Any] = set()
    for _, proc in nlp.components:
        model = getattr(proc, "model", None)
        if not isinstance(model, Model):
            continue
        for node in model.walk():
            for name in node.param_names:
                key = (node.id, name)
                if node.has_param(name) and key not in seen:
                    seen.add(key)
                    yield key, key, node.get_param(name), True
            for shim in node.shims:
                module: Any = shim_module(shim)
                if not hasattr(module, "state_dict") or shim.id in seen:
                    continue
                seen.add(shim.id)
                params = dict(module.named_parameters())
                for name, tensor in module.state_dict(keep_vars=True).items():
                    is_param = name in params
                    yield ((shim.id, name) if is_param else None,
                           f"pytorch_{shim.id}_{name}", tensor.data, is_param)


def _as_array(tensor_or_array: Any) -> Any:
    if hasattr(tensor_or_array, "detach"):  # torch: a NumPy view on CPU, else Thinc's copy
        tensor = tensor_or_array.detach()
        if tensor.device.type == "cpu":
            return tensor.numpy()
        from thinc.api import torch2xp

        return torch2xp(tensor)
    return tensor_or_array


class WeightAverages(dict):
    """use_params key -> averaged array (see the module docstring)."""

    def __init__(self, nlp, max_decay: float = 0.9999):
        super().__init__()
        if not 0.0 <= max_decay < 1.0:
            raise ValueError(f"average_decay must be in [0, 1), got {max_decay}")
        self.max_decay = max_decay
        # optimizer key -> use_params key, for the parameters the optimizer updates
        self.key_of: Dict[KeyT, Any] = {}
        for opt_key, use_key, live, is_param in _pipeline_entries(nlp):
            array = _as_array(live)
            if is_param and opt_key is not None:
                self[use_key] = array.astype("float32", copy=True)
                self.key_of[opt_key] = use_key
            else:  # a buffer: the live view, loaded onto itself
                self[use_key] = array

    def fold(self, key: KeyT, weights: Any, update: int) -> None:
        """Fold ``weights`` (just updated, the ``update``-th time) into its average."""
        use_key = self.key_of.get(key)
        if use_key is None:
            return
        average = self[use_key]
        step = 1.0 - decay_at(update, self.max_decay)
        if isinstance(average, numpy.ndarray) and isinstance(weights, numpy.ndarray):
            import torch

            torch.from_numpy(average).lerp_(
                torch.from_numpy(numpy.ascontiguousarray(weights, dtype="float32")
                                 ).reshape(average.shape), step)
        else:
            average -= step * (average - weights.reshape(average.shape))
