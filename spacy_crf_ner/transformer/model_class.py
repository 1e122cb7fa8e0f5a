"""``WindowedTransformerModel``: spacy-transformers' ``TransformerModel`` with a forward that
tokenizes each document once (``windowed_forward``, windows from ``encoding.WindowEncoder``).

This module imports spacy-transformers (an optional dependency, and torch with it), so only
the builder ``windowed_model.build_windowed_transformer_model`` imports it, when a config
uses the architecture. Pickle finds the class here by its plain module path.
"""
import copy
from contextlib import nullcontext
from functools import partial
from typing import Any, Callable, List, Optional, Tuple, cast

import numpy
import torch
from spacy.tokens import Doc, Span
from spacy_transformers.data_classes import FullTransformerBatch, TransformerData, WordpieceBatch
from spacy_transformers.layers.hf_shim import HFShim
from spacy_transformers.layers.transformer_model import TransformerModel
from spacy_transformers.util import maybe_flush_pytorch_cache
from thinc.api import Model, torch2xp
from thinc.types import Floats2d, Ints1d, Ints2d, Ragged
from wasabi import msg

from ..internals import load_hf_shim_bytes, set_forward, shim_module, swapped_shim_module
from .encoding import EncodedWindows, WindowEncoder
from .fast_dropout import cpu_dropout
from .listener_config import listener_replacement_config
from .precision import (
    TRAIN_PRECISIONS, InferenceCopies, check_precision, choose_precision,
    choose_train_precision, cpu_flags, record_precision,
)
from .windows import forward_chunks


def windowed_forward(
    model: "WindowedTransformerModel", docs: List[Doc], is_train: bool
) -> Tuple[FullTransformerBatch, Callable]:
    """Windows -> Hugging Face model -> ``FullTransformerBatch``, as spacy-transformers'
    forward returns it, so its pipe, listeners and backprop work unchanged.

    The windows go through the model in groups of equal length (``forward_chunks``), each
    padded to its own longest window only; the outputs are put back in window order, padded
    to the batch's longest window, which is what the alignment and the listeners read.
    In training, dropout on the CPU draws its masks with ``fast_dropout`` (unless the model
    was built with ``fast_cpu_dropout = false``).
    """
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
    chunks = forward_chunks(windows.lengths, model.max_forward_pieces)
    transformer = model.transformer_for(is_train)
    with cpu_dropout() if is_train and model.fast_cpu_dropout else nullcontext(), \
            model.train_autocast() if is_train else nullcontext():
        if len(chunks) == 1 and max(windows.lengths) == windows.input_ids.shape[1]:
            model_output, backprop_tensors = transformer(wordpieces, is_train)
        else:
            model_output, backprop_tensors = _chunked_forward(transformer, wordpieces,
                                                              chunks, is_train)
    output = WindowedTransformerBatch(
        spans=_as_spans(docs, windows.ranges),
        wordpieces=wordpieces,
        model_output=model_output,
        align=Ragged(cast(Ints1d, windows.align_data), cast(Ints1d, windows.align_lengths)),
        doc_n_tokens=[len(doc) for doc in docs],
    )

    def backprop(d_output: FullTransformerBatch) -> List[Doc]:
        backprop_tensors(d_output.model_output)
        return docs

    return output, backprop


