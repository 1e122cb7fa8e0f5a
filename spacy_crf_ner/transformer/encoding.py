"""Documents to windows of word pieces, tokenized once (torch-free).

:class:`WindowEncoder` runs the pipeline's fast tokenizer once over whole documents, cuts
the pieces into windows that start and end on spaCy tokens, and aligns tokens to pieces from
the pieces' character offsets with NumPy (:class:`EncodedWindows`). The model that holds it
is :mod:`.model_class`; its builder is :mod:`.windowed_model`.
"""
from dataclasses import dataclass
from typing import Any, List, Optional, Tuple

import numpy
from spacy.attrs import IDX, LENGTH
from spacy.tokens import Doc

from .windows import piece_owners, windows_from_counts


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
