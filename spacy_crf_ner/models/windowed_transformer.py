"""``spacy_crf_ner.WindowedTransformerModel.v1``: spacy-transformers' model, fed in one pass.

spacy-transformers' ``TransformerModel`` cuts each batch into spans (``get_spans``), then
tokenizes every span's text again, turns every word piece back into a Python string, and
aligns pieces to tokens token by token in Python. With windows counted in word pieces the
span getter has already tokenized each document once, so a batch is tokenized twice. On a
CPU this costs a few percent of inference; on a GPU, where the forward itself is fast, it
was most of the transformer component's time (0.32 s of 0.37 s on the NCBI test set, H200).

This architecture is the same Thinc model (same weights, serialization, listeners, mixed
precision) with another forward: each document is tokenized once, by the pipeline's own fast
tokenizer, in one batched call; windows of at most ``window`` word pieces, ``stride`` pieces
apart, start and end on spaCy tokens (as ``spacy_crf_ner.wordpiece_strided_spans.v1``); the
windows' inputs are slices of the document's pieces, and the alignment of tokens to pieces
is computed from the pieces' character offsets with NumPy.
"""
import copy
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Callable, List, Optional, Tuple

import numpy
from spacy.attrs import IDX, LENGTH
from spacy.tokens import Doc, Span
from spacy.util import registry
from thinc.api import Model
from thinc.types import Ragged

from ..listeners import listener_replacement_config

if TYPE_CHECKING:
    from spacy_transformers.data_classes import FullTransformerBatch
from ..transformer_windows import windows_from_counts


@dataclass
class EncodedWindows:
    """The windows of a batch of docs, ready for the transformer (row-major, doc by doc)."""

    ranges: List[List[Tuple[int, int]]]  # per doc: (start, end) token range of each window
    input_ids: numpy.ndarray  # [n_windows, max_len] int64, padded
    attention_mask: numpy.ndarray  # [n_windows, max_len] float32
    token_type_ids: Optional[numpy.ndarray]  # [n_windows, max_len] int64, or None
    strings: List[List[str]]  # word piece strings per window, padded like input_ids
    lengths: List[int]  # pieces per window, special tokens included
    align_data: numpy.ndarray  # int32: flat indices into input_ids, token by token
    align_lengths: numpy.ndarray  # int32 [n_tokens]: pieces per token (all docs' tokens)


