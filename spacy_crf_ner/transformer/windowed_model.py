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
from typing import TYPE_CHECKING, List

from spacy.tokens import Doc
from spacy.util import registry
from thinc.api import Model

from .precision import TRAIN_PRECISIONS, check_precision
from .windows import check_window

if TYPE_CHECKING:
    from spacy_transformers.data_classes import FullTransformerBatch


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
    train_precision: str = "fp32",
) -> Model[List[Doc], "FullTransformerBatch"]:
    """A Hugging Face transformer run over windows of at most ``window`` word pieces,
    ``stride`` pieces apart (EDS-NLP's layout), for spacy-transformers' ``transformer``
    component and its listeners. Drop-in for ``spacy-transformers.TransformerModel.v3`` with
    ``spacy_crf_ner.wordpiece_strided_spans.v1``, with one tokenization per document.

    ``max_forward_pieces``: windows go through the model in groups of equal length holding at
    most this many word pieces, padding included (``windows.forward_chunks``).
    ``precision``: "fp32" (default, exact), or "int8" (CPU), "bf16", "fp16" for inference
    only, or "auto": chosen from the processor's flags or the GPU, and said (``precision``).
    ``train_precision``: "fp32" (default), "bf16" (the training forward under bf16
    autocast, float32 master weights; fast on CPUs with AVX-512 BF16 or AMX and on recent
    GPUs), or "auto" (bf16 where native, else fp32); fp16 training on GPUs is
    ``mixed_precision``.
    ``fast_cpu_dropout``: in training on a CPU, draw the transformer's dropout masks two per
    64-bit random number instead of with torch's ``bernoulli_`` (same distribution, another
    random stream, about a quarter of a MiniLM step saved; ``fast_dropout``); false keeps
    torch's own dropout."""
    check_window(window, stride)
    check_precision(precision)
    check_precision(train_precision, TRAIN_PRECISIONS, "train_precision")
    if max_forward_pieces < 1:
        raise ValueError(f"max_forward_pieces must be at least 1, got {max_forward_pieces}")
    from .model_class import WindowedTransformerModel

    return WindowedTransformerModel(name, window, stride, tokenizer_config, transformer_config,
                                    mixed_precision, grad_scaler_config, max_forward_pieces,
                                    precision, fast_cpu_dropout, train_precision)


# Registered after its definition: catalogue's decorator would erase the typed signature.
registry.architectures("spacy_crf_ner.WindowedTransformerModel.v1")(
    build_windowed_transformer_model)
