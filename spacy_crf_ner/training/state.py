"""What the training pieces of one ``spacy train`` process share, in one documented object.

spaCy builds the pieces of a run from the config separately and never connects them:

* the ``[initialize.after_init]`` callback ``spacy_crf_ner.bind_param_groups.v1`` sees the
  initialized pipeline;
* ``spacy_crf_ner.GroupedAdam.v1`` is resolved twice (once for ``nlp.initialize``, once for
  the training loop), so the loop's optimizer is never handed the pipeline;
* ``spacy_crf_ner.JsonlLogger.v1`` sees the pipeline and the scores, not the optimizer.

``TRAINING_STATE`` carries what they need from each other: the parameter paths of the
pipeline last bound (and the pipeline itself, weakly), which the loop's optimizer reads on
its first update; and the optimizer whose schedules moved last (weakly), from which the
logger reads the learning rates and the gradient norm of the step that just ended.
Everything is held weakly or replaced at the next run, so nothing outlives its pipeline.
"""
import weakref
from collections import OrderedDict
from typing import Any, Callable, Dict, Optional, Tuple

from spacy.language import Language

# Optimizer key of a parameter: (id of the Thinc node or shim, parameter name).
KeyT = Tuple[int, str]


class TrainingState:
    """Shared state of the current training run (see the module docstring)."""

    def __init__(self) -> None:
        # Optimizer key -> (readable path, number of weights), of the pipeline last bound.
        self.bound_paths: "OrderedDict[KeyT, Tuple[str, int]]" = OrderedDict()
        self._pipeline: Callable[[], Optional[Language]] = lambda: None
        self._last_stepped: Callable[[], Optional[Any]] = lambda: None

    def bind_pipeline(self, nlp: Language, paths: "OrderedDict[KeyT, Tuple[str, int]]") -> None:
        """Remember the initialized pipeline and its parameter paths."""
        self.bound_paths = OrderedDict(paths)
        self._pipeline = weakref.ref(nlp)

    @property
    def pipeline(self) -> Optional[Language]:
        """The pipeline last bound, while it is alive."""
        return self._pipeline()

    def record_step(self, optimizer: Any) -> None:
        """Called by the optimizer when its schedules move (once per training step)."""
        self._last_stepped = weakref.ref(optimizer)

    @property
    def last_stepped(self) -> Optional[Any]:
        """The optimizer whose schedules moved last, while it is alive."""
        return self._last_stepped()

    def rates_of_last_step(self) -> Optional[Dict[str, float]]:
        """Learning rate of each group in the step that just ended (GroupedAdam only)."""
        optimizer = self.last_stepped
        return getattr(optimizer, "rates_of_last_step", None)

    def grad_norm_of_last_step(self) -> Optional[float]:
        """Norm of all gradients of the step that just ended, before clipping (GroupedAdam
        with ``grad_clip_scope = "global"`` only)."""
        optimizer = self.last_stepped
        return getattr(optimizer, "grad_norm_of_last_step", None)


TRAINING_STATE = TrainingState()
