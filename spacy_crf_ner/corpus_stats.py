"""What a training corpus holds for ``crf_ner``, before training: labels, span lengths,
overlaps and nesting, the spans training will not use, and how dev differs from train.

``spacy debug data`` analyses spans only for spaCy's own span components; this is its
counterpart (``python -m spacy_crf_ner debug-data CONFIG``). Everything is counted on the
gold spans where ``crf_ner`` reads them (its ``target_span_getter``). The spans training
will not use are counted with the pipe's own rules: a span that does not start and end on
a token of the pipeline's tokenizer is *misaligned*; of spans of one label that cross, the
longer is kept (*same_label_crossing*); spans nested in spans of their label deeper than
``nesting_depth`` are *nested_too_deep*; with fixed ``labels``, other labels are
*unknown_label*.
"""
from collections import Counter
from dataclasses import dataclass, field, fields
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from spacy.tokens import Doc, Span
from spacy.training import Example

from .spans.bioul import assign_levels

# Span length bins, in tokens of the reference doc.
LENGTH_BINS: Tuple[Tuple[str, int, int], ...] = (
    ("1", 1, 1), ("2", 2, 2), ("3-5", 3, 5), ("6-10", 6, 10), (">10", 11, 1 << 30),
)
FATES = ("misaligned", "same_label_crossing", "nested_too_deep", "unknown_label")


@dataclass
class CorpusStats:
    """Counts over one corpus (all gold spans, before anything is dropped)."""

    docs: int = 0
    tokens: int = 0
    spans: Counter = field(default_factory=Counter)  # label -> spans
    lengths: Dict[str, List[int]] = field(default_factory=dict)  # label -> lengths (tokens)
    # Pairs of overlapping spans of different labels, by (label, label) sorted.
    overlapping_labels: Counter = field(default_factory=Counter)
    same_offsets_other_label: int = 0  # pairs: same characters, different labels
    duplicates: int = 0  # pairs: same characters, same label
    nested_same_label: Counter = field(default_factory=Counter)  # label -> contained pairs
    crossing_same_label: Counter = field(default_factory=Counter)  # label -> crossing pairs
    max_depth: Counter = field(default_factory=Counter)  # label -> deepest same-label nesting
    not_trained: Counter = field(default_factory=Counter)  # fate -> spans (see FATES)
    doc_lengths: List[int] = field(default_factory=list)  # words (predicted tokens) per doc

    @property
    def n_spans(self) -> int:
        return sum(self.spans.values())

    def to_dict(self) -> Dict[str, Any]:
        """Plain JSON-ready dicts (``dataclasses.asdict`` would miscount the Counters)."""
        out: Dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = dict(value) if isinstance(value, dict) else value
        out["overlapping_labels"] = {" + ".join(k): v for k, v in
                                     sorted(self.overlapping_labels.items())}
        out["n_spans"] = self.n_spans
        return out


def reference_spans(doc: Doc, span_getter: str) -> Sequence[Span]:
    """The gold spans, read as ``crf_ner`` reads its ``target_span_getter``."""
    if span_getter == "ents":
        return doc.ents
    return doc.spans[span_getter] if span_getter in doc.spans else []


def _count_pairs(stats: CorpusStats, spans: List[Span]) -> None:
    """Overlap, nesting and crossing pairs among one doc's spans, and nesting depths."""
    ordered = sorted(spans, key=lambda s: (s.start_char, -s.end_char))
    depth = [1] * len(ordered)
    for i, a in enumerate(ordered):
        for j in range(i + 1, len(ordered)):
            b = ordered[j]
            if b.start_char >= a.end_char:
                break
            same_offsets = (a.start_char, a.end_char) == (b.start_char, b.end_char)
            if a.label_ != b.label_:
                if same_offsets:
                    stats.same_offsets_other_label += 1
                else:
                    stats.overlapping_labels[tuple(sorted((a.label_, b.label_)))] += 1
            elif same_offsets:
                stats.duplicates += 1
            elif b.end_char <= a.end_char:  # b inside a (a starts first or ends later)
                stats.nested_same_label[a.label_] += 1
                depth[j] = max(depth[j], depth[i] + 1)
            else:
                stats.crossing_same_label[a.label_] += 1
    for span, d in zip(ordered, depth):
        stats.max_depth[span.label_] = max(stats.max_depth[span.label_], d)


