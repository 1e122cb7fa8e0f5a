"""spacy-crf-ner worker: ``train`` and ``infer`` (plus where inference time goes).

Config: the project's configs/config.cfg, with the budget as overrides (steps, batch size,
both optimizer groups' warmup_linear schedules resized to the steps, seed). Predictions are
``doc.spans["sc"]`` (every span crf_ner predicts; ``doc.ents`` is a non-overlapping subset).

``profile`` (ours only, its own process) reports, on one extra pass, the share of time in the
transformer, in the crf_ner model (listener + text CNN + emission projection) and in CRF
decoding, and the time of the bare Hugging Face forward over the same strided windows (see
``transformer_alone``).
"""
import statistics
import sys
import time
from pathlib import Path

import numpy

sys.path.insert(0, str(Path(__file__).resolve().parent))
import spacy_base  # noqa: E402
from spacy_base import common  # noqa: E402

CONFIG = common.REPO_DIR / "configs" / "config.cfg"
PACKAGES = ["spacy-crf-ner", "spacy", "spacy-transformers", "thinc", "torch", "transformers",
            "tokenizers", common.MODEL_PACKAGE]


def schedule_keys(config_path) -> list:
    """Config paths of the learning-rate schedules that have a length (``total_steps``):
    the GroupedAdam groups' rates, or a single ``training.optimizer.learn_rate``."""
    from spacy.util import load_config

    optimizer = load_config(config_path, interpolate=False)["training"]["optimizer"]
    candidates = {"training.optimizer.learn_rate": optimizer.get("learn_rate")}
    for group, settings in (optimizer.get("groups") or {}).items():
        candidates[f"training.optimizer.groups.{group}.learn_rate"] = settings.get("learn_rate")
    return [k for k, v in candidates.items() if isinstance(v, dict) and "total_steps" in v]


def describe_optimizer(config_path) -> str:
    """One line: the optimizer of the config and the peak rate of each group."""
    from spacy.util import load_config

    opt = load_config(config_path, interpolate=False)["training"]["optimizer"]

    def rate(value):
        if not isinstance(value, dict):
            return f"{value}"
        start = value.get("start_rate", 0.0)
        return f"{start}->{value.get('initial_rate')}"

    groups = opt.get("groups") or {}
    rates = (", ".join(f"{g} {rate(v.get('learn_rate'))}" for g, v in groups.items())
             if groups else f"one rate {rate(opt.get('learn_rate'))}")
    scope = opt.get("grad_clip_scope", "tensor")
    clip = "global norm" if scope == "global" else "per parameter tensor"
    return (f"{opt.get('@optimizers')} (L2 {opt.get('L2')}, as weight decay: "
            f"{opt.get('L2_is_weight_decay')}): {rates} over a 10% warmup, then linear decay "
            f"to 0; grad_clip {opt.get('grad_clip')} {clip}")


