"""Warm CPU/GPU inference speed of a trained pipeline, and where the time goes.

    python bench/profile_inference.py MODEL DATA.spacy [--batch-size 32] [--repeats 3] [--gpu-id -1]

Reports words/s of ``nlp.pipe`` over the texts (median of ``repeats`` warm runs) and the share
of one pass spent in the transformer, in the crf_ner model (listener + text CNN + emission
projection) and in CRF decoding (Viterbi + forward-backward confidences).
"""
import argparse
import json
import statistics

import spacy
from spacy.tokens import DocBin

import common


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

    def run_pass() -> None:
        for _doc in nlp.pipe(texts, batch_size=args.batch_size):
            pass

    _, runs = common.timed_passes(run_pass, args.repeats)
    seconds = statistics.median(runs)
    # One more pass, component by component, to see where the time goes.
    parts = common.time_parts(nlp, texts, args.batch_size)
    result = {
        "model": args.model,
        "docs": len(texts),
        "words": n_words,
        "batch_size": args.batch_size,
        "seconds_median": round(seconds, 3),
        "runs": [round(r, 3) for r in runs],
        "words_per_second": round(n_words / seconds, 1),
        "share": parts["share"],
        "seconds_by_part": parts["seconds"],
    }
    print(json.dumps(result, indent=2))
    if args.output:
        with open(args.output, "w", encoding="utf8") as file_:
            json.dump(result, file_, indent=2)


if __name__ == "__main__":
    main()
