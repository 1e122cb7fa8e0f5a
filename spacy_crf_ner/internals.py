"""The one place that reaches into spaCy's and Thinc's private attributes.

Neither offers a public way to do these things that the package needs (spacy-transformers
keeps its own such access in one helper for the same reason):

* get the ``torch.nn.Module`` held by a ``PyTorchShim`` (``shim._model``);
* give a layer its sublayers after it was created (``model._layers``): the CRF head only
  knows its input width at ``initialize``;
* give a model another forward function (``model._func``): the windowed transformer is
  spacy-transformers' model with a different forward;
* find the optimizer that ``nlp.initialize`` created (``nlp._optimizer``), so that the
  optimizer's parameter groups are checked against the pipeline right at initialization;
* read a Doc's token attributes in one array, and make a part of it into a Doc from that
  array (``Doc._get_array_attrs``, ``Span.as_doc(array_head=, array=)``), so that splitting
  a document into many parts reads it once;
* call spacy-transformers' own ``replace_listeners`` config callback
  (``spacy_transformers.layers._util.replace_listener_cfg``) for its models, from ours.

If spaCy or Thinc renames one of these, this module is the only one to change.
"""
from typing import Any, Callable, List, Optional

from spacy.language import Language
from spacy.tokens import Doc, Span
from thinc.api import Model


def shim_module(shim: Any) -> Optional[Any]:
    """The torch module inside a Thinc ``PyTorchShim`` (None for other shims)."""
    return getattr(shim, "_model", None)


def set_sublayers(model: Model, layers: List[Model]) -> None:
    """Replace the sublayers of ``model``."""
    model._layers = list(layers)


def set_forward(model: Model, forward: Callable) -> None:
    """Make ``forward(model, X, is_train)`` the forward function of ``model``."""
    model._func = forward


def pipeline_optimizer(nlp: Language) -> Optional[Any]:
    """The optimizer ``nlp.initialize`` created or was given (None before that)."""
    return getattr(nlp, "_optimizer", None)


def spacy_transformers_replace_listener_cfg() -> Callable:
    """spacy-transformers' ``replace_listeners`` config callback (imports spacy-transformers)."""
    from spacy_transformers.layers._util import replace_listener_cfg

    return replace_listener_cfg


def doc_array_attrs() -> Any:
    """The token attributes spaCy copies when it makes a Doc from a span (``as_doc``)."""
    return Doc._get_array_attrs()


def span_as_doc(span: Span, array_head: Any, array: Any) -> Doc:
    """``span.as_doc()`` from the doc's array read once (``doc.to_array(array_head)``)."""
    return span.as_doc(array_head=array_head, array=array)  # type: ignore[call-arg]
