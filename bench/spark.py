"""Spark batch inference against ``nlp.pipe`` on this machine (issue 14).

    python bench/spark.py [--notes 2000] [--sentences 3] [--model PATH] [--batch-size 32]
                          [--data ../shared/data/ncbi-disease] [--no-update]

The same notes and the same pipeline, four ways, each in its own subprocess, one at a time:
``nlp.pipe`` in one process, ``nlp.pipe(n_process=2)``, and ``spacy_crf_ner.spark`` on Spark
``local[1]`` and ``local[2]`` (one job that writes the per-note Parquet table, as
``predict --engine spark`` does). Notes: consecutive groups of ``--sentences`` sentences of
the NCBI disease test abstracts, cycled until there are ``--notes`` of them.

Reported per way: wall time of the prediction, docs/s and words/s, the pipeline load time
(per Python worker for Spark, measured inside the worker: imports + ``spacy.load``) and peak
RSS per process (``VmHWM`` of every process of the run: the JVM, each Spark Python worker;
the parent and the forked children for ``n_process=2``). Spark's figures are given with the
loads (a cold job, as a user runs it) and without them (the job's wall time minus the
slowest worker's load, the steady rate a long job approaches).

Model: ``--model`` (e.g. artifacts/model-best), else ``--config`` (default: the project's
configs/config.cfg with the pretrained MiniLM) trained for ``--train-steps`` updates on NCBI
training documents, so that it predicts about as many entities as a real model (an untrained
CRF tags most tokens); its predictions are not scored here.

Writes bench/results/spark-<date>.json and the Spark section of BENCHMARKS.md.
"""
import argparse
import datetime
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
import compare  # noqa: E402

WORK = common.BENCH_DIR / "work" / "spark"
WAYS = {  # name -> display name
    "pipe1": "nlp.pipe, 1 process",
    "pipe2": "nlp.pipe, n_process=2",
    "spark1": "Spark local[1]",
    "spark2": "Spark local[2]",
}
SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z(])")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# ------------------------------------------------------------------------- inputs
def make_notes(data: Path, n_notes: int, sentences: int) -> List[str]:
    chunks = []
    for _, text in common.read_split(data / "test"):
        parts = [s for s in SENTENCE_END.split(text.strip()) if s.strip()]
        chunks += [" ".join(parts[i : i + sentences]) for i in range(0, len(parts), sentences)]
    if not chunks:
        sys.exit(f"error: no .txt/.ann documents in {data / 'test'} (see --data)")
    return [chunks[i % len(chunks)] for i in range(n_notes)]


def build_model(data: Path, config_path: Path, target: Path, steps: int) -> None:
    """The config (the project's default: the pretrained MiniLM), initialised on the NCBI
    training documents and trained for ``steps`` updates of 8 documents (an untrained CRF
    tags most tokens, which is not what a real run sees)."""
    import random

    import spacy
    from spacy.training import Example

    from spacy_crf_ner.data import read_standoff

    config = spacy.util.load_config(config_path)
    nlp = spacy.util.load_model_from_config(config, auto_fill=True)
    docs, _ = read_standoff(data / "train", nlp, span_key="sc")
    examples = [Example(nlp.make_doc(doc.text), doc) for doc in docs]
    optimizer = nlp.initialize(lambda: examples[:20])
    rng = random.Random(0)
    for step in range(steps):
        nlp.update(rng.sample(examples, 8), sgd=optimizer, drop=0.1)
    nlp.to_disk(target)


# ------------------------------------------------------------------------- processes
def descendants(pid: int) -> List[int]:
    parents: Dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                pass
    out, todo = [], [pid]
    while todo:
        parent = todo.pop()
        children = [p for p, pp in parents.items() if pp == parent]
        out += children
        todo += children
    return out


def peak_rss(pids: List[int]) -> List[Dict]:
    """Name and peak RSS (VmHWM, MB) of each living process."""
    out = []
    for pid in pids:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if "VmHWM" not in fields:
            continue
        name = Path(cmd[0].decode() or fields["Name"].strip()).name
        if name.startswith("python") and len(cmd) > 2 and cmd[1] == b"-m":
            name += " -m " + cmd[2].decode()
        out.append({"pid": pid, "name": name,
                    "peak_rss_mb": round(int(fields["VmHWM"].split()[0]) / 1024, 1)})
    return out


def self_rss_mb() -> float:
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