def transformer_alone(nlp, texts, batch_size: int, repeats: int) -> dict:
    """The lower bound for our inference: the pipeline's own Hugging Face model, called
    directly under ``torch.no_grad`` on the word pieces of the same strided windows
    (spaCy tokenizer + the config's span getter, 128/96), batched as the transformer
    component batches them (batches of ``batch_size`` docs, split by
    ``spacy_transformers.util.batch_by_length`` into sub-batches of at most
    ``max_batch_items`` padded tokens), then as the model's own forward groups them (ours:
    windows of equal length together, ``max_forward_pieces`` per call; spacy-transformers':
    each sub-batch padded to its longest window), with the word pieces the model feeds
    itself. Tokenisation is done beforehand and not timed. Median of ``repeats`` after a
    warm-up."""
    import torch

    pipe = nlp.get_pipe("transformer")
    trf = pipe.model
    hf_model, tokenizer, get_spans = trf.transformer, trf.tokenizer, trf.attrs["get_spans"]
    max_items = getattr(pipe, "cfg", {}).get("max_batch_items")
    try:
        from spacy_transformers.util import batch_by_length
    except ImportError:
        max_items = None
    device = next(hf_model.parameters()).device
    batches = []
    for i in range(0, len(texts), batch_size):
        docs = [nlp.make_doc(text) for text in texts[i : i + batch_size]]
        groups = batch_by_length(docs, max_items) if max_items else [range(len(docs))]
        for group in groups:
            sub = [docs[j] for j in group]
            if hasattr(trf, "encode_windows"):  # spacy_crf_ner.WindowedTransformerModel.v1
                # The same groups of equal-length windows as its forward, each cut to its
                # own longest window.
                from spacy_crf_ner.transformer.windows import forward_chunks

                w = trf.encode_windows(sub)
                for rows in forward_chunks(w.lengths, trf.max_forward_pieces):
                    width = max(w.lengths[r] for r in rows)
                    encoded = {"input_ids": w.input_ids[rows, :width],
                               "attention_mask": w.attention_mask[rows, :width]}
                    if w.token_type_ids is not None:
                        encoded["token_type_ids"] = w.token_type_ids[rows, :width]
                    encoded = {k: torch.from_numpy(numpy.ascontiguousarray(v))
                               for k, v in encoded.items()}
                    encoded["attention_mask"] = encoded["attention_mask"].long()
                    batches.append({k: v.to(device) for k, v in encoded.items()})
                continue
            # spacy-transformers' own model: it tokenizes each window's text
            windows = [span.text for spans in get_spans(sub) for span in spans]
            encoded = tokenizer(windows, padding="longest", truncation=True,
                                max_length=tokenizer.model_max_length, return_tensors="pt")
            batches.append({k: v.to(device) for k, v in encoded.items()})

    def run_pass():
        with torch.no_grad():
            for batch in batches:
                hf_model(**batch)
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    # Thinc's PyTorchShim.predict puts the model back in train mode after each call:
    # time it in eval mode (no dropout), as the pipeline runs it, then leave it as found.
    was_training = hf_model.training
    hf_model.eval()
    try:
        _, runs = common.timed_passes(run_pass, repeats)
    finally:
        hf_model.train(was_training)
    return {"runs_s": [round(r, 3) for r in runs], "median_s": round(statistics.median(runs), 3),
            "forward_calls": len(batches),
            "windows": sum(int(b["input_ids"].shape[0]) for b in batches),
            "word_pieces": sum(int(b["attention_mask"].sum()) for b in batches),
            "padded_word_pieces": sum(int(b["input_ids"].numel()) for b in batches),
            "sub_batch_max_items": max_items}


def main() -> None:
    args = common.worker_parser(__doc__).parse_args()
    if args.command == "train":
        result = spacy_base.train(
            CONFIG, args.work, args.corpus, args.steps, args.batch_words, args.seed,
            args.gpu_id,
            schedule_keys=schedule_keys(CONFIG),
            extra={"paths.transformer": args.model,
                   **({"components.transformer.model.train_precision": args.train_precision}
                      if args.train_precision else {}),
                   **({"corpora.train.max_length": 0} if args.whole_documents else {})},
        )
        result["whole_documents"] = bool(args.whole_documents)
        result["train_precision"] = args.train_precision or "fp32"
        result["optimizer"] = describe_optimizer(CONFIG)
        result["versions"] = common.versions(PACKAGES)
        result.update(common.torch_info(args.gpu_id))
    elif args.command == "infer":
        t0 = time.perf_counter()
        nlp = spacy_base.load(args.work / "output" / "model-last", args.gpu_id)
        if args.precision:
            from spacy_crf_ner.transformer.model_class import set_precision

            set_precision(nlp, args.precision)
        load_s = time.perf_counter() - t0
        result = spacy_base.infer(
            nlp, args.data, args.words, args.batch_size, args.repeats, args.predictions,
            get_spans=lambda doc: doc.spans.get("sc", []),
            source='doc.spans["sc"] (every predicted span)',
            load_s=round(load_s, 2), precision=args.precision or "fp32",
            precision_runs=nlp.meta.get("spacy_crf_ner", {}).get("precision", {}).get("runs"),
            **common.torch_info(args.gpu_id))
    else:  # profile: its own process, so that it leaves the inference peak RSS alone
        nlp = spacy_base.load(args.work / "output" / "model-last", args.gpu_id)
        texts = [text for _, text in common.read_split(args.data / "test")]
        list(nlp.pipe(texts[: args.batch_size], batch_size=args.batch_size))  # warm up
        try:
            result = {"time_parts": common.time_parts(nlp, texts, args.batch_size)}
        except Exception as err:  # crf_ner's internals changed: report it, don't fail
            result = {"time_parts": {"error": repr(err)}}
        result["transformer_alone"] = transformer_alone(nlp, texts, args.batch_size,
                                                        args.repeats)
    common.write_json(args.result, result)


if __name__ == "__main__":
    main()
