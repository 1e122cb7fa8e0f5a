"""Batch inference on Apache Spark: ``nlp.pipe`` on every executor, entities as a DataFrame.

    from spacy_crf_ner.spark import annotate
    entities = annotate(notes_df, "path/to/model", text_col="note_text", id_col="note_id")

* :func:`annotate`: one row per predicted entity (or OMOP ``note_nlp`` rows, ``omop=True``).
* :func:`annotate_notes`: one row per input row, with its status (entities / none / error),
  its entities as an array and the reason of an error; :func:`entity_rows`,
  :func:`error_rows` and :func:`count_notes` derive the entity table, the error table and
  the accounting (rows in = with entities + without + in error) from it.
* :func:`prepare_model`: the driver-side check of the model (raises :class:`ModelError`
  before any task) and its shipping to the executors.

Texts travel as Arrow batches (``mapInArrow``); each Python worker loads the pipeline once.
Importing this module needs pyspark (``pip install 'spacy-crf-ner[spark]'``); nothing else in
the package imports it. Full guide: docs/spark.md.
"""
from .api import (
    OMOP_COLUMNS,
    OMOP_EXTRAS,
    annotate,
    annotate_notes,
    count_notes,
    entity_rows,
    error_rows,
    local_session,
    prepare_model,
)
from .model import ModelError, ModelSpec
from .worker import ENTITY_FIELDS, ERROR_REASONS, STATUSES

__all__ = [
    "ENTITY_FIELDS",
    "ERROR_REASONS",
    "ModelError",
    "ModelSpec",
    "OMOP_COLUMNS",
    "OMOP_EXTRAS",
    "STATUSES",
    "annotate",
    "annotate_notes",
    "count_notes",
    "entity_rows",
    "error_rows",
    "local_session",
    "prepare_model",
]
