"""Document-level consistency: the same words tagged alike within one document.

A model tags each mention from its context, so a disease named five times in a note may be
found four times. ``propagate_within_doc`` copies each predicted label to the other
occurrences of the same word sequence in the same document, where no predicted span (of any
label) overlaps them. When one word sequence is predicted with several labels, only its
most frequent label (ties: the most confident) spreads. A copied span gets the confidence of
the most confident span it copies. Case matters ("Cancer" and "cancer" are different
strings); single-character strings never spread. Torch-free; ``crf_ner`` applies it after
decoding when ``document_consistency = true``.

Off by default: on NCBI disease dev it cost F1 (BENCHMARKS.md "Accuracy"), because that
corpus leaves many repeats of an annotated string unannotated where the context differs (a
gene symbol that names the disease elsewhere). Corpora annotated mention by mention,
exhaustively, are where it can help: measure it on your dev set.
"""
from collections import defaultdict
from typing import Dict, List, Sequence, Set, Tuple

import numpy


def propagate_within_doc(words: Sequence[str], spans: numpy.ndarray, conf: numpy.ndarray
                         ) -> Tuple[numpy.ndarray, numpy.ndarray]:
    """``spans``: int array ``(n, 3)`` of (label, start, end) token offsets; ``conf``:
    ``(n,)``. Returns the spans and confidences with the copies added, ordered by
    (start, end, label)."""
    if not len(spans):
        return spans, conf
    # word sequence -> label -> (count, best confidence)
    votes: Dict[Tuple[str, ...], Dict[int, List[float]]] = defaultdict(dict)
    for (label, start, end), c in zip(spans.tolist(), conf.tolist()):
        key = tuple(words[start:end])
        if len("".join(key)) < 2:
            continue
        count, best = votes[key].get(label, [0, 0.0])
        votes[key][label] = [count + 1, max(best, c)]
    taken: Set[int] = set()  # token positions covered by a predicted (or copied) span
    for _, start, end in spans.tolist():
        taken.update(range(start, end))
    first = defaultdict(list)  # word -> positions
    for i, word in enumerate(words):
        first[word].append(i)
    added_spans, added_conf = [], []
    for key, by_label in votes.items():
        label, (_, best) = max(by_label.items(), key=lambda kv: (kv[1][0], kv[1][1]))
        n = len(key)
        for i in first.get(key[0], ()):
            if tuple(words[i:i + n]) != key:
                continue
            if any(j in taken for j in range(i, i + n)):
                continue
            added_spans.append((label, i, i + n))
            added_conf.append(best)
            taken.update(range(i, i + n))
    if not added_spans:
        return spans, conf
    all_spans = numpy.concatenate([spans, numpy.asarray(added_spans, dtype=spans.dtype)])
    all_conf = numpy.concatenate([conf, numpy.asarray(added_conf, dtype=conf.dtype)])
    order = numpy.lexsort((all_spans[:, 0], all_spans[:, 2], all_spans[:, 1]))
    return all_spans[order], all_conf[order]
