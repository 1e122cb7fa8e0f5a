"""``WindowedTransformerModel``: spacy-transformers' ``TransformerModel`` with a forward that
tokenizes each document once (``windowed_forward``, windows from ``windowed_model.WindowEncoder``).

This module imports spacy-transformers (an optional dependency, and torch with it), so only
the builder ``windowed_model.build_windowed_transformer_model`` imports it, when a config
uses the architecture. Pickle finds the class here by its plain module path.
"""
import copy
from functools import partial
from typing import Any, Callable, List, Optional, Tuple, cast

from spacy.tokens import Doc, Span
from spacy_transformers.data_classes import FullTransformerBatch, WordpieceBatch
from spacy_transformers.layers.transformer_model import TransformerModel
from spacy_transformers.util import maybe_flush_pytorch_cache
from thinc.types import Floats2d, Ints1d, Ints2d, Ragged

from ..internals import set_forward
from .listeners import listener_replacement_config
from .windowed_model import EncodedWindows, WindowEncoder


def windowed_forward(
    model: "WindowedTransformerModel", docs: List[Doc], is_train: bool
) -> Tuple[FullTransformerBatch, Callable]:
    """Windows -> Hugging Face model -> ``FullTransformerBatch``, as spacy-transformers'
    forward returns it, so its pipe, listeners and backprop work unchanged."""
    docs = list(docs)
    # spacy-transformers' optional cache flushing (attrs["flush_cache_chance"], default 0).
    # It draws from Python's `random` on every call, as TransformerModel.v3 does, so
    # training shuffles the same way under either model.
    maybe_flush_pytorch_cache(chance=model.attrs.get("flush_cache_chance", 0))
    windows = model.encode_windows(docs)
    if not windows.lengths:  # no tokens in any doc
        return FullTransformerBatch.empty(len(docs)), lambda d_output: docs
    wordpieces = WordpieceBatch(
        strings=windows.strings,
        input_ids=cast(Ints2d, windows.input_ids),
        attention_mask=cast(Floats2d, windows.attention_mask),
        lengths=windows.lengths,
        token_type_ids=cast(Optional[Ints2d], windows.token_type_ids),
    )
    model_output, backprop_tensors = model.layers[0](wordpieces, is_train)
    output = FullTransformerBatch(
        spans=_as_spans(docs, windows.ranges),
        wordpieces=wordpieces,
        model_output=model_output,
        align=Ragged(cast(Ints1d, windows.align_data), cast(Ints1d, windows.align_lengths)),
    )

    def backprop(d_output: FullTransformerBatch) -> List[Doc]:
        backprop_tensors(d_output.model_output)
        return docs

    return output, backprop


def _as_spans(docs: List[Doc], ranges: List[List[Tuple[int, int]]]) -> List[List[Span]]:
    return [[doc[s:e] for s, e in doc_ranges] for doc, doc_ranges in zip(docs, ranges)]


def windowed_spans(model: "WindowedTransformerModel", docs: List[Doc]) -> List[List[Span]]:
    """The windows as spans (``attrs["get_spans"]``, read by spacy-transformers' init)."""
    return _as_spans(docs, model.encode_windows(docs).ranges)


class WindowedTransformerModel(TransformerModel):
    """spacy-transformers' ``TransformerModel`` with ``windowed_forward``."""

    def __init__(self, name: str, window: int, stride: int, tokenizer_config: dict = {},
                 transformer_config: dict = {}, mixed_precision: bool = False,
                 grad_scaler_config: dict = {}):
        super().__init__(name, None, tokenizer_config, transformer_config,  # type: ignore[arg-type]
                         mixed_precision, grad_scaler_config)  # get_spans is set below
        set_forward(self, windowed_forward)
        self.attrs["window"], self.attrs["stride"] = window, stride
        self.attrs["get_spans"] = partial(windowed_spans, self)
        # What ``nlp.replace_listeners`` writes into the config (see ``listeners``).
        self.attrs["replace_listener_cfg"] = listener_replacement_config
        self._window_encoder: Tuple[Any, Optional[WindowEncoder]] = (None, None)

    def encode_windows(self, docs: List[Doc]) -> EncodedWindows:
        tokenizer = self.tokenizer  # replaced by initialize() and by loading
        if tokenizer is None:
            raise ValueError("the transformer is not initialized yet: call "
                             "nlp.initialize() or load a trained pipeline")
        known, encoder = self._window_encoder
        if encoder is None or known is not tokenizer:
            encoder = WindowEncoder(tokenizer)
            self._window_encoder = (tokenizer, encoder)
        return encoder.encode(list(docs), self.attrs["window"], self.attrs["stride"])

    def copy(self) -> "WindowedTransformerModel":
        """Like ``TransformerModel.copy``, keeping this class (and so this forward)."""
        copied = type(self)(self.attrs["name"], self.attrs["window"], self.attrs["stride"])
        copied.layers[0] = copy.deepcopy(self.layers[0])
        for n in self.grad_names:
            copied.set_grad(n, self.get_grad(n).copy())
        return copied
