"""Training and inference for the two spaCy systems (spacy-crf-ner and spaCy ``ner``).

Training runs ``spacy.cli.train.train`` on a config with overrides. Two details of spaCy's loop
are handled so that the step count and the step time mean the same as for EDS-NLP:
- spaCy's loop runs steps 0..max_steps, i.e. max_steps + 1 updates: we pass ``steps - 1``;
- spaCy always evaluates (and saves model-best) at step 0: the evaluation runs on the first 10
  dev docs only, and its time (and the checkpoint saved between steps) is left out of the loop
  time, which is the sum of the time spent producing each step (batching, update, optimizer).
"""
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import common  # noqa: E402

EVAL_DOCS = 10  # dev docs for spaCy's obligatory step-0 evaluation (not used for anything)


def _hook_step_times(step_times: List[float]) -> None:
    """Wrap ``spacy.training.loop.train_while_improving``: record the time each step takes
    to be produced, minus the time of any evaluation inside it."""
    import spacy.training.loop as loop

    original = loop.train_while_improving

    def timed(nlp, optimizer, train_data, evaluate, **kwargs):
        spent = [0.0]

        def timed_evaluate():
            start = time.perf_counter()
            result = evaluate()
            spent[0] += time.perf_counter() - start
            return result

        steps = original(nlp, optimizer, train_data, timed_evaluate, **kwargs)
        while True:
            start, before = time.perf_counter(), spent[0]
            try:
                item = next(steps)
            except StopIteration:
                return
            step_times.append(time.perf_counter() - start - (spent[0] - before))
            yield item

    loop.train_while_improving = timed


def _eval_subset(dev_path: Path, out_path: Path) -> Path:
    import spacy
    from spacy.tokens import DocBin

    vocab = spacy.blank("en").vocab
    docs = list(DocBin().from_disk(dev_path).get_docs(vocab))[:EVAL_DOCS]
    DocBin(docs=docs, store_user_data=True).to_disk(out_path)
    return out_path


def train(config: Path, work: Path, corpus: Path, steps: int, batch_words: int, seed: int,
          gpu_id: int, schedule_keys: List[str], extra: Dict[str, object]) -> Dict:
    """Train with ``spacy.cli.train.train``; ``schedule_keys`` are the config paths of the
    warmup_linear schedules to resize to ``steps`` (10% warmup)."""
    if steps < 2:
        raise SystemExit("error: --steps must be at least 2")
    t_start = time.perf_counter()
    from spacy.cli.train import train as spacy_train

    work.mkdir(parents=True, exist_ok=True)
    overrides = {
        "paths.train": str(corpus / "train.spacy"),
        "paths.dev": str(_eval_subset(corpus / "dev.spacy", work / "dev-eval.spacy")),
        "system.seed": seed,
        "training.seed": seed,
        "training.max_steps": steps - 1,
        "training.eval_frequency": steps,
        "training.accumulate_gradient": 1,
        "training.batcher.size": batch_words,
        "training.batcher.tolerance": 0.0,
        "training.batcher.discard_oversize": False,
        **extra,
    }
    for key in schedule_keys:
        overrides[f"{key}.total_steps"] = steps
        overrides[f"{key}.warmup_steps"] = max(1, steps // 10)
    step_times: List[float] = []
    _hook_step_times(step_times)
    spacy_train(config, work / "output", use_gpu=gpu_id, overrides=overrides)
    loop_s = sum(step_times)
    wall_s = time.perf_counter() - t_start
    return {
        "steps": len(step_times),
        "loop_s": round(loop_s, 2),
        "s_per_step": round(loop_s / len(step_times), 3),
        "setup_and_save_s": round(wall_s - loop_s, 2),
        "worker_wall_s": round(wall_s, 2),
        "batch": f"spacy.batch_by_words.v1 size {batch_words}, tolerance 0 (spaCy words)",
        "overrides": {k: v for k, v in overrides.items() if not k.startswith("paths.")},
    }


def load(model: Path, gpu_id: int):
    import spacy

    if gpu_id >= 0:
        spacy.require_gpu(gpu_id)
    return spacy.load(model)


def infer(nlp, data: Path, words: int, batch_size: int, repeats: int, predictions: Path,
          get_spans: Callable, source: str, **extra) -> Dict:
    """Warm-up pass (whose predictions are written), then ``repeats`` timed ``nlp.pipe``
    passes over the raw test texts."""
    docs = common.read_split(data / "test")
    ids = [doc_id for doc_id, _ in docs]
    texts = [text for _, text in docs]

    def run_pass():
        return list(nlp.pipe(texts, batch_size=batch_size))

    predicted, runs = common.timed_passes(run_pass, repeats)
    preds = [(doc_id, span.start_char, span.end_char, span.label_)
             for doc_id, doc in zip(ids, predicted) for span in get_spans(doc)]
    common.write_predictions(predictions, preds)
    return common.infer_summary(runs, words, len(texts), predictions=len(preds),
                                prediction_source=source, batch_size=batch_size, **extra)
