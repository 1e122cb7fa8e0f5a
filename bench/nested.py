"""Nested same-label entities: ``nesting_depth`` 1 vs 2 on a synthetic clinical-style corpus.

    python bench/nested.py [--steps 200] [--embedding transformer|tok2vec] [--out bench/results]

Writes the corpus (BRAT standoff, so the converter is exercised too), trains the same config at
depth 1 and depth 2 with ``spacy train``, then reports on the test split exact P/R/F1 overall,
on outer spans and on inner spans (inside another span of the same label), the gold spans
each depth could not train on, and the warm inference time of depth 2 over depth 1 (same
transformer, ``nlp.pipe`` batches of 32, median of 5, the two pipelines interleaved).
"""
import argparse
import datetime
import json
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Set, Tuple

from spacy_crf_ner.data.brackets import parse_brackets

REPO = Path(__file__).resolve().parents[1]
CONFIGS = {"transformer": REPO / "configs" / "config.cfg",
           "tok2vec": REPO / "configs" / "config_tok2vec.cfg"}

# Brackets mark entities and may nest, also inside a span of the same label.
SENTENCES = [
    "Known [DISORDER {mod} [DISORDER {organ} {dis}]] since {year} .",
    "Admitted for [DISORDER [DISORDER {dis2}] secondary to [DISORDER {organ} {dis}]] .",
    "No evidence of [DISORDER {organ} {dis}] on the last scan .",
    "Mass in the [ANATOMY {part} of the [ANATOMY {side} {organ2}]] , biopsy planned .",
    "Pain in the [ANATOMY {side} {organ2}] , started on [DRUG {drug}] {dose} .",
    "History of [DISORDER {dis2}] and [DISORDER {mod} [DISORDER {organ} {dis}]] .",
    "[DISORDER [DISORDER {tumour}] of the [ANATOMY {organ2}]] confirmed by biopsy .",
    "Patient denies [DISORDER {symptom}] and [DISORDER {symptom}] .",
    "[DRUG {drug}] was stopped because of [DISORDER {symptom}] .",
    "Follow-up of [DISORDER {mod} [DISORDER [DISORDER {dis2}] related [DISORDER {organ} {dis}]]] .",
    "Stable [DISORDER [DISORDER {tumour}] in the [ANATOMY {part} of the [ANATOMY {organ2}]]] .",
    "Family history of [DISORDER {dis2}] , no [DISORDER {tumour}] .",
    "[DRUG {drug}] {dose} daily for [DISORDER {dis2}] , renal function normal .",
    "CT shows [DISORDER {organ} {dis}] without [DISORDER {symptom}] .",
]
WORDS = {
    "mod": ["chronic", "acute", "severe", "end-stage", "acute on chronic", "mild"],
    "organ": ["kidney", "liver", "heart", "lung", "bowel", "pancreas"],
    "dis": ["disease", "failure", "injury", "infection", "insufficiency"],
    "dis2": ["diabetes", "sepsis", "hypertension", "cirrhosis", "lupus", "alcohol use disorder"],
    "tumour": ["carcinoma", "adenocarcinoma", "lymphoma", "cyst", "nodule"],
    "symptom": ["fever", "chest pain", "dyspnea", "nausea", "weight loss"],
    "part": ["upper lobe", "lower pole", "apex", "base", "left border", "posterior wall"],
    "side": ["left", "right"],
    "organ2": ["lung", "kidney", "breast", "ovary", "liver"],
    "drug": ["aspirin", "heparin", "insulin", "tamoxifen", "furosemide", "amoxicillin"],
    "dose": ["10 mg", "40 mg", "500 mg", "2 g", "5000 units"],
    "year": ["2012", "2015", "2019", "2021"],
}
Entity = Tuple[int, int, str]


def make_note(rng: random.Random) -> Tuple[str, List[Entity]]:
    """A note of 3-6 sentences, one per line."""
    text, ents = "", []
    for _ in range(rng.randint(3, 6)):
        marked = rng.choice(SENTENCES)
        for slot, words in WORDS.items():
            while "{" + slot + "}" in marked:
                marked = marked.replace("{" + slot + "}", rng.choice(words), 1)
        sent, sent_ents = parse_brackets(marked)
        ents += [(s + len(text), e + len(text), label) for s, e, label in sent_ents]
        text += sent + "\n"
    return text, ents


def write_split(folder: Path, n_docs: int, seed: int) -> None:
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n_docs):
        text, ents = make_note(rng)
        (folder / f"note{i:04d}.txt").write_text(text)
        lines = [f"T{j}\t{label} {s} {e}\t{text[s:e]}" for j, (s, e, label) in enumerate(ents, 1)]
        (folder / f"note{i:04d}.ann").write_text("\n".join(lines) + "\n")


def split_by_nesting(spans: Set[Tuple]) -> Tuple[Set[Tuple], Set[Tuple]]:
    """(outer, inner): inner spans lie inside another span of the same label."""
    inner = {s for s in spans
             if any(o != s and o[-1] == s[-1] and o[-3] <= s[-3] and s[-2] <= o[-2] and o[0] == s[0]
                    for o in spans)}
    return spans - inner, inner


def prf(gold: Set, pred: Set) -> Dict[str, float]:
    tp = len(gold & pred)
    p = tp / len(pred) if pred else 0.0
    r = tp / len(gold) if gold else 0.0
    return {"p": p, "r": r, "f": 2 * tp / (len(gold) + len(pred)) if gold or pred else 0.0,
            "n_gold": len(gold), "n_pred": len(pred)}


