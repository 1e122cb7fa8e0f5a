"""The one place that reaches into spaCy's and Thinc's private attributes.

Neither offers a public way to do these things that the package needs (spacy-transformers
keeps its own such access in one helper for the same reason):

* get the ``torch.nn.Module`` held by a ``PyTorchShim`` (``shim._model``), or lend the shim
  another one for a call (a reduced-precision copy of the transformer);
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
  (``spacy_transformers.layers._util.replace_listener_cfg``) for its models, from ours;
* load a saved Hugging Face model into spacy-transformers' ``HFShim`` (its ``_hfmodel`` and
  ``_model``) with a smaller memory peak than ``HFShim.from_bytes``;
* call torch's functional AdamW (``torch.optim.adamw.adamw``, which ``torch.optim`` does not
  export) with its fused kernel, for the optimizer's update of float32 CPU parameters;
* route ``torch.nn.functional``'s dropout and attention for the length of a block (a Hugging
  Face model offers no hook for the dropout it runs), for the transformer's training forward.

If spaCy, Thinc or torch renames one of these, this module is the only one to change.
"""
from contextlib import contextmanager
from typing import Any, Callable, Iterator, List, Optional

from spacy.language import Language
from spacy.tokens import Doc, Span
from thinc.api import Model


def shim_module(shim: Any) -> Optional[Any]:
    """The torch module inside a Thinc ``PyTorchShim`` (None for other shims)."""
    return getattr(shim, "_model", None)


@contextmanager
def swapped_shim_module(shim: Any, module: Any) -> Iterator[None]:
    """Within the block, ``shim`` runs ``module`` instead of its own torch module."""
    own = shim._model
    shim._model = module
    try:
        yield
    finally:
        shim._model = own


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


def load_hf_shim_bytes(shim: Any, bytes_data: bytes) -> None:
    """spacy-transformers' ``HFShim.from_bytes`` with a third of its memory peak.

    Theirs holds, at once, the serialized weights, the tensors ``torch.load`` makes of them
    and a randomly initialised model they are copied into: three copies of the weights on top
    of the caller's bytes (about 450 MB for a 90 MB model, all of it in the process's peak
    RSS). Here the model is built without initialising its weights (``no_init_weights``: its
    tensors are allocated, never touched), the serialized weights are dropped as soon as
    ``torch.load`` has read them, and the loaded tensors become the model's own
    (``load_state_dict(assign=True)``). A state that does not match the model falls back to
    their behaviour (strict=False on a normally initialised model, with their warning).
    """
    import warnings
    from io import BytesIO
    from pathlib import Path

    import srsly
    import torch
    from spacy.util import SimpleFrozenDict
    from spacy_transformers.data_classes import HFObjects
    from spacy_transformers.util import make_tempdir
    from thinc.api import get_torch_default_device
    from transformers.modeling_utils import no_init_weights

    msg = srsly.msgpack_loads(bytes_data)
    config_dict, tok_dict = msg["config"], msg["tokenizer"]
    if not config_dict:  # saved before initialization: only the settings to build it with
        shim._hfmodel = HFObjects(None, None, None, msg["_init_tokenizer_config"],
                                  msg["_init_transformer_config"])
        return
    with make_tempdir() as temp_dir:
        config_file = temp_dir / "config.json"
        srsly.write_json(config_file, config_dict)
        config = shim.config_cls.from_pretrained(config_file)
        tok_kwargs = tok_dict.pop("kwargs", {})
        for name, data in tok_dict.items():
            Path(temp_dir / name).write_bytes(data)
        tokenizer = shim.tokenizer_cls.from_pretrained(str(temp_dir.absolute()), **tok_kwargs)
        vocab_file_contents = None
        if hasattr(tokenizer, "vocab_file"):
            vocab_file = temp_dir / tokenizer.vocab_files_names["vocab_file"]
            vocab_file_contents = vocab_file.read_bytes()
    filelike = BytesIO(msg.pop("state"))
    del msg
    device = get_torch_default_device()
    weights = torch.load(filelike, map_location=device)
    del filelike  # the serialized weights: no longer needed
    with no_init_weights():
        transformer = shim.model_cls.from_config(config)
    try:
        transformer.load_state_dict(weights, assign=True)
    except RuntimeError:
        warnings.warn(
            "Error loading saved torch state_dict with strict=True, likely due to differences "
            "between 'transformers' versions. Attempting to load with strict=False as a "
            "fallback...\n\nIf you see errors or degraded performance, download a newer "
            "compatible model or retrain your custom model with the current 'transformers' and "
            "'spacy-transformers' versions. For more details and available updates, run: "
            "python -m spacy validate")
        transformer = shim.model_cls.from_config(config)
        transformer.load_state_dict(weights, strict=False)
    del weights
    if hasattr(transformer, "tie_weights"):
        transformer.tie_weights()
    transformer.to(device)
    shim._hfmodel = HFObjects(tokenizer, transformer, vocab_file_contents,
                              SimpleFrozenDict(), SimpleFrozenDict())
    shim._model = transformer


def torch_fused_adamw() -> Optional[Callable]:
    """torch's functional AdamW (``params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs,
    state_steps, fused=...``), or None when this torch has no such function."""
    import importlib

    try:
        return importlib.import_module("torch.optim.adamw").adamw
    except (ImportError, AttributeError):
        return None


@contextmanager
def patched_torch_functional(**functions: Callable) -> Iterator[None]:
    """Within the block, ``torch.nn.functional.<name>`` is the function given for it (the
    modules that call ``F.<name>`` look it up at each call: ``nn.Dropout``, Hugging Face's
    attention). Process-wide while it lasts: meant for a forward pass, not for threads."""
    import torch.nn.functional as F

    own = {name: getattr(F, name) for name in functions}
    try:
        for name, function in functions.items():
            setattr(F, name, function)
        yield
    finally:
        for name, function in own.items():
            setattr(F, name, function)