# ------------------------------------------------------------------------- the four ways
def children_cpu_s() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def proc_cpu_s(pids: List[int]) -> float:
    """CPU seconds (user + system) used so far by these processes."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def run_pipe(texts: List[str], model: str, batch_size: int, n_process: int) -> Dict:
    import resource

    start = time.perf_counter()  # imports + spacy.load, as a Spark worker's load counts them
    import spacy
    import torch

    nlp = spacy.load(model)
    load_s = time.perf_counter() - start
    if n_process == 1:
        list(nlp.pipe(texts[:batch_size], batch_size=batch_size))  # warm-up
    start, cpu = time.perf_counter(), time.process_time() + children_cpu_s()
    words = entities = 0
    for doc in nlp.pipe(texts, batch_size=batch_size, n_process=n_process):
        words += len(doc)
        entities += len(doc.spans["sc"])
    seconds = time.perf_counter() - start
    cpu = time.process_time() + children_cpu_s() - cpu  # forked children: joined by then
    processes = [{"pid": os.getpid(), "name": "python (parent)", "peak_rss_mb": self_rss_mb()}]
    if n_process > 1:
        child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        processes.append({"pid": None, "name": "largest forked child",
                          "peak_rss_mb": round(child, 1)})
    return {"seconds": seconds, "cpu_s": cpu, "words": words, "entities": entities,
            "load_s": [load_s], "torch_threads": torch.get_num_threads(),
            "processes": processes}


def run_spark(texts_parquet: str, model: str, batch_size: int, cores: int) -> Dict:
    from spacy_crf_ner.spark import annotate_notes, local_session

    start = time.perf_counter()
    spark = local_session(f"local[{cores}]", app_name="bench spark", progress=False,
                          **{"spark.ui.enabled": "false"})
    spark.sparkContext.setLogLevel("ERROR")
    session_s = time.perf_counter() - start
    jvm = [p["pid"] for p in peak_rss(descendants(os.getpid())) if p["name"] == "java"]
    df = spark.read.parquet(texts_parquet)
    start = time.perf_counter()
    notes = annotate_notes(df, model, batch_size=batch_size, diagnostics=True)
    driver_check_s = time.perf_counter() - start  # the driver loads the model once (check)
    with tempfile.TemporaryDirectory() as tmp:
        start, cpu = time.perf_counter(), time.process_time() + proc_cpu_s(jvm)
        notes.write.parquet(f"{tmp}/notes.parquet")
        seconds = time.perf_counter() - start
        cpu = time.process_time() + proc_cpu_s(jvm) - cpu  # driver and JVM
        processes = peak_rss(descendants(os.getpid()))
        written = spark.read.parquet(f"{tmp}/notes.parquet")
        total = written.selectExpr("sum(n_words) as words", "sum(size(entities)) as entities",
                                   "count(*) as notes").first()
        workers = written.groupBy("worker").agg(
            {"load_s": "max", "cpu_s": "max", "rss_mb": "max", "*": "count"}).collect()
    spark.stop()
    pids = {int(w["worker"].rsplit(":", 1)[1]) for w in workers}
    for p in processes:
        if p["pid"] in pids:
            p["name"] = "Spark Python worker"
        elif "pyspark.daemon" in p["name"]:
            p["name"] = "pyspark daemon"
    processes.append({"pid": os.getpid(), "name": "python (driver)",
                      "peak_rss_mb": self_rss_mb()})
    return {"seconds": seconds, "cpu_s": cpu + sum(w["max(cpu_s)"] for w in workers),
            "words": int(total["words"]), "entities": int(total["entities"]),
            "session_s": session_s, "driver_check_s": driver_check_s,
            "load_s": [w["max(load_s)"] for w in workers],
            "workers": [{"worker": w["worker"], "notes": w["count(1)"],
                         "load_s": round(w["max(load_s)"], 2),
                         "cpu_s": round(w["max(cpu_s)"], 2),
                         "peak_rss_mb": round(w["max(rss_mb)"], 1)} for w in workers],
            "processes": processes}


def worker_main(args) -> None:
    texts = json.loads(Path(args.texts).read_text(encoding="utf8"))
    if args.worker.startswith("pipe"):
        result = run_pipe(texts, args.model, args.batch_size, int(args.worker[-1]))
    else:
        result = run_spark(str(Path(args.texts).with_suffix(".parquet")), args.model,
                           args.batch_size, int(args.worker[-1]))
    common.write_json(Path(args.result), result)


# ------------------------------------------------------------------------- report
def summarise(name: str, raw: Dict, n_notes: int) -> Dict:
    seconds = raw["seconds"]
    row = {"way": WAYS[name], **raw, "docs_per_s": n_notes / seconds,
           "words_per_s": raw["words"] / seconds}
    if name.startswith("spark"):
        steady = seconds - max(raw["load_s"])
        row["steady_s"] = steady
        row["steady_docs_per_s"] = n_notes / steady
    return row


def render(results: Dict) -> str:
    rows, machine = results["ways"], results["machine"]
    n = results["notes"]
    load = ", ".join(f"{x:.1f}" for x in machine["load_avg_at_start"])
    load_end = ", ".join(f"{x:.1f}" for x in machine["load_avg_at_end"])
    lines = [
        f"## {compare.SECTIONS['spark']}", "",
        f"Run {results['date']} at commit {results['commit']} with `{results['command']}`, "
        f"total wall time {results['wall_s'] / 60:.1f} min.", "",
        f"- Machine: {machine['cpu']}, {machine['cores']} cores, {machine['ram_gb']} GB RAM, "
        f"CPU only; CPU flags {', '.join(machine.get('flags') or []) or 'not recorded'}. "
        + (f"Quiet cores: load average {load} at the start ({load_end} at the end, this "
           "run's own); each way ran once, one after the other."
           if machine["load_avg_at_start"][0] < 0.5 else
           f"**Shared conditions**: other jobs ran on the same cores (load average {load} at "
           f"the start, {load_end} at the end), so absolute rates are low and noisy; each way "
           "ran once."),
        f"- Notes: {n:,} ({results['words']:,} words, {results['words'] / n:.0f} words per "
        f"note): groups of {results['sentences']} sentences of the NCBI disease test "
        f"abstracts, cycled. Batches of {results['batch_size']} notes.",
        f"- Model: {results['model_note']}; it predicted "
        f"{rows['pipe1']['entities']:,} spans ({rows['pipe1']['entities'] / results['words']:.2f} "
        "per word; Spark moves and writes one row per span).",
        f"- Versions: {', '.join(f'{k} {v}' for k, v in results['versions'].items() if v)}", "",
        "| | wall (s) | docs/s | words/s | ÷ n_process=2 | CPU s per 1,000 notes "
        "| pipeline load per process (s) | peak RSS (MB) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    base = rows["pipe2"]["docs_per_s"]
    for name, row in rows.items():
        rss = "; ".join(f"{p['name']} {p['peak_rss_mb']:,.0f}" for p in row["processes"]
                        if p["peak_rss_mb"] > 50)
        loads = ", ".join(f"{x:.1f}" for x in row["load_s"])
        docs = f"{row['docs_per_s']:.1f}"
        ratio = f"{row['docs_per_s'] / base:.2f}"
        if name.startswith("spark"):
            docs += f" ({row['steady_docs_per_s']:.1f} without loads)"
            ratio += f" ({row['steady_docs_per_s'] / base:.2f})"
        threads = (f"torch threads {row['torch_threads']}" if "torch_threads" in row
                   else "1 torch thread per task")
        cpu = 1000 * row["cpu_s"] / n
        lines.append(f"| {row['way']} ({threads}) | {row['seconds']:.1f} | {docs} "
                     f"| {row['words_per_s']:,.0f} | {ratio} | {cpu:.0f} | {loads} | {rss} |")
    lines.append("| 1 GPU executor vs `nlp.pipe` on the GPU | not measured: no GPU in this "
                 "session" + " |" * 7)
    s1, s2 = rows["spark1"], rows["spark2"]
    lines += ["", "Targets (issue 14):", ""]
    for text, value, goal in (
        ("Spark local[2] ≥ 0.9 × nlp.pipe(n_process=2)", s2["docs_per_s"] / base, 0.9),
        ("Spark local[2] / local[1] ≥ 1.7", s2["docs_per_s"] / s1["docs_per_s"], 1.7),
    ):
        steady = (s2["steady_docs_per_s"] / base if "0.9" in text
                  else s2["steady_docs_per_s"] / s1["steady_docs_per_s"])
        lines.append(f"- {'met' if value >= goal else '**not met**'}: {text}: {value:.2f} "
                     f"with the loads, {steady:.2f} without")
    lines += ["", "CPU s per 1,000 notes: CPU time of every process of the way (Spark: the "
                  "Python workers after their load, the JVM and the driver during the job), "
                  "the figure that does not depend on how the shared cores were divided: on a "
                  "busy machine each runnable thread gets a share, so a way with more threads "
                  "(nlp.pipe: 2 torch threads per process) gets more of the cores than Spark's "
                  "one thread per task."]
    per_core = s2["steady_docs_per_s"] / 2
    lines += ["", f"Spark local[2]: {per_core:.1f} docs/s per executor core without loads "
                  f"({s2['words_per_s'] / 2:,.0f} words/s per core with them); "
                  "sizing from these figures: docs/spark.md."]
    return "\n".join(lines) + "\n"


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=compare.DEFAULT_DATA)
    parser.add_argument("--notes", type=int, default=2000)
    parser.add_argument("--sentences", type=int, default=3, help="sentences per note")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--model", default=None, help="pipeline folder (default: built)")
    parser.add_argument("--config", type=Path, default=common.REPO_DIR / "configs" / "config.cfg",
                        help="config of the built model (without --model)")
    parser.add_argument("--train-steps", type=int, default=100,
                        help="updates of the built model before it is timed")
    parser.add_argument("--ways", default=",".join(WAYS))
    parser.add_argument("--no-update", action="store_true",
                        help="do not rewrite BENCHMARKS.md (results JSON only)")
    parser.add_argument("--rewrite", type=Path, default=None,
                        help="only rewrite BENCHMARKS.md from a results file")
    parser.add_argument("--worker", choices=list(WAYS), help=argparse.SUPPRESS)
    parser.add_argument("--texts", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.worker:
        return worker_main(args)
    if args.rewrite:
        compare._write_section("spark", render(common.read_json(args.rewrite)))
        return log(f"rewrote {compare.BENCHMARKS_MD.relative_to(common.REPO_DIR)}")
    started = time.perf_counter()
    machine = compare.machine_info()
    WORK.mkdir(parents=True, exist_ok=True)
    texts = make_notes(args.data, args.notes, args.sentences)
    texts_file = WORK / "notes.json"
    texts_file.write_text(json.dumps(texts), encoding="utf8")
    import pyarrow as pa  # the same notes as a Parquet table, for Spark to read
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"note_id": list(range(len(texts))), "note_text": texts}),
                   texts_file.with_suffix(".parquet"))
    model = args.model
    if model is None:
        model = str(WORK / f"model-{args.config.stem}-{args.train_steps}")
        if not Path(model, "config.cfg").exists():
            log(f"building the model ({args.config.name}, {args.train_steps} training steps)")
            build_model(args.data, args.config, Path(model), args.train_steps)
        note = (f"configs/{args.config.name} trained for {args.train_steps} steps of 8 NCBI "
                "training documents")
        if args.config.name == "config.cfg":
            note += "; MiniLM transformer, text CNN, CRF"
    else:
        note = f"`{model}`"
    ways = [w for w in args.ways.split(",") if w]
    raw = {}
    for name in ways:
        log(f"{WAYS[name]} on {len(texts)} notes")
        result = WORK / f"{name}.json"
        cmd = [sys.executable, __file__, "--worker", name, "--texts", texts_file, "--model",
               model, "--batch-size", args.batch_size, "--result", result]
        proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
        if proc.returncode != 0:
            sys.exit(f"{name} failed:\n{proc.stderr[-3000:]}")
        raw[name] = common.read_json(result)
        log(f"  {raw[name]['seconds']:.1f} s, {len(texts) / raw[name]['seconds']:.1f} docs/s")
    machine["load_avg_at_end"] = list(os.getloadavg())
    results = {
        "date": datetime.date.today().isoformat(),
        "commit": compare.git_commit(),
        "command": "python bench/spark.py " + " ".join(sys.argv[1:]),
        "wall_s": time.perf_counter() - started,
        "notes": len(texts), "sentences": args.sentences, "batch_size": args.batch_size,
        "words": raw[ways[0]]["words"], "model_note": note, "machine": machine,
        "versions": common.versions(["spacy-crf-ner", "spacy", "spacy-transformers", "torch",
                                     "pyspark", "pyarrow"]),
        "ways": {name: summarise(name, raw[name], len(texts)) for name in ways},
    }
    out = common.BENCH_DIR / "results" / f"spark-{results['date']}.json"
    common.write_json(out, results)
    log(f"wrote {out.relative_to(common.REPO_DIR)}")
    if set(ways) == set(WAYS) and not args.no_update:
        compare._write_section("spark", render(results))
        log(f"rewrote {compare.BENCHMARKS_MD.relative_to(common.REPO_DIR)}")
    print(render(results) if set(ways) == set(WAYS) else json.dumps(results["ways"], indent=1))


if __name__ == "__main__":
    main()