def run(cmd: List[str]) -> None:
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch-words", type=int, default=1000)
    parser.add_argument("--embedding", choices=sorted(CONFIGS), default="transformer")
    parser.add_argument("--work", default=str(REPO / "bench" / "work" / "nested"))
    parser.add_argument("--out", default=str(REPO / "bench" / "results"))
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    work = Path(args.work)
    py = sys.executable

    for split, n, seed in (("train", 400, 1), ("dev", 60, 2), ("test", 120, 3)):
        write_split(work / "brat" / split, n, seed)
        run([py, "-m", "spacy_crf_ner", "convert", str(work / "brat" / split),
             str(work / f"{split}.spacy"), "--lang", "en"])

    warm = max(1, args.steps // 10)
    results: Dict[str, Dict] = {}
    for depth in (1, 2):
        out = work / f"depth{depth}"
        overrides = [
            "--paths.train", str(work / "train.spacy"), "--paths.dev", str(work / "dev.spacy"),
            "--components.crf_ner.nesting_depth", str(depth),
            "--training.max_steps", str(args.steps), "--training.eval_frequency", str(args.steps),
            "--training.batcher.size", str(args.batch_words),
        ]
        if args.embedding == "transformer":
            for group in ("transformer", "head"):
                prefix = f"--training.optimizer.groups.{group}.learn_rate"
                overrides += [f"{prefix}.total_steps", str(args.steps),
                              f"{prefix}.warmup_steps", str(warm)]
        start = time.perf_counter()
        run([py, "-m", "spacy", "train", str(CONFIGS[args.embedding]), "--output", str(out)]
            + overrides)
        results[f"depth{depth}"] = {"train_wall_s": time.perf_counter() - start}

    import spacy
    import warnings
    from spacy.tokens import DocBin

    nlps = {d: spacy.load(work / f"depth{d}" / "model-last") for d in (1, 2)}
    gold_docs = list(DocBin().from_disk(work / "test.spacy").get_docs(nlps[1].vocab))
    texts = [doc.text for doc in gold_docs]
    gold = {(i, s.start_char, s.end_char, s.label_) for i, d in enumerate(gold_docs) for s in d.spans["sc"]}
    gold_outer, gold_inner = split_by_nesting(gold)
    for d, nlp in nlps.items():
        pred_docs = list(nlp.pipe(texts, batch_size=32))
        pred = {(i, s.start_char, s.end_char, s.label_) for i, doc in enumerate(pred_docs)
                for s in doc.spans["sc"]}
        pred_outer, pred_inner = split_by_nesting(pred)
        # What each depth could train on: re-count the gold of the training split.
        ner = nlp.get_pipe("crf_ner")
        from spacy.training import Example
        train_docs = DocBin().from_disk(work / "train.spacy").get_docs(nlp.vocab)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            counts = ner.count_gold(Example(nlp.make_doc(doc.text), doc) for doc in train_docs)
        results[f"depth{d}"].update(
            all=prf(gold, pred), outer=prf(gold_outer, pred_outer), inner=prf(gold_inner, pred_inner),
            train_gold=counts,
        )
    # Warm inference, interleaved so that drift of the machine hits both alike.
    for nlp in nlps.values():
        list(nlp.pipe(texts[:32], batch_size=32))
    runs = {1: [], 2: []}
    n_words = sum(len(nlps[1].make_doc(t)) for t in texts)
    for _ in range(args.repeats):
        for d, nlp in nlps.items():
            start = time.perf_counter()
            for _doc in nlp.pipe(texts, batch_size=32):
                pass
            runs[d].append(time.perf_counter() - start)
    for d in (1, 2):
        results[f"depth{d}"]["infer"] = {"runs_s": runs[d], "median_s": statistics.median(runs[d]),
                                        "words_per_s": n_words / statistics.median(runs[d])}
    ratio = statistics.median(runs[2]) / statistics.median(runs[1])
    report = {
        "date": datetime.date.today().isoformat(), "embedding": args.embedding,
        "steps": args.steps, "batch_words": args.batch_words, "test_words": n_words,
        "test_gold": {"all": len(gold), "outer": len(gold_outer), "inner": len(gold_inner)},
        "results": results, "inference_time_ratio_depth2_over_depth1": ratio,
    }
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"nested-{report['date']}-{args.embedding}.json"
    path.write_text(json.dumps(report, indent=2))
    print(format_table(report))
    print(f"written to {path}")


def format_table(report: Dict) -> str:
    rows = ["| nesting_depth | F1 all (P/R) | F1 outer (P/R) | F1 inner (P/R) | gold train spans left out | words/s |",
            "|---|---|---|---|---|---|"]
    for d in (1, 2):
        r = report["results"][f"depth{d}"]
        cell = lambda s: f"{100 * s['f']:.1f} ({100 * s['p']:.1f}/{100 * s['r']:.1f})"  # noqa: E731
        g = r["train_gold"]
        left = g["nested_too_deep"] + g["same_label_crossing"]
        rows.append(f"| {d} | {cell(r['all'])} | {cell(r['outer'])} | {cell(r['inner'])} | "
                    f"{left} of {g['gold_spans']} | {r['infer']['words_per_s']:,.0f} |")
    rows.append(f"\nInference time, depth 2 / depth 1: {report['inference_time_ratio_depth2_over_depth1']:.3f} "
                f"({report['embedding']}, {report['test_words']} test words, {report['steps']} steps).")
    return "\n".join(rows)


if __name__ == "__main__":
    main()