class WindowEncoder:
    """Tokenize whole documents once and cut them into windows of word pieces.

    Uses the fast (Rust) tokenizer of the pipeline with truncation and padding off. The
    special tokens around one sequence ([CLS] ... [SEP], <s> ... </s>) are read off the
    tokenizer's own template, so any Hugging Face model with a fast tokenizer works.
    """

    def __init__(self, tokenizer: Any):  # a Hugging Face fast tokenizer
        backend = getattr(tokenizer, "backend_tokenizer", None)
        if not getattr(tokenizer, "is_fast", False) or backend is None:
            raise ValueError(
                "spacy_crf_ner.WindowedTransformerModel.v1 needs a fast (Rust) tokenizer: set "
                "tokenizer_config = {\"use_fast\": true}, or use a model that has one "
                f"(got {type(tokenizer).__name__})")
        from tokenizers import Tokenizer

        self.backend = Tokenizer.from_str(backend.to_str())  # a copy: no shared settings
        self.backend.no_truncation()
        self.backend.no_padding()
        probe = self.backend.encode("a b", add_special_tokens=True)
        content = [i for i, special in enumerate(probe.special_tokens_mask) if not special]
        first, last = (content[0], content[-1]) if content else (len(probe.ids), len(probe.ids))
        self.prefix_ids, self.suffix_ids = probe.ids[:first], probe.ids[last + 1 :]
        self.prefix_strings, self.suffix_strings = probe.tokens[:first], probe.tokens[last + 1 :]
        self.n_special = len(self.prefix_ids) + len(self.suffix_ids)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.pad_string = tokenizer.pad_token or ""
        self.with_type_ids = "token_type_ids" in getattr(tokenizer, "model_input_names", [])
        max_len = getattr(tokenizer, "model_max_length", None) or 0
        self.max_len = max_len if 0 < max_len < 1_000_000 else None

    def encode(self, docs: List[Doc], window: int, stride: int) -> EncodedWindows:
        texts = [doc.text for doc in docs]
        encodings = self.backend.encode_batch(texts, add_special_tokens=False) if texts else []
        # A window holds at most ``window`` pieces, unless one token alone is longer: it is
        # kept whole, up to what the model takes (the rest is cut, as spacy-transformers does).
        budget = None if self.max_len is None else self.max_len - self.n_special
        pre = len(self.prefix_ids)
        rows = []  # (ids, strings, owner token of each piece (global), alignable mask)
        ranges: List[List[Tuple[int, int]]] = []
        token_offset = 0
        for doc, enc in zip(docs, encodings):
            n = len(doc)
            if n == 0:
                ranges.append([])
                continue
            ids = numpy.asarray(enc.ids, dtype="int64")
            offsets = numpy.asarray(enc.offsets, dtype="int64").reshape(-1, 2)
            tokens = enc.tokens
            columns = doc.to_array([IDX, LENGTH]).astype("int64")
            starts, ends = columns[:, 0], columns[:, 0] + columns[:, 1]
            # The token holding each piece's first character; a piece that starts in the
            # whitespace after a token belongs to the next token.
            owner = (numpy.searchsorted(starts, offsets[:, 0], side="right") - 1).clip(0, n - 1)
            owner += (offsets[:, 0] >= ends[owner]) & (owner < n - 1)
            alignable = offsets[:, 1] > offsets[:, 0]  # zero-width pieces feed no token
            counts = numpy.bincount(owner, minlength=n)
            cum = numpy.concatenate([[0], numpy.cumsum(counts)])
            doc_ranges = windows_from_counts(counts, window, stride)
            ranges.append(doc_ranges)
            for s, e in doc_ranges:
                p0, p1 = int(cum[s]), int(cum[e])
                if budget is not None:
                    p1 = min(p1, p0 + budget)
                rows.append((ids[p0:p1], tokens[p0:p1], owner[p0:p1] + token_offset,
                             alignable[p0:p1]))
            token_offset += n
        lengths = [len(r[0]) + self.n_special for r in rows]
        width = max(lengths, default=0)
        input_ids = numpy.full((len(rows), width), self.pad_id, dtype="int64")
        attention_mask = numpy.zeros((len(rows), width), dtype="float32")
        strings, flat_parts, token_parts = [], [], []
        prefix, suffix = numpy.asarray(self.prefix_ids), numpy.asarray(self.suffix_ids)
        for r, ((ids, toks, owner, alignable), length) in enumerate(zip(rows, lengths)):
            input_ids[r, :length] = numpy.concatenate([prefix, ids, suffix])
            attention_mask[r, :length] = 1.0
            strings.append(self.prefix_strings + list(toks) + self.suffix_strings
                           + [self.pad_string] * (width - length))
            positions = numpy.flatnonzero(alignable)
            flat_parts.append(r * width + pre + positions)
            token_parts.append(owner[positions])
        flat = numpy.concatenate(flat_parts) if flat_parts else numpy.zeros((0,), "int64")
        owners = numpy.concatenate(token_parts) if token_parts else numpy.zeros((0,), "int64")
        # Token by token, each token's pieces in increasing order (window by window), like
        # spacy-transformers' own alignment: stable sort on the owner only.
        order = numpy.argsort(owners, kind="stable")
        return EncodedWindows(
            ranges=ranges,
            input_ids=input_ids,
            attention_mask=attention_mask,
            token_type_ids=numpy.zeros_like(input_ids) if self.with_type_ids else None,
            strings=strings,
            lengths=lengths,
            align_data=flat[order].astype("int32"),
            align_lengths=numpy.bincount(owners, minlength=token_offset).astype("int32"),
        )


