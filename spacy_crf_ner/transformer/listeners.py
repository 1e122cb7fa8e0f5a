"""Standalone ``crf_ner``: replacing its transformer listener with a copy of the transformer.

``nlp.replace_listeners("transformer", "crf_ner", ["model.tok2vec.tok2vec"])`` swaps the
listener layer for a copy of the transformer's model in memory, and rewrites the pipeline's
config at that path with a config that must rebuild the same layers. spaCy asks the
transformer's model for that config (its ``attrs["replace_listener_cfg"]``), but hands it
the component's ``model.tok2vec`` section as "the listener's config", whatever path was
given. In ``crf_ner`` that section is the text CNN, and the listener sits one level deeper,
so spacy-transformers' callback does not recognise a listener and returns the bare
transformer config: no pooling, a different layer structure, and a saved pipeline that
does not load ("mismatched structure").

``listener_replacement_config`` (:mod:`.listener_config`) finds the listener under the
section it is given, then:
for ``spacy_crf_ner.WindowedTransformerModel.v1`` returns a
``spacy_crf_ner.WindowedTok2VecTransformer.v1`` config (the windowed model, the listener's
pooling and grad factor: the layers the in-memory replacement built); for spacy-transformers'
own models it calls spacy-transformers' callback with the listener's real config.
The windowed model carries it from the start; ``route_listener_replacement`` installs it on
spacy-transformers' models when a ``crf_ner`` component is created.

Nothing here imports spacy-transformers or torch at import time.
"""
from typing import List

from spacy.language import Language
from spacy.tokens import Doc
from spacy.util import registry
from thinc.api import Model, chain
from thinc.types import Floats2d, Ragged

from .listener_config import WINDOWED_TOK2VEC, listener_replacement_config
from .windowed_model import build_windowed_transformer_model

_SPACY_TRANSFORMERS_CALLBACK_MODULE = "spacy_transformers.layers._util"


def build_windowed_tok2vec_transformer(
    name: str,
    pooling: Model[Ragged, Floats2d],
    window: int = 128,
    stride: int = 96,
    grad_factor: float = 1.0,
    tokenizer_config: dict = {"use_fast": True},
    transformer_config: dict = {},
    mixed_precision: bool = False,
    grad_scaler_config: dict = {},
    max_forward_pieces: int = 4096,
    precision: str = "fp32",
    fast_cpu_dropout: bool = True,
    train_precision: str = "fp32",
) -> Model[List[Doc], List[Floats2d]]:
    """``spacy_crf_ner.WindowedTransformerModel.v1`` used directly as a token-to-vector layer
    of one component (no ``transformer`` component, no listener), as
    ``spacy-transformers.Tok2VecTransformer.v3`` is for ``TransformerModel.v3``.

    It is what a ``TransformerListener.v1`` over the windowed model becomes after
    ``nlp.replace_listeners``: the same layers in the same nesting
    (``chain(chain(transformer, split_trf_batch), trfs2arrays(pooling, grad_factor))``), so
    the weights of a pipeline saved after the replacement load into it.
    """
    from spacy_transformers.layers import split_trf_batch, trfs2arrays

    transformer = build_windowed_transformer_model(
        name, window=window, stride=stride, tokenizer_config=tokenizer_config,
        transformer_config=transformer_config, mixed_precision=mixed_precision,
        grad_scaler_config=grad_scaler_config, max_forward_pieces=max_forward_pieces,
        precision=precision, fast_cpu_dropout=fast_cpu_dropout,
        train_precision=train_precision,
    )
    return chain(chain(transformer, split_trf_batch()), trfs2arrays(pooling, grad_factor))


registry.architectures(WINDOWED_TOK2VEC)(build_windowed_tok2vec_transformer)


def route_listener_replacement(nlp: Language) -> None:
    """Make the pipeline's spacy-transformers models answer ``replace_listeners`` with
    ``listener_replacement_config`` (it calls spacy-transformers' own callback with the
    listener's real config, so other components are served exactly as before)."""
    for _, component in nlp.pipeline:
        attrs = getattr(getattr(component, "model", None), "attrs", None)
        if not isinstance(attrs, dict):
            continue
        callback = attrs.get("replace_listener_cfg")
        if getattr(callback, "__module__", None) == _SPACY_TRANSFORMERS_CALLBACK_MODULE:
            attrs["replace_listener_cfg"] = listener_replacement_config
