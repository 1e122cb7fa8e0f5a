"""``spacy_crf_ner.WindowedTransformerModel.v1``: spacy-transformers' model, fed in one pass.

spacy-transformers' ``TransformerModel`` cuts each batch into spans (``get_spans``), then
tokenizes every span's text again, turns every word piece back into a Python string, and
aligns pieces to tokens token by token in Python. With windows counted in word pieces the
span getter has already tokenized each document once, so a batch is tokenized twice: a
small cost on a CPU, most of the transformer component's time on a GPU, where the forward
itself is fast (BENCHMARKS.md, "Design figures").

This architecture is the same Thinc model (same weights, serialization, listeners, mixed
precision) with another forward: each document is tokenized once, by the pipeline's own fast
tokenizer, in one batched call; windows of at most ``window`` word pieces, ``stride`` pieces
apart, start and end on spaCy tokens (as ``spacy_crf_ner.wordpiece_strided_spans.v1``); the
windows' inputs are slices of the document's pieces, and the alignment of tokens to pieces
is computed from the pieces' character offsets with NumPy.
"""
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, List, Optional, Tuple

import numpy
from spacy.attrs import IDX, LENGTH
from spacy.tokens import Doc
from spacy.util import registry
from thinc.api import Model

from .precision import check_precision
from .windows import check_window, piece_owners, windows_from_counts

if TYPE_CHECKING:
    from spacy_transformers.data_classes import FullTransformerBatch


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
            owner = piece_owners(starts, ends, offsets)
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


def build_windowed_transformer_model(
    name: str,
    window: int = 128,
    stride: int = 96,
    tokenizer_config: dict = {"use_fast": True},
    transformer_config: dict = {},
    mixed_precision: bool = False,
    grad_scaler_config: dict = {},
    max_forward_pieces: int = 4096,
    precision: str = "fp32",
    fast_cpu_dropout: bool = True,
) -> Model[List[Doc], "FullTransformerBatch"]:
    """A Hugging Face transformer run over windows of at most ``window`` word pieces,
    ``stride`` pieces apart (EDS-NLP's layout), for spacy-transformers' ``transformer``
    component and its listeners. Drop-in for ``spacy-transformers.TransformerModel.v3`` with
    ``spacy_crf_ner.wordpiece_strided_spans.v1``, with one tokenization per document.

    ``max_forward_pieces``: windows go through the model in groups of equal length holding at
    most this many word pieces, padding included (``windows.forward_chunks``).
    ``precision``: "fp32" (default, exact), or "int8" (CPU), "bf16", "fp16" for inference
    only (``precision``); training always runs in float32 (or ``mixed_precision``).
    ``fast_cpu_dropout``: in training on a CPU, draw the transformer's dropout masks two per
    64-bit random number instead of with torch's ``bernoulli_`` (same distribution, another
    random stream, about a quarter of a MiniLM step saved; ``fast_dropout``); false keeps
    torch's own dropout."""
    check_window(window, stride)
    check_precision(precision)
    if max_forward_pieces < 1:
        raise ValueError(f"max_forward_pieces must be at least 1, got {max_forward_pieces}")
    from .model_class import WindowedTransformerModel

    return WindowedTransformerModel(name, window, stride, tokenizer_config, transformer_config,
                                    mixed_precision, grad_scaler_config, max_forward_pieces,
                                    precision, fast_cpu_dropout)


# Registered after its definition: catalogue's decorator would erase the typed signature.
registry.architectures("spacy_crf_ner.WindowedTransformerModel.v1")(
    build_windowed_transformer_model)
