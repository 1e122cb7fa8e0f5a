"""spaCy ``ner`` (transition-based) + spacy-transformers worker: ``train`` and ``infer``.

Config: bench/configs/spacy_ner.cfg (same transformer block as configs/config.cfg, one Adam
rate 2e-4 with warmup_linear). Trains on the DocBins written by ``spacy_crf_ner convert``:
``ner`` reads ``doc.ents``. Predictions are ``doc.ents`` (all it predicts; no overlaps).
"""
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import spacy_base  # noqa: E402
from spacy_base import common  # noqa: E402

CONFIG = common.BENCH_DIR / "configs" / "spacy_ner.cfg"
PACKAGES = ["spacy", "spacy-transformers", "thinc", "torch", "transformers", "tokenizers",
            common.MODEL_PACKAGE]


def main() -> None:
    args = common.worker_parser(__doc__).parse_args()
    if args.command == "profile":
        raise SystemExit("error: profile is implemented for spacy-crf-ner only")
    if args.command == "train":
        result = spacy_base.train(
            CONFIG, args.work, args.corpus, args.steps, args.batch_words,
            args.seed, args.gpu_id,
            schedule_keys=["training.optimizer.learn_rate"],
            extra={"paths.transformer": common.resolve_model_dir(args.model)},
        )
        result["optimizer"] = ("Adam (L2 0.01 as weight decay), one rate: warmup_linear to "
                               "2e-4, 10% warmup; grad_clip 1.0 per parameter tensor")
        result["versions"] = common.versions(PACKAGES)
        result.update(common.torch_info(args.gpu_id))
    else:
        t0 = time.perf_counter()
        nlp = spacy_base.load(args.work / "output" / "model-last", args.gpu_id)
        load_s = time.perf_counter() - t0
        result = spacy_base.infer(
            nlp, args.data, args.words, args.batch_size, args.repeats, args.predictions,
            get_spans=lambda doc: doc.ents, source="doc.ents",
            load_s=round(load_s, 2), **common.torch_info(args.gpu_id))
    common.write_json(args.result, result)


if __name__ == "__main__":
    main()
