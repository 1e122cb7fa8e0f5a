"""BRAT standoff data layer: read ``.txt``/``.ann`` folders into spaCy Docs, split long
documents, write Docs back to standoff, and a registered corpus reader for ``spacy train``.

No torch here: importing this package only needs spaCy.

* :func:`read_standoff` / :func:`iter_standoff`: folder -> Docs + :class:`ConversionReport`.
* :func:`parse_ann`: one ``.ann`` text -> records (entities, attributes, notes, others).
* :func:`split_doc`: long Doc -> parts that never cut through a span.
* :func:`write_standoff` / :func:`format_ann`: Docs -> ``.ann`` (+ ``.txt``) files.
* :func:`get_provenance`, :func:`set_provenance`, :func:`copy_provenance`,
  :func:`get_span_annotation`: what is stored in ``doc.user_data`` (see :mod:`.meta`).
"""
from .ann import AnnAttribute, AnnDocument, AnnEntity, AnnNote, AnnOther, parse_ann
from .meta import (
    ANNOTATIONS_KEY,
    PROVENANCE_KEY,
    Provenance,
    copy_provenance,
    get_annotations,
    get_provenance,
    get_span_annotation,
    set_provenance,
)
from .reader import (
    ALIGNMENT_POLICIES,
    DISCONTINUOUS_POLICIES,
    StandoffOptions,
    StandoffReader,
    find_standoff_files,
    iter_standoff,
    read_standoff,
    standoff_to_docs,
)
from .report import ConversionReport, StandoffError, StandoffIssue
from .split import DEFAULT_SPLIT_REGEX, split_doc
from .writer import WriteReport, format_ann, write_standoff

__all__ = [
    "ALIGNMENT_POLICIES",
    "ANNOTATIONS_KEY",
    "AnnAttribute",
    "AnnDocument",
    "AnnEntity",
    "AnnNote",
    "AnnOther",
    "ConversionReport",
    "DEFAULT_SPLIT_REGEX",
    "DISCONTINUOUS_POLICIES",
    "PROVENANCE_KEY",
    "Provenance",
    "StandoffError",
    "StandoffIssue",
    "StandoffOptions",
    "StandoffReader",
    "WriteReport",
    "copy_provenance",
    "find_standoff_files",
    "format_ann",
    "get_annotations",
    "get_provenance",
    "get_span_annotation",
    "iter_standoff",
    "parse_ann",
    "read_standoff",
    "set_provenance",
    "split_doc",
    "standoff_to_docs",
    "write_standoff",
]