def _chunked_forward(transformer: Model, wordpieces: WordpieceBatch,
                     chunks: List[numpy.ndarray], is_train: bool) -> Tuple[Any, Callable]:
    """Run ``transformer`` on each group of rows, cut to the group's own width, and gather
    the outputs into one ``ModelOutput`` shaped like the whole batch (zeros in the padding).
    The backprop hands each group its own slice of the gradient."""
    from transformers.utils import ModelOutput

    width = wordpieces.input_ids.shape[1]
    input_ids: Any = wordpieces.input_ids  # [n_windows, width] arrays
    attention_mask: Any = wordpieces.attention_mask
    token_type_ids: Any = wordpieces.token_type_ids
    parts = []
    for rows in chunks:
        length = max(wordpieces.lengths[r] for r in rows)
        sub = WordpieceBatch(
            strings=[wordpieces.strings[r][:length] for r in rows],
            input_ids=input_ids[rows, :length],
            attention_mask=attention_mask[rows, :length],
            lengths=[wordpieces.lengths[r] for r in rows],
            token_type_ids=None if token_type_ids is None else token_type_ids[rows, :length],
        )
        output, backprop = transformer(sub, is_train)
        parts.append((rows, length, output, backprop))
    first = parts[0][2]
    device = first.last_hidden_state.device
    index = [torch.as_tensor(rows, dtype=torch.long, device=device) for rows, *_ in parts]

    lengths = [length for _, length, _, _ in parts]

    def gather(values: List[Any]) -> Any:
        """One batch-shaped tensor from each group's tensor (rows in window order): every
        axis as long as its group's windows (pieces; both axes of attention weights) is
        padded to the batch's width, the others (hidden size, heads) are kept."""
        t0 = values[0]
        sequence = [d for d in range(1, t0.dim())
                    if all(v.shape[d] == n for v, n in zip(values, lengths))]
        shape = [len(wordpieces.lengths)] + [width if d in sequence else t0.shape[d]
                                             for d in range(1, t0.dim())]
        full = t0.new_zeros(shape)
        with torch.no_grad():
            for i, v in enumerate(values):
                target = full[(slice(None),) + tuple(slice(0, n) for n in v.shape[1:])]
                target.index_copy_(0, index[i], v.detach())
        return full

    merged = ModelOutput()
    for key, value in first.items():
        if isinstance(value, torch.Tensor):
            merged[key] = gather([p[2][key] for p in parts])
        elif isinstance(value, tuple) and all(isinstance(v, torch.Tensor) for v in value):
            merged[key] = tuple(gather([p[2][key][j] for p in parts])
                                for j in range(len(value)))

    def backprop_chunks(d_output: Any) -> Any:
        for i, (rows, length, _output, backprop) in enumerate(parts):
            d_part = ModelOutput()
            for key, value in d_output.items():
                d_part[key] = value.index_select(0, index[i].to(value.device))[:, :length]
            backprop(d_part)
        return []

    return merged, backprop_chunks


class LeanHFShim(HFShim):
    """spacy-transformers' ``HFShim`` whose ``from_bytes`` loads the weights with a third of
    the memory peak (``internals.load_hf_shim_bytes``); the bytes it reads and writes are
    the same, so pipelines saved by either shim load with the other."""

    def from_bytes(self, bytes_data: bytes) -> "LeanHFShim":
        load_hf_shim_bytes(self, bytes_data)
        return self


class WindowedTransformerBatch(FullTransformerBatch):
    """``FullTransformerBatch`` that splits itself by doc from its windows' token counts.

    spacy-transformers' ``split_by_doc`` finds each doc's tokens by iterating every token of
    every window (a Python object per token); here each doc's windows cover its tokens
    ``0..len(doc)`` and the alignment lists tokens doc by doc, so the counts say it all.
    """

    def __init__(self, *, doc_n_tokens: List[int], **fields: Any):
        super().__init__(**fields)
        self.doc_n_tokens = doc_n_tokens

    def split_by_doc(self) -> List[TransformerData]:
        from transformers.utils import ModelOutput

        arrays: dict = {}
        n_rows = self.wordpieces.input_ids.shape[0]
        for key, value in self.model_output.items():
            if isinstance(value, torch.Tensor):
                arrays[key] = torch2xp(value)
            elif (isinstance(value, tuple) and all(isinstance(t, torch.Tensor) for t in value)
                  and all(t.shape[0] == n_rows for t in value)):
                arrays[key] = [torch2xp(t) for t in value]
        width = self.wordpieces.input_ids.shape[1]
        outputs: List[TransformerData] = []
        row = token = 0
        for doc_spans, n_tokens in zip(self.spans, self.doc_n_tokens):
            if not doc_spans:
                outputs.append(TransformerData.empty())
                continue
            end = row + len(doc_spans)
            align = self.align[token : token + n_tokens]
            align.data = align.data - row * width
            doc_output = ModelOutput()
            for key, value in arrays.items():
                doc_output[key] = ([t[row:end] for t in value] if isinstance(value, list)
                                   else value[row:end])
            outputs.append(TransformerData(wordpieces=self.wordpieces[row:end],
                                           model_output=doc_output, align=align))
            row, token = end, token + n_tokens
        return outputs


