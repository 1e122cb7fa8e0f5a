"""Reduced precision for inference (``precision``) and for training (``train_precision``),
and ``auto``: the choice from what the processor reports.

The weights are always kept, trained and saved in float32; a reduced-precision copy of the
Hugging Face model is made the first time the pipeline predicts, and made again after any
training step or weight load, so the saved pipeline and ``spacy package`` are unchanged and
the same pipeline loads at any precision (``spacy_crf_ner predict --precision int8``).

* ``int8``: dynamic int8 quantization of the ``nn.Linear`` layers (weights stored in int8 per
  output channel, activations quantized per batch), CPU only, except the feed-forward
  output projections (``quantizable``). The copy shares every other tensor with the float32
  model, so it costs about a quarter of the quantized weights' memory.
* ``bf16`` / ``fp16``: a copy of the model cast to that type. ``bf16`` is fast on GPUs and
  on CPUs with native bf16 instructions (AVX-512 BF16, AMX), slow elsewhere.
* ``auto``: :func:`choose_precision` picks one of the above from the processor's flags
  (:func:`cpu_flags`) or the GPU, once per model, and says what it chose and why.

The hidden states come back as float32, so everything after the transformer is unchanged.

Training (``train_precision = "bf16"``, or ``"auto"``: bf16 where the CPU or GPU runs it
natively) runs the transformer's forward under ``torch.autocast`` in bfloat16; the backward
follows the recorded types, and the weights, their gradients and the optimizer's state stay
float32 (the master weights). bf16 has float32's exponent range, so no loss scaling is needed
(fp16 training is spacy-transformers' ``mixed_precision``, with its grad scaler, on GPUs).
"""
import copy
import os
import warnings
from typing import Any, Dict, FrozenSet, Iterable, Optional, Tuple

COMPUTED_PRECISIONS = ("fp32", "int8", "bf16", "fp16")  # what a model can run at
PRECISIONS = COMPUTED_PRECISIONS + ("auto",)  # what a config or --precision may say
TRAIN_PRECISIONS = ("fp32", "bf16", "auto")
# Processor flags (as /proc/cpuinfo names them) that make each precision fast.
BF16_FLAGS = ("amx_bf16", "avx512_bf16")
INT8_FLAGS = ("amx_int8", "avx512_vnni", "avx_vnni")
# Tests and users can state the flags instead of reading them (comma or space separated).
FLAGS_ENV = "SPACY_CRF_NER_CPU_FLAGS"


def check_precision(precision: str, allowed: Tuple[str, ...] = PRECISIONS,
                    what: str = "precision") -> None:
    if precision not in allowed:
        raise ValueError(f"{what} must be one of {', '.join(allowed)}, got {precision!r}")


def cpu_flags() -> FrozenSet[str]:
    """The instruction-set flags of this machine's processor: :data:`FLAGS_ENV` when set,
    else the ``flags`` line of ``/proc/cpuinfo`` (Linux), else what torch reports of its CPU
    capability (``AVX512``: ``avx512f``; ``AVX2``: ``avx2``), else none."""
    stated = os.environ.get(FLAGS_ENV)
    if stated is not None:
        return frozenset(stated.replace(",", " ").split())
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            for line in info:
                if line.startswith("flags"):
                    return frozenset(line.partition(":")[2].split())
    except OSError:
        pass
    try:
        import torch

        capability = torch.backends.cpu.get_cpu_capability().lower()
    except Exception:  # noqa: BLE001 - an old torch: nothing known
        return frozenset()
    return frozenset({"avx512": {"avx512f", "avx2"}, "avx2": {"avx2"}}.get(capability, set()))


def cpu_model_name() -> str:
    """The processor's model name (``/proc/cpuinfo``), or the platform's word for it."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def choose_precision(flags: Iterable[str], device: str = "cpu",
                     gpu_bf16: bool = False) -> Tuple[str, str]:
    """``(precision, why)`` for ``precision = "auto"``: the fastest precision whose F1 cost
    is small on this hardware (BENCHMARKS.md, "Reduced precision").

    * a GPU: ``bf16`` where it computes in bf16 natively (``gpu_bf16``), else ``fp16``;
    * a CPU with AMX or AVX-512 BF16: ``bf16`` (about 2x float32's forward, F1 within the
      seeds' spread);
    * a CPU with int8 dot products (VNNI, AMX-INT8) but no native bf16: ``int8``;
    * any other CPU (AVX2 only...): ``fp32``: bf16 there is emulated and several times
      slower, and int8 gains too little to pay its F1 cost.
    """
    if device != "cpu":
        if gpu_bf16:
            return "bf16", "a GPU that computes in bf16 natively"
        return "fp16", "a GPU without native bf16"
    flags = set(flags)
    native_bf16 = [f for f in BF16_FLAGS if f in flags]
    if native_bf16:
        return "bf16", f"the CPU has native bf16 instructions ({', '.join(native_bf16)})"
    vnni = [f for f in INT8_FLAGS if f in flags]
    if vnni:
        return "int8", (f"the CPU has int8 dot products ({', '.join(vnni)}) but no native "
                        "bf16")
    return "fp32", "the CPU has neither native bf16 nor int8 dot products (AVX-512 BF16, " \
                   "AMX or VNNI): reduced precision would not be faster"


def choose_train_precision(flags: Iterable[str], device: str = "cpu",
                           gpu_bf16: bool = False) -> Tuple[str, str]:
    """``(train precision, why)`` for ``train_precision = "auto"``: ``bf16`` where the CPU
    (AMX, AVX-512 BF16) or the GPU computes it natively, else ``fp32``."""
    if device != "cpu":
        if gpu_bf16:
            return "bf16", "a GPU that computes in bf16 natively"
        return "fp32", "a GPU without native bf16 (fp16 is mixed_precision)"
    native = [f for f in BF16_FLAGS if f in set(flags)]
    if native:
        return "bf16", f"the CPU has native bf16 instructions ({', '.join(native)})"
    return "fp32", "the CPU has no native bf16 instructions (AVX-512 BF16 or AMX)"


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

    check_precision(precision, COMPUTED_PRECISIONS)
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


META_KEY = "spacy_crf_ner"


def precision_report(model: Any) -> Optional[Dict[str, str]]:
    """What a windowed transformer model was configured with and runs at (duck-typed on its
    ``precision`` and ``precision_choice``, so that no torch import is needed)."""
    if not hasattr(model, "precision_choice") or not hasattr(model, "precision"):
        return None
    report = {"configured": model.precision, "runs": model.inference_precision}
    if model.precision_choice is not None:
        report["why"] = model.precision_choice[1]
    return report


def record_precision(nlp: Any, extra_models: Iterable[Any] = ()) -> None:
    """Write the precision of the pipeline's windowed transformer models into
    ``nlp.meta["spacy_crf_ner"]["precision"]`` (the first one found; all models of a pipeline
    are configured alike in practice), so that ``nlp.meta`` says what "auto" chose."""
    models = list(extra_models)
    for _name, pipe in getattr(nlp, "pipeline", []):
        models.append(getattr(pipe, "model", None))
    for model in models:
        for node in model.walk() if hasattr(model, "walk") else []:
            report = precision_report(node)
            if report is not None:
                nlp.meta.setdefault(META_KEY, {})["precision"] = report
                return
