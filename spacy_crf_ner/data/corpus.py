"""``spacy_crf_ner.StandoffCorpus.v1``: train and evaluate directly on BRAT standoff folders.

Works like spaCy's ``spacy.Corpus.v1`` but reads ``.txt``/``.ann`` files: the reference Doc
is the converted Doc (entities in ``doc.spans[span_key]`` and ``doc.ents``), the predicted
Doc is ``nlp.make_doc(reference.text)`` and spaCy aligns the two tokenizations.

    [corpora.train]
    @readers = "spacy_crf_ner.StandoffCorpus.v1"
    path = ${paths.train}
    max_length = 256
"""
import logging
import random
from pathlib import Path
from typing import Iterator, Optional, Union

import spacy
from spacy.language import Language
from spacy.training import Example

from .reader import iter_standoff
from .report import ConversionReport
from .split import DEFAULT_SPLIT_REGEX

logger = logging.getLogger("spacy_crf_ner.data")


@spacy.registry.readers("spacy_crf_ner.StandoffCorpus.v1")
class StandoffCorpus:
    """Callable ``(nlp) -> Iterator[Example]`` over a standoff folder (re-read each call).

    Registered as the reader ``spacy_crf_ner.StandoffCorpus.v1``; same options as
    ``python -m spacy_crf_ner convert``.
    """

    def __init__(
        self,
        path: Union[str, Path],
        *,
        span_key: str = "sc",
        split_regex: Optional[str] = DEFAULT_SPLIT_REGEX,
        max_length: int = 0,
        discontinuous: str = "split",
        alignment: str = "split_tokens",
        set_ents: bool = True,
        strict: bool = False,
        keep_txt_only: bool = True,
        shuffle: bool = False,
        limit: int = 0,
    ):
        if path is None:
            raise ValueError("StandoffCorpus needs a path (a folder of .txt/.ann files)")
        self.path = Path(path)
        self.options = dict(
            span_key=span_key, split_regex=split_regex, max_length=max_length,
            discontinuous=discontinuous, alignment=alignment, set_ents=set_ents,
            strict=strict, keep_txt_only=keep_txt_only,
        )
        self.shuffle = shuffle
        self.limit = limit
        self.last_report: Optional[ConversionReport] = None

    def __call__(self, nlp: Language) -> Iterator[Example]:
        report = ConversionReport()
        docs = list(iter_standoff(self.path, nlp, report, **self.options))
        if report.n_warnings or report.n_dropped:
            logger.warning(
                "%s: %d spans kept, %d dropped %s, %d warning(s) %s", self.path, report.kept,
                report.n_dropped, dict(report.dropped), report.n_warnings,
                dict(report.warnings),
            )
        self.last_report = report
        if self.limit >= 1:
            docs = docs[: self.limit]
        if self.shuffle:
            random.shuffle(docs)
        for reference in docs:
            yield Example(nlp.make_doc(reference.text), reference)