def _as_spans(docs: List[Doc], ranges: List[List[Tuple[int, int]]]) -> List[List[Span]]:
    return [[doc[s:e] for s, e in doc_ranges] for doc, doc_ranges in zip(docs, ranges)]


def windowed_spans(model: "WindowedTransformerModel", docs: List[Doc]) -> List[List[Span]]:
    """The windows as spans (``attrs["get_spans"]``, read by spacy-transformers' init)."""
    return _as_spans(docs, model.encode_windows(docs).ranges)


class WindowedTransformerModel(TransformerModel):
    """spacy-transformers' ``TransformerModel`` with ``windowed_forward``."""

    def __init__(self, name: str, window: int, stride: int, tokenizer_config: dict = {},
                 transformer_config: dict = {}, mixed_precision: bool = False,
                 grad_scaler_config: dict = {}, max_forward_pieces: int = 4096,
                 precision: str = "fp32", fast_cpu_dropout: bool = True,
                 train_precision: str = "fp32"):
        super().__init__(name, None, tokenizer_config, transformer_config,  # type: ignore[arg-type]
                         mixed_precision, grad_scaler_config)  # get_spans is set below
        check_precision(precision)
        check_precision(train_precision, TRAIN_PRECISIONS, "train_precision")
        set_forward(self, windowed_forward)
        self.attrs["window"], self.attrs["stride"] = window, stride
        # Plain attributes, not attrs: Thinc restores attrs from the saved model, and these
        # two must follow the config the pipeline is loaded with.
        self.max_forward_pieces = max_forward_pieces
        self._inference_copies = InferenceCopies()
        self._precision = "fp32"
        self.precision_choice: Optional[Tuple[str, str]] = None  # ("bf16", why) for "auto"
        self.precision = precision  # resolves "auto" (and says so)
        self.train_precision = train_precision
        self._train_choice: Optional[Tuple[str, str]] = None
        self.fast_cpu_dropout = fast_cpu_dropout
        for shim in self.layers[0].shims:  # same shim, lighter loading
            if type(shim) is HFShim:
                shim.__class__ = LeanHFShim
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

    @property
    def precision(self) -> str:
        """The precision this model predicts at, as configured ("auto" included); the one it
        runs is :attr:`inference_precision`."""
        return self._precision

    @precision.setter
    def precision(self, precision: str) -> None:
        check_precision(precision)
        self._inference_copies.forget()
        self._precision = precision
        self.precision_choice = None
        if precision == "auto":
            chosen, why = choose_precision(cpu_flags(), *_device())
            self.precision_choice = (chosen, why)
            msg.info(f"precision auto: the transformer predicts in {chosen}, because {why}")

    @property
    def inference_precision(self) -> str:
        """What inference runs at: the configured precision, or what "auto" chose."""
        return self.precision_choice[0] if self.precision_choice else self._precision

    def train_dtype(self) -> str:
        """What training runs at: ``train_precision``, or what "auto" chose (once)."""
        if self.train_precision != "auto":
            return self.train_precision
        if self._train_choice is None:
            self._train_choice = choose_train_precision(cpu_flags(), *_device())
            msg.info(f"train_precision auto: the transformer trains in "
                     f"{self._train_choice[0]}, because {self._train_choice[1]}")
        return self._train_choice[0]

    def train_autocast(self) -> Any:
        """The context of a training forward: bf16 autocast when training in bf16 (the
        weights, gradients and optimizer state stay float32), else nothing."""
        if self.train_dtype() != "bf16":
            return nullcontext()
        module = shim_module(self.layers[0].shims[0])
        device = next(module.parameters()).device if module is not None else "cpu"
        return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)

    def transformer_for(self, is_train: bool) -> Model:
        """The Hugging Face layer to call: ``layers[0]``, or for inference at a reduced
        ``precision`` the same layer running a reduced-precision copy of the model."""
        layer = self.layers[0]
        if is_train:
            self._inference_copies.forget()  # the weights are about to change
        if is_train:
            return self._float32_outputs(layer) if self.train_dtype() == "bf16" else layer
        precision = self.inference_precision
        if precision == "fp32":
            return layer
        shim = layer.shims[0]
        module = self._inference_copies.get(shim_module(shim), precision)

        def forward(wordpieces: WordpieceBatch, is_train: bool) -> Tuple[Any, Callable]:
            with swapped_shim_module(shim, module):
                output, backprop = layer(wordpieces, False)
            _to_float32(output)  # bf16/fp16 copies: hand on float32
            return output, backprop

        return cast(Model, forward)

    @staticmethod
    def _float32_outputs(layer: Model) -> Model:
        """``layer`` whose reduced-precision outputs (bf16 under autocast) are handed on as
        float32, with their gradients cast back to each output's own type."""

        def forward(wordpieces: WordpieceBatch, is_train: bool) -> Tuple[Any, Callable]:
            output, backprop = layer(wordpieces, is_train)
            dtypes = _to_float32(output)

            def backprop_cast(d_output: Any) -> Any:
                for key, dtype in dtypes.items():
                    if key in d_output and d_output[key] is not None:
                        d_output[key] = d_output[key].to(dtype)
                return backprop(d_output)

            return output, backprop_cast

        return cast(Model, forward)

    def copy(self) -> "WindowedTransformerModel":
        """Like ``TransformerModel.copy``, keeping this class (and so this forward)."""
        copied = type(self)(self.attrs["name"], self.attrs["window"], self.attrs["stride"],
                            max_forward_pieces=self.max_forward_pieces,
                            precision=self.precision, fast_cpu_dropout=self.fast_cpu_dropout,
                            train_precision=self.train_precision)
        copied.layers[0] = copy.deepcopy(self.layers[0])
        for n in self.grad_names:
            copied.set_grad(n, self.get_grad(n).copy())
        return copied


