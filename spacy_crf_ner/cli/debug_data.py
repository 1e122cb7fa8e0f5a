"""``python -m spacy_crf_ner debug-data CONFIG``: the corpus as ``crf_ner`` will see it.

Reads the training config's train and dev corpora (``[corpora]``, ``--paths.train``-style
overrides as in ``spacy train``) and prints, with wasabi tables: label counts, span lengths,
overlaps and nesting, the spans training will not use (misaligned, crossing, nested too
deep, unknown label) and the train/dev label drift. Run it before training; spaCy's own
``debug data`` skips span analysis for components it does not know. The counting lives in
:mod:`spacy_crf_ner.corpus_stats`.
"""
from pathlib import Path
from typing import Any, Dict, List, Optional

import typer
from wasabi import Printer

from . import app

MAX_PAIRS_SHOWN = 10


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _load(config_path: Path, overrides: Dict[str, Any], component: Optional[str], msg: Printer):
    """The pipeline from the config (not initialized), the crf_ner component's name and
    config, and the train and dev corpora's examples."""
    from spacy import util
    from spacy.cli._util import show_validation_error
    from spacy.schemas import ConfigSchemaTraining
    from spacy.util import registry, resolve_dot_names

    if not config_path.is_file():
        msg.fail(f"config file {config_path} not found", exits=1)
    try:
        with show_validation_error(config_path):
            config = util.load_config(config_path, overrides=overrides)
            nlp = util.load_model_from_config(config, auto_fill=True)  # as spacy train does
            config = nlp.config.interpolate()
            training = registry.resolve(config["training"], schema=ConfigSchemaTraining)
    except SystemExit:
        raise
    except Exception as err:  # a bad path, an unknown architecture...
        msg.fail(f"cannot load {config_path}: {type(err).__name__}: {err}", exits=1)
    names = [n for n in nlp.pipe_names if nlp.get_pipe_meta(n).factory == "crf_ner"]
    if component is not None and component not in names:
        msg.fail(f"no crf_ner component named {component!r} in {config_path} "
                 f"(crf_ner components: {names or 'none'})", exits=1)
    if not names:
        msg.fail(f"{config_path} has no crf_ner component (pipeline: {nlp.pipe_names})", exits=1)
    name = component or names[0]
    try:
        train_corpus, dev_corpus = resolve_dot_names(
            config, [training["train_corpus"], training["dev_corpus"]])
        train, dev = list(train_corpus(nlp)), list(dev_corpus(nlp))
    except Exception as err:
        msg.fail(f"cannot read the corpora: {type(err).__name__}: {err}", exits=1)
    return nlp, name, config["components"][name], train, dev, config["training"]["batcher"]


def _label_table(stats: Dict[str, Any], drift: Dict[str, Any]) -> List[List[Any]]:
    train, dev = stats["train"], stats["dev"]
    rows = []
    for label, (t_share, d_share) in sorted(drift["shares"].items()):
        lengths = train.lengths.get(label) or dev.lengths.get(label) or [0]
        rows.append([label, train.spans[label], _pct(t_share), dev.spans[label], _pct(d_share),
                     f"{100 * (d_share - t_share):+.1f}", f"{sum(lengths) / len(lengths):.1f}",
                     max(lengths)])
    return rows


def _long_documents(doc_lengths: List[int], batcher: Dict[str, Any], msg: Printer) -> int:
    """Warn about training documents far longer than the batch size, and say what the
    trainer will do with them; returns the number of problems (0 or 1)."""
    from ..corpus_stats import long_documents

    size = batcher.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
        msg.info(f"the batcher's size is {size!r} (not a fixed number of words): document "
                 "lengths not compared with it")
        return 0
    found = long_documents(doc_lengths, size)
    msg.info(f"longest training document: {found['longest']:,} words; batch size "
             f"{size:,} words ({batcher.get('@batchers')}); {found['over_batch']} "
             "document(s) longer than a batch")
    if not found["far_over"]:
        msg.good("no training document is more than twice the batch size")
        return 0
    what = ("the batcher drops them (discard_oversize = true): their spans are never "
            "trained on" if batcher.get("discard_oversize") else
            "each goes into a batch of its own (discard_oversize = false), kept whole, so "
            "the longest one, not the batch size, sets the training step's peak memory")
    msg.warn(f"{found['far_over']} training document(s) are at least twice the batch size "
             f"(the longest {found['longest_over_batch']}x): {what}. To bound the step, read "
             "train with @readers = \"spacy_crf_ner.Corpus.v1\" and max_length = "
             "${training.batcher.size} (the default configs), or split them when converting "
             "(convert --max-length N); neither cuts a gold span")
    return 1