# The model class is built on first use (see ``_model_class``), so these take ``Any``.
def windowed_forward(model: Any, docs: List[Doc], is_train: bool) -> Tuple[Any, Callable]:
    """Windows -> Hugging Face model -> ``FullTransformerBatch``, as spacy-transformers'
    forward returns it, so its pipe, listeners and backprop work unchanged."""
    from spacy_transformers.data_classes import FullTransformerBatch, WordpieceBatch
    from spacy_transformers.util import maybe_flush_pytorch_cache

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
        input_ids=windows.input_ids,
        attention_mask=windows.attention_mask,
        lengths=windows.lengths,
        token_type_ids=windows.token_type_ids,
    )
    model_output, backprop_tensors = model.layers[0](wordpieces, is_train)
    output = FullTransformerBatch(
        spans=_as_spans(docs, windows.ranges),
        wordpieces=wordpieces,
        model_output=model_output,
        align=Ragged(windows.align_data, windows.align_lengths),
    )

    def backprop(d_output: Any) -> List[Doc]:
        backprop_tensors(d_output.model_output)
        return docs

    return output, backprop


def _as_spans(docs: List[Doc], ranges: List[List[Tuple[int, int]]]) -> List[List[Span]]:
    return [[doc[s:e] for s, e in doc_ranges] for doc, doc_ranges in zip(docs, ranges)]


def windowed_spans(model: Any, docs: List[Doc]) -> List[List[Span]]:
    """The windows as spans (``attrs["get_spans"]``, read by spacy-transformers' init)."""
    return _as_spans(docs, model.encode_windows(docs).ranges)


_CLASS: list = []


def _model_class() -> Any:
    """Defined on first use: importing this module needs neither torch nor
    spacy-transformers (an optional dependency)."""
    if _CLASS:
        return _CLASS[0]
    from spacy_transformers.layers.transformer_model import TransformerModel

    class _WindowedTransformerModel(TransformerModel):
        """spacy-transformers' ``TransformerModel`` with ``windowed_forward``."""

        def __init__(self, name: str, window: int, stride: int, tokenizer_config: dict = {},
                     transformer_config: dict = {}, mixed_precision: bool = False,
                     grad_scaler_config: dict = {}):
            super().__init__(name, None, tokenizer_config, transformer_config,  # type: ignore[arg-type]
                             mixed_precision, grad_scaler_config)  # get_spans is set below
            self._func = windowed_forward
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

        def copy(self) -> Any:
            """Like ``TransformerModel.copy``, keeping this class (and so this forward)."""
            copied: Any = type(self)(self.attrs["name"], self.attrs["window"], self.attrs["stride"])
            params = {n: self.get_param(n) if self.has_param(n) else None
                      for n in self.param_names}
            copied.params = copy.deepcopy(params)
            copied.dims = copy.deepcopy(self._dims)
            copied.layers[0] = copy.deepcopy(self.layers[0])
            for n in self.grad_names:
                copied.set_grad(n, self.get_grad(n).copy())
            return copied

    _WindowedTransformerModel.__name__ = _WindowedTransformerModel.__qualname__ = \
        "WindowedTransformerModel"
    _CLASS.append(_WindowedTransformerModel)
    return _WindowedTransformerModel


def __getattr__(name: str) -> Any:
    # ``WindowedTransformerModel`` as a module attribute, built on first access (pickle
    # finds the class of a pickled model this way).
    if name == "WindowedTransformerModel":
        return _model_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def build_windowed_transformer_model(
    name: str,
    window: int = 128,
    stride: int = 96,
    tokenizer_config: dict = {"use_fast": True},
    transformer_config: dict = {},
    mixed_precision: bool = False,
    grad_scaler_config: dict = {},
) -> Model[List[Doc], "FullTransformerBatch"]:
    """A Hugging Face transformer run over windows of at most ``window`` word pieces,
    ``stride`` pieces apart (EDS-NLP's layout), for spacy-transformers' ``transformer``
    component and its listeners. Drop-in for ``spacy-transformers.TransformerModel.v3`` with
    ``spacy_crf_ner.wordpiece_strided_spans.v1``, with one tokenization per document."""
    if not 0 < stride <= window:
        raise ValueError(f"need 0 < stride <= window, got window={window}, stride={stride}")
    return _model_class()(name, window, stride, tokenizer_config, transformer_config,
                          mixed_precision, grad_scaler_config)


registry.architectures("spacy_crf_ner.WindowedTransformerModel.v1")(
    build_windowed_transformer_model)
