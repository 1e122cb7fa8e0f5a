"""Warm CPU/GPU inference speed of a trained pipeline, and where the time goes.

    python bench/profile_inference.py MODEL DATA.spacy [--batch-size 32] [--repeats 3] [--gpu-id -1]

Reports words/s of ``nlp.pipe`` over the texts (median of ``repeats`` warm runs) and the share
of one pass spent in the transformer, in the crf_ner model (listener + text CNN + emission
projection) and in CRF decoding (Viterbi + forward-backward confidences).
"""
import argparse
import json
import statistics
import time

import spacy
from spacy.tokens import DocBin


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("model")
    parser.add_argument("data")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--gpu-id", type=int, default=-1)
    parser.add_argument("--output", default=None)
    args = parser.parse_args()
    if args.gpu_id >= 0:
        spacy.require_gpu(args.gpu_id)
    nlp = spacy.load(args.model)
    texts = [doc.text for doc in DocBin().from_disk(args.data).get_docs(nlp.vocab)]
    n_words = sum(len(nlp.make_doc(t)) for t in texts)
    list(nlp.pipe(texts[: args.batch_size], batch_size=args.batch_size))  # warm up

    runs = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        for _doc in nlp.pipe(texts, batch_size=args.batch_size):
            pass
        runs.append(time.perf_counter() - start)
    seconds = statistics.median(runs)

    # One more pass, component by component, to see where the time goes.
    ner = nlp.get_pipe("crf_ner")
    parts = {"tokenizer": 0.0, "other_components": 0.0, "crf_ner_model": 0.0, "crf_decode": 0.0,
             "set_annotations": 0.0}
    for i in range(0, len(texts), args.batch_size):
        t0 = time.perf_counter()
        docs = [nlp.make_doc(t) for t in texts[i : i + args.batch_size]]
        parts["tokenizer"] += time.perf_counter() - t0
        for name, proc in nlp.pipeline:
            if name == "crf_ner":
                t0 = time.perf_counter()
                em, lengths = ner.model.predict(docs)
                t1 = time.perf_counter()
                preds = ner._decode(em, lengths)
                t2 = time.perf_counter()
                ner.set_annotations(docs, preds)
                t3 = time.perf_counter()
                parts["crf_ner_model"] += t1 - t0
                parts["crf_decode"] += t2 - t1
                parts["set_annotations"] += t3 - t2
            else:
                t0 = time.perf_counter()
                if hasattr(proc, "pipe"):
                    docs = list(proc.pipe(docs, batch_size=args.batch_size))
                else:  # plain callables such as doc_cleaner
                    docs = [proc(doc) for doc in docs]
                key = name if name == "transformer" else "other_components"
                parts[key] = parts.get(key, 0.0) + time.perf_counter() - t0
    total = sum(parts.values())
    result = {
        "model": args.model,
        "docs": len(texts),
        "words": n_words,
        "batch_size": args.batch_size,
        "seconds_median": round(seconds, 3),
        "runs": [round(r, 3) for r in runs],
        "words_per_second": round(n_words / seconds, 1),
        "share": {k: round(v / total, 4) for k, v in parts.items()},
        "seconds_by_part": {k: round(v, 3) for k, v in parts.items()},
    }
    print(json.dumps(result, indent=2))
    if args.output:
        with open(args.output, "w", encoding="utf8") as file_:
            json.dump(result, file_, indent=2)


if __name__ == "__main__":
    main()
