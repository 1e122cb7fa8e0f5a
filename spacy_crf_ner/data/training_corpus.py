"""``spacy_crf_ner.Corpus.v1``: spaCy's ``.spacy`` corpus, long documents split for training.

Why: spaCy's trainer keeps a document whole. One longer than ``[training.batcher] size``
becomes a batch of its own and every transformer window of it keeps its activations for the
backward pass, so the longest document, not the batch size, sets the step's memory.
``spacy.Corpus.v1``'s own ``max_length`` is no answer: it keeps only the *sentences* of a long
document (which a converted corpus rarely has), drops those still too long, and loses every
span across a sentence end, silently.

Here a document longer than ``max_length`` tokens is cut with :func:`split_doc`: at line
breaks and sentence ends (``split_regex``), consecutive pieces packed back into parts of up
to ``max_length`` tokens, and never through a gold span (any span group, or ``doc.ents``).
Where spans cover every boundary within the limit, the part stays longer and is counted.
Every span keeps its label and characters. The counts are said once, after the first pass
over the corpus. Evaluation needs no split (no activations are kept): use it for training.

    [corpora.train]
    @readers = "spacy_crf_ner.Corpus.v1"
    path = ${paths.train}
    max_length = ${training.batcher.size}
"""
import re
from pathlib import Path
from typing import Callable, Iterator, Optional, Union

import spacy
from spacy.language import Language
from spacy.tokens import Doc
from spacy.training import Corpus, Example
from wasabi import msg

from .report import ConversionReport
from .split import check_split_regex, split_doc

# What was printed in this process: spacy train builds the reader twice (initialize, loop).
_SAID: set = set()

# Line breaks, or the spaces after a sentence's final punctuation.
TRAIN_SPLIT_REGEX = r"(?:\r?\n)+|(?<=[.!?])[ \t]+"


class SplitStats:
    """What the splitting did over one pass of the corpus."""

    def __init__(self) -> None:
        self.docs = 0
        self.docs_split = 0
        self.parts = 0
        self.over_length = 0
        self.longest_part = 0

    def describe(self, max_length: int) -> str:
        if not self.docs_split:
            return (f"training corpus: no document longer than {max_length} tokens "
                    f"({self.docs} documents)")
        text = (f"training corpus: {self.docs_split} of {self.docs} documents longer than "
                f"{max_length} tokens split into {self.parts} parts at line and sentence ends, "
                f"no span cut")
        if self.over_length:
            text += (f"; {self.over_length} part(s) stay longer (up to {self.longest_part} "
                     "tokens): spans cover every boundary within the limit")
        return text


class SplitCorpus:
    """Callable ``(nlp) -> Iterator[Example]``: ``spacy.training.Corpus`` over ``path``,
    with references longer than ``max_length`` tokens split (0: no split)."""

    def __init__(self, path: Union[str, Path], *, max_length: int = 0,
                 split_regex: Optional[str] = TRAIN_SPLIT_REGEX, gold_preproc: bool = False,
                 limit: int = 0, augmenter: Optional[Callable] = None):
        if max_length < 0:
            raise ValueError(f"max_length must be 0 (no split) or more, got {max_length}")
        check_split_regex(split_regex)
        self.corpus = Corpus(path, max_length=0, gold_preproc=gold_preproc, limit=limit,
                             augmenter=augmenter)
        self.max_length = max_length
        self.regex = re.compile(split_regex) if split_regex else None
        self.gold_preproc = gold_preproc
        self.stats: Optional[SplitStats] = None  # of the first complete pass

    def __call__(self, nlp: Language) -> Iterator[Example]:
        stats = SplitStats()
        for eg in self.corpus(nlp):
            stats.docs += 1
            reference = eg.reference
            if not self.max_length or len(reference) <= self.max_length:
                yield eg
                continue
            report = ConversionReport()
            parts = split_doc(reference, self.regex, self.max_length, report=report)
            if len(parts) > 1:
                stats.docs_split += 1
                stats.parts += len(parts)
            stats.over_length += report.over_length
            for part in parts:
                stats.longest_part = max(stats.longest_part, len(part))
                yield Example(self._predicted(nlp, part), part)
        if self.stats is None:
            self.stats = stats
            said = stats.describe(self.max_length)
            if self.max_length and said not in _SAID:  # spacy train reads it twice
                _SAID.add(said)
                msg.info(said)

    def _predicted(self, nlp: Language, reference: Doc) -> Doc:
        if self.gold_preproc:
            return Doc(nlp.vocab, words=[t.text for t in reference],
                       spaces=[bool(t.whitespace_) for t in reference])
        return nlp.make_doc(reference.text)


@spacy.registry.readers("spacy_crf_ner.Corpus.v1")
def create_split_corpus(path: Optional[Path], max_length: int = 0,
                        split_regex: Optional[str] = TRAIN_SPLIT_REGEX,
                        gold_preproc: bool = False, limit: int = 0,
                        augmenter: Optional[Callable] = None) -> SplitCorpus:
    """spaCy's ``.spacy`` corpus reader; documents longer than ``max_length`` tokens are
    split at line and sentence ends, never through a span (see the module docstring)."""
    if path is None:
        raise ValueError("spacy_crf_ner.Corpus.v1 needs a path (a .spacy file or folder)")
    return SplitCorpus(path, max_length=max_length, split_regex=split_regex,
                       gold_preproc=gold_preproc, limit=limit, augmenter=augmenter)