def _to_float32(output: Any) -> dict:
    """Cast, in place, the floating-point tensors of a model output that are not float32;
    returns ``{key: original dtype}`` for what it cast."""
    cast_from = {}
    for key, value in output.items():
        if isinstance(value, torch.Tensor) and value.is_floating_point() \
                and value.dtype != torch.float32:
            cast_from[key] = value.dtype
            output[key] = value.float()
    return cast_from


def _device() -> Tuple[str, bool]:
    """``(device type, whether the GPU computes bf16 natively)`` for Thinc's current ops."""
    from thinc.api import get_current_ops

    if get_current_ops().device_type == "cpu":
        return "cpu", False
    return "cuda", bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())


def set_precision(nlp: Any, precision: str) -> int:
    """Make every ``spacy_crf_ner.WindowedTransformerModel.v1`` in ``nlp`` predict at
    ``precision`` from now on, in this process (the saved config is not changed: to ship a
    pipeline at another precision, set ``precision`` in its config). Returns how many models
    changed; a pipeline without one is a ``ValueError``."""
    check_precision(precision)
    found = 0
    for _name, pipe in nlp.pipeline:
        model: Any = getattr(pipe, "model", None)
        for node in model.walk() if hasattr(model, "walk") else []:
            if isinstance(node, WindowedTransformerModel):
                node.precision = precision
                found += 1
    if not found:
        raise ValueError("no spacy_crf_ner.WindowedTransformerModel.v1 in this pipeline: "
                         "only that transformer architecture runs at another precision")
    record_precision(nlp)
    return found
