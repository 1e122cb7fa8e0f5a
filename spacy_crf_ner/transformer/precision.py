"""Opt-in reduced precision for inference: ``precision = "int8" | "bf16" | "fp16"``.

The weights are always kept, trained and saved in float32; a reduced-precision copy of the
Hugging Face model is made the first time the pipeline predicts, and made again after any
training step or weight load, so the saved pipeline and ``spacy package`` are unchanged and
the same pipeline loads at any precision (``spacy_crf_ner predict --precision int8``).

* ``int8``: dynamic int8 quantization of the ``nn.Linear`` layers (weights stored in int8 per
  output channel, activations quantized per batch), CPU only, except the feed-forward
  output projections (``quantizable``). The copy shares every other tensor with the float32
  model, so it costs about a quarter of the quantized weights' memory.
* ``bf16`` / ``fp16``: a copy of the model cast to that type. Meant for GPUs; ``bf16`` also
  runs on CPUs (slowly without native bf16 instructions).

The hidden states come back as float32, so everything after the transformer is unchanged.
"""
import copy
import warnings
from typing import Any, Dict, Optional

PRECISIONS = ("fp32", "int8", "bf16", "fp16")


def check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, "
                         f"got {precision!r}")


def quantizable(layer: Any) -> bool:
    """Whether ``int8`` quantizes this layer: every linear layer except those that project
    down (more inputs than outputs), i.e. each feed-forward block's output projection. Its
    input is the block's widened activations, whose few large values a per-batch int8 scale
    cannot hold: quantizing them cost MiniLM 1.1 of the 1.4 F1 points int8 lost on NCBI
    (BENCHMARKS.md, "Design figures"), for a third of the linear layers' time."""
    import torch

    return isinstance(layer, torch.nn.Linear) and layer.in_features <= layer.out_features


def inference_copy(module: Any, precision: str) -> Any:
    """A copy of the torch ``module`` that computes at ``precision`` (not "fp32"), in
    evaluation mode; ``module`` itself is left as it is."""
    import torch

    check_precision(precision)
    device = next(module.parameters()).device
    if precision == "int8":
        if device.type != "cpu":
            raise ValueError(f"precision 'int8' (dynamic quantization) runs on the CPU only; "
                             f"the model is on {device}: use 'fp16' or 'bf16' on a GPU")
        # Share every parameter and buffer: quantization replaces the copy's Linear modules
        # with int8 ones and reads, never writes, the float32 weights.
        memo: Dict[int, Any] = {id(t): t for t in list(module.parameters())
                                + list(module.buffers())}
        shared = copy.deepcopy(module, memo)
        with warnings.catch_warnings():
            # torch.ao.quantization announces its move to torchao; it still works, and the
            # warnings would repeat on every load.
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", UserWarning)
            from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

            spec = {name: per_channel_dynamic_qconfig
                    for name, layer in shared.named_modules() if quantizable(layer)}
            quantized = quantize_dynamic(shared, spec, inplace=True)
        return quantized.eval()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return copy.deepcopy(module).to(dtype).eval()


class InferenceCopies:
    """The reduced-precision copy of a model, remade whenever the float32 model may have
    changed: another module object (a load), or a training forward since the last copy."""

    def __init__(self) -> None:
        self._source: Optional[Any] = None
        self._copy: Optional[Any] = None

    def forget(self) -> None:
        self._source = self._copy = None

    def get(self, module: Any, precision: str) -> Any:
        if self._copy is None or self._source is not module:
            self._copy = inference_copy(module, precision)
            self._source = module
        return self._copy