def corpus_stats(
    examples: Iterable[Example],
    span_getter: str = "sc",
    nesting_depth: int = 1,
    labels: Optional[Sequence[str]] = None,
) -> CorpusStats:
    """Count everything in :class:`CorpusStats` over ``examples`` (gold = reference docs,
    tokens for training = predicted docs, as ``crf_ner`` sees them)."""
    stats = CorpusStats()
    fixed = set(labels) if labels else None
    for eg in examples:
        spans = list(reference_spans(eg.reference, span_getter))
        stats.docs += 1
        stats.tokens += len(eg.reference)
        stats.doc_lengths.append(len(eg.predicted))  # what spaCy's batchers count
        for span in spans:
            stats.spans[span.label_] += 1
            stats.lengths.setdefault(span.label_, []).append(len(span))
        _count_pairs(stats, spans)
        known = [s for s in spans if fixed is None or s.label_ in fixed]
        stats.not_trained["unknown_label"] += len(spans) - len(known)
        aligned = eg.get_aligned_spans_y2x(known, allow_overlap=True)
        stats.not_trained["misaligned"] += len(known) - len(aligned)
        label_ids = {label: i for i, label in enumerate(sorted({s.label_ for s in aligned}))}
        _, crossing, too_deep = assign_levels(
            [(label_ids[s.label_], s.start, s.end) for s in aligned], nesting_depth)
        stats.not_trained["same_label_crossing"] += len(crossing)
        stats.not_trained["nested_too_deep"] += len(too_deep)
    for fate in FATES:
        stats.not_trained[fate] += 0
    return stats


def label_drift(train: CorpusStats, dev: CorpusStats) -> Dict[str, Any]:
    """How the label distribution of dev differs from train's.

    ``shares``: label -> (train share, dev share) of the spans; ``total_variation``: half the
    summed absolute differences of the shares (0: same distribution, 1: disjoint labels);
    ``only_in_dev`` (never learnt, always missed) and ``only_in_train`` (never scored).
    """
    labels = sorted(set(train.spans) | set(dev.spans))
    n_train, n_dev = max(train.n_spans, 1), max(dev.n_spans, 1)
    shares = {label: (train.spans[label] / n_train, dev.spans[label] / n_dev) for label in labels}
    return {
        "shares": shares,
        "total_variation": 0.5 * sum(abs(t - d) for t, d in shares.values()),
        "only_in_dev": [label for label in labels if label not in train.spans],
        "only_in_train": [label for label in labels if label not in dev.spans],
    }


def length_histogram(lengths: Sequence[int]) -> List[int]:
    """Counts of ``lengths`` in each of ``LENGTH_BINS``."""
    return [sum(1 for n in lengths if lo <= n <= hi) for _, lo, hi in LENGTH_BINS]


def long_documents(doc_lengths: Sequence[int], batch_words: int, factor: float = 2.0
                   ) -> Dict[str, Any]:
    """The training documents longer than ``batch_words`` (spaCy's ``batch_by_words`` size)
    and ``factor`` times longer: such a document cannot share a batch, and, kept whole, it
    sets the training step's memory rather than the batch size does."""
    over = sorted((n for n in doc_lengths if n > batch_words), reverse=True)
    far = [n for n in over if n >= factor * batch_words]
    longest = over[0] if over else max(doc_lengths, default=0)
    return {"batch_words": batch_words, "over_batch": len(over), "far_over": len(far),
            "factor": factor, "longest": longest,
            "longest_over_batch": round(longest / batch_words, 2) if batch_words else None}