@app.command(
    "debug-data",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def debug_data(
    ctx: typer.Context,
    config_path: Path = typer.Argument(..., metavar="CONFIG_PATH", help="Training config (.cfg)"),
    component: Optional[str] = typer.Option(
        None, "--component", "-c", help="The crf_ner component to analyse (default: the first)"
    ),
    output: Optional[Path] = typer.Option(
        None, "--output", "-o", help="Also save every count as JSON"
    ),
) -> None:
    """Label counts, span lengths, overlaps and nesting, spans training will not use, and
    train/dev label drift of CONFIG's corpora, as crf_ner sees them. Extra options override
    the config, as in spacy train (--paths.train corpus/train.spacy)."""
    import srsly
    from spacy.cli._util import parse_config_overrides

    from ..corpus_stats import FATES, LENGTH_BINS, corpus_stats, label_drift, length_histogram

    msg = Printer()
    try:
        overrides = parse_config_overrides(ctx.args)
    except Exception as err:
        msg.fail(f"bad config override in {ctx.args}: {err}", exits=1)
    nlp, name, cfg, train_egs, dev_egs, batcher = _load(config_path, overrides, component, msg)
    span_getter = cfg.get("target_span_getter", "sc")
    depth = int(cfg.get("nesting_depth", 1))
    labels = cfg.get("labels")
    stats = {split: corpus_stats(egs, span_getter, depth, labels)
             for split, egs in (("train", train_egs), ("dev", dev_egs))}
    drift = label_drift(stats["train"], stats["dev"])
    problems = 0

    msg.divider("Corpora")
    msg.info(f"component {name!r}: gold spans from {span_getter!r}, nesting_depth {depth}"
             + (f", fixed labels {list(labels)}" if labels else ""))
    msg.table([[split, s.docs, s.tokens, s.n_spans, len(s.spans)] for split, s in stats.items()],
              header=["corpus", "docs", "tokens", "spans", "labels"], divider=True)
    if stats["train"].n_spans == 0:
        msg.fail(f"no gold spans in the training corpus under {span_getter!r}: crf_ner has "
                 "nothing to learn (the converter writes to 'sc'; spaCy's corpora use 'ents')")
        problems += 1

    msg.divider("Labels (train vs dev)")
    msg.table(_label_table(stats, drift),
              header=["label", "train", "train %", "dev", "dev %", "drift (pp)", "mean len",
                      "max len"], divider=True, aligns=["l"] + ["r"] * 7)

    msg.divider("Span lengths (tokens, train)")
    train = stats["train"]
    msg.table([[label, *length_histogram(train.lengths[label])] for label in sorted(train.lengths)],
              header=["label", *(b[0] for b in LENGTH_BINS)], divider=True,
              aligns=["l"] + ["r"] * len(LENGTH_BINS))

    msg.divider("Overlaps and nesting")
    msg.table(
        [[split, sum(s.overlapping_labels.values()), s.same_offsets_other_label,
          sum(s.nested_same_label.values()), sum(s.crossing_same_label.values()), s.duplicates,
          max(s.max_depth.values(), default=0)] for split, s in stats.items()],
        header=["corpus", "overlap (2 labels)", "same offsets", "nested (1 label)",
                "crossing (1 label)", "duplicates", "max depth"], divider=True,
        aligns=["l"] + ["r"] * 6)
    pairs = train.overlapping_labels.most_common(MAX_PAIRS_SHOWN)
    if pairs:
        msg.text("Most frequent overlapping label pairs (train): "
                 + ", ".join(f"{a} + {b}: {n}" for (a, b), n in pairs))
    deepest = max(train.max_depth.values(), default=0)
    if deepest > depth:
        msg.warn(f"same-label nesting goes {deepest} deep in train but nesting_depth is {depth}: "
                 f"set nesting_depth = {deepest} to learn the inner spans")

    msg.divider("Spans crf_ner will not train on")
    msg.table([[split, *(s.not_trained[f] for f in FATES)] for split, s in stats.items()],
              header=["corpus", *FATES], divider=True, aligns=["l"] + ["r"] * len(FATES))
    lost = sum(stats["train"].not_trained.values())
    if lost:
        msg.warn(f"{lost} of {train.n_spans} training spans will not be used: misaligned "
                 "ones end inside a token of the pipeline's tokenizer; crossing and too deep "
                 "ones, see nesting_depth in README")
        problems += 1
    else:
        msg.good("every training span can be used")

    msg.divider("Document lengths (train) and the batch size")
    problems += _long_documents(stats["train"].doc_lengths, batcher, msg)

    msg.divider("Train/dev drift")
    msg.info(f"total variation distance of the label distributions: "
             f"{drift['total_variation']:.3f} (0 = same, 1 = disjoint)")
    if drift["only_in_dev"]:
        msg.warn(f"labels only in dev (never learnt, always missed): {drift['only_in_dev']}")
        problems += 1
    if drift["only_in_train"]:
        msg.warn(f"labels only in train (never scored on dev): {drift['only_in_train']}")
        problems += 1
    if not drift["only_in_dev"] and not drift["only_in_train"]:
        msg.good("train and dev have the same labels")

    if output is not None:
        from ..corpus_stats import long_documents

        size = batcher.get("size")
        payload = {"component": name, "span_getter": span_getter, "nesting_depth": depth,
                   "long_documents": long_documents(stats["train"].doc_lengths, size)
                   if isinstance(size, int) and size > 0 else None,
                   **{split: s.to_dict() for split, s in stats.items()}, "drift": drift}
        try:
            output.parent.mkdir(parents=True, exist_ok=True)
            srsly.write_json(output, payload)
        except OSError as err:
            msg.fail(f"cannot write {output}: {err}", exits=1)
        msg.info(f"saved every count to {output}")
    msg.divider("Summary")
    if problems:
        msg.warn(f"{problems} thing(s) to look at before training (see above)")
    else:
        msg.good("nothing to fix before training")
    if stats["train"].n_spans == 0:
        raise typer.Exit(code=1)
