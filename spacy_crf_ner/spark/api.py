"""Driver side of :mod:`spacy_crf_ner.spark` (see the package docstring and docs/spark.md)."""
import sys
from functools import partial
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Union

from ..about import __version__
from ..data.split import DEFAULT_SPLIT_REGEX, check_split_regex
from . import model as _model
from .model import ModelError, ModelSpec
from .worker import ENTITY_FIELDS, Options, map_batches, result_fields

try:
    from pyspark.sql import DataFrame, functions as F, types as T
except ImportError as err:  # pragma: no cover - depends on the environment
    raise ImportError(
        "spacy_crf_ner.spark needs pyspark (and pyarrow, pandas): "
        "pip install 'spacy-crf-ner[spark]'"
    ) from err

StrOrPaths = Union[str, Path, Sequence[Union[str, Path]]]

# OMOP CDM note_nlp columns (in the order of the CDM), then our extras.
OMOP_COLUMNS = (
    "note_nlp_id", "note_id", "section_concept_id", "snippet", "offset", "lexical_variant",
    "note_nlp_concept_id", "note_nlp_source_concept_id", "nlp_system", "nlp_date",
    "nlp_datetime", "term_exists", "term_temporal", "term_modifiers",
)
OMOP_EXTRAS = ("start_char", "end_char", "note_nlp_source_value", "confidence", "span_key",
               "nesting_level")


def _spark_type(kind) -> "T.DataType":
    if isinstance(kind, list):
        return T.ArrayType(_spark_type(kind[0]))
    if isinstance(kind, tuple):
        return T.StructType([T.StructField(name, _spark_type(sub)) for name, sub in kind])
    return {"int": T.IntegerType(), "double": T.DoubleType(), "string": T.StringType()}[kind]


def _as_tuple(value: Union[str, Path, Sequence[Union[str, Path]], None]) -> tuple:
    if value is None:
        return ()
    return (value,) if isinstance(value, (str, Path)) else tuple(value)


def _is_local(spark) -> bool:
    try:
        master = spark.sparkContext.master
    except Exception:  # Spark Connect: no SparkContext
        master = spark.conf.get("spark.master", "")
    return master.startswith("local")


def _task_gpus(spark) -> bool:
    """Whether this session's tasks are given GPUs."""
    try:
        amount = spark.conf.get("spark.task.resource.gpu.amount", None)
    except Exception:
        return False
    try:
        return amount is not None and float(amount) > 0
    except ValueError:
        return False


def prepare_model(spark, model: Union[str, Path], *, ship: Optional[bool] = None,
                  code: StrOrPaths = (), check_load: bool = True,
                  precision: Optional[str] = None) -> ModelSpec:
    """Check ``model`` on the driver and make it reachable from the executors.

    Raises :class:`ModelError` (before any job) when it is not a pipeline folder, an archive
    of one, or an installed pipeline package, or (``check_load``) when it does not load
    here. ``ship``: send a folder to the executors with ``addArchive`` (default: only when
    the master is not ``local``); archives are always shipped. ``code``: Python files that
    register custom components, imported before loading, shipped with ``addFile``.
    ``precision``: run the transformer at ``int8`` (CPU executors), ``bf16`` or ``fp16``
    (GPU executors) instead of the pipeline's own precision (``set_precision``).
    """
    from spacy.util import is_package

    from ..transformer.precision import PRECISIONS

    if precision is not None and precision not in PRECISIONS:
        raise ModelError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    if precision == "int8" and _task_gpus(spark):
        raise ModelError("precision int8 runs on CPUs only, and this session gives tasks GPUs "
                         "(spark.task.resource.gpu.amount); use bf16 or fp16 on GPUs")
    code_files = [Path(p) for p in _as_tuple(code)]
    for path in code_files:
        if not path.is_file():
            raise ModelError(f"code file {path} does not exist")
    name = str(model)
    path = Path(model)
    if path.is_dir():
        root = _model.pipeline_root(path)
        if root != path:
            where = f" (one was found in {root})" if root else ""
            raise ModelError(f"model {name} is not a spaCy pipeline folder: no config.cfg"
                             f"{where}")
        shipping = not _is_local(spark) if ship is None else ship
        kind = "archive" if shipping else "path"
        local: Optional[Path] = path
    elif path.is_file():
        if not _model.is_archive(path):
            raise ModelError(f"model {name} is a file; expected a pipeline folder, an archive "
                             f"of one ({', '.join(_model.ARCHIVE_SUFFIXES)}) or an installed "
                             "pipeline package name")
        kind = "archive"
        local = _model.pipeline_root(_model.unpack_archive(path))
        if local is None:
            raise ModelError(f"model archive {name} holds no spaCy pipeline (no config.cfg)")
    elif is_package(name):
        kind, local = "package", None
    else:
        raise ModelError(f"model {name} not found: no such folder or archive, and no installed "
                         "pipeline package of that name")
    if check_load:
        _model.import_code(code_files)
        # int8 is checked here (a CPU); bf16/fp16 copies are made here too, on the CPU, which
        # checks that the pipeline has a transformer that takes a precision.
        _model.load_pipeline(local if local is not None else name, name, precision)
    shipped_code = []
    try:
        # Only shipping needs a SparkContext (Spark Connect sessions have none).
        for path_ in code_files:
            spark.sparkContext.addFile(str(path_.resolve()))
            shipped_code.append(path_.name)
        if kind == "archive":
            archive = path if path.is_file() else _model.pack_folder(path)
            spark.sparkContext.addArchive(str(archive.resolve()))
            location = archive.name
        elif kind == "path":
            location = str(path.resolve())
        else:
            location = name
    except Exception as err:  # e.g. a different file of the same name was added before
        raise ModelError(f"cannot ship model {name} to the executors: "
                         f"{type(err).__name__}: {err}") from err
    return ModelSpec(kind, location, name, tuple(shipped_code), precision)


def _check_options(df, text_col: str, id_col: str, keep_cols: tuple, max_length: int,
                   split_regex: Optional[str], batch_size: int) -> None:
    columns = set(df.columns)
    for role, col in [("text_col", text_col), ("id_col", id_col)] + [
            ("keep_cols", c) for c in keep_cols]:
        if col not in columns:
            raise ValueError(f"{role} {col!r} is not a column of the DataFrame "
                             f"(columns: {', '.join(df.columns)})")
    if len({text_col, id_col, *keep_cols}) != 2 + len(keep_cols):
        raise ValueError("text_col, id_col and keep_cols must be distinct columns")
    taken = {name for name, _ in result_fields(Options(id_col, text_col, brat=True,
                                                       diagnostics=True))}
    clash = taken & {id_col, *keep_cols}
    if clash:
        raise ValueError(f"column name(s) {sorted(clash)} are used by the result; rename them")
    text_type = df.schema[text_col].dataType
    if not isinstance(text_type, T.StringType):
        raise ValueError(f"text_col {text_col!r} must be a string column, not {text_type}")
    if max_length < 0:
        raise ValueError(f"max_length must be >= 0, got {max_length}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    check_split_regex(split_regex)


def annotate_notes(
    df: "DataFrame",
    model: Union[str, Path],
    text_col: str = "note_text",
    id_col: str = "note_id",
    *,
    keep_cols: Sequence[str] = (),
    span_keys: Union[str, Sequence[str]] = "sc",
    max_length: int = 0,
    split_regex: Optional[str] = DEFAULT_SPLIT_REGEX,
    batch_size: int = 32,
    partitions: Optional[int] = None,
    ship: Optional[bool] = None,
    code: StrOrPaths = (),
    check_load: bool = True,
    precision: Optional[str] = None,
    brat: bool = False,
    brat_scores: bool = True,
    diagnostics: bool = False,
) -> "DataFrame":
    """One row per input row: the id, ``keep_cols``, ``status`` (``"entities"``,
    ``"none"`` or ``"error"``), ``n_parts``, ``n_words``, ``entities`` (an array of structs,
    fields as in :func:`entity_rows`), ``error`` (``null_text``, ``empty_text`` or
    ``pipeline_error``) and ``error_message``. With ``brat``, also the ``.ann`` text of the
    note (``ann``, first span key, confidences as notes when ``brat_scores``) and its writer
    issues (``ann_issues``); with ``diagnostics``, the Python worker (``worker``), its
    pipeline load time (``load_s``), its CPU seconds since then (``cpu_s``) and its peak RSS
    so far (``rss_mb``), as of the row's batch.

    Lazy: nothing runs until an action. Each action recomputes the predictions, so write
    the result (or persist it) before deriving several tables from it.

    ``max_length`` / ``split_regex``: split texts into parts of at most that many tokens, as
    ``predict`` does (0: no split); offsets always refer to the original text.
    ``partitions``: repartition the input to that many partitions (default: at least
    ``defaultParallelism``, so every core gets work). See :func:`prepare_model` for
    ``model``, ``ship``, ``code``, ``check_load`` and ``precision``.
    """
    keep = _as_tuple(keep_cols)
    keys = _as_tuple(span_keys)
    if not keys:
        raise ValueError("span_keys must name at least one span group ('ents' for doc.ents)")
    _check_options(df, text_col, id_col, keep, max_length, split_regex, batch_size)
    if partitions is not None and partitions < 1:
        raise ValueError(f"partitions must be >= 1, got {partitions}")
    spark = df.sparkSession
    spec = prepare_model(spark, model, ship=ship, code=code, check_load=check_load,
                         precision=precision)
    options = Options(id_col=id_col, text_col=text_col, keep_cols=keep, span_keys=keys,
                      max_length=max_length, split_regex=split_regex or None,
                      batch_size=batch_size, brat=brat, brat_scores=brat_scores,
                      diagnostics=diagnostics)
    source = df.select(id_col, text_col, *keep)
    if partitions is not None:
        source = source.repartition(partitions)
    else:
        try:
            wanted = spark.sparkContext.defaultParallelism
            have = source.rdd.getNumPartitions()
        except Exception:  # no RDD API (Spark Connect): leave the partitioning alone
            wanted = have = 0
        if have < wanted:
            source = source.repartition(wanted)
    fields = [df.schema[id_col]] + [df.schema[c] for c in keep]
    fields += [T.StructField(name, _spark_type(kind)) for name, kind in result_fields(options)]
    # A partial of a module-level function: pickled by reference, so the pipeline cache is
    # the worker module's own, one per Python worker.
    return source.mapInArrow(partial(map_batches, spec=spec, options=options),
                             T.StructType(fields))


def entity_rows(notes: "DataFrame", id_col: Optional[str] = None, *, omop: bool = False,
                nlp_system: Optional[str] = None) -> "DataFrame":
    """One row per entity from :func:`annotate_notes`' output: the id, the kept columns,
    ``start_char``, ``end_char`` (offsets in the original text), ``label``, ``text`` (the
    covered text), ``confidence`` (null for ``doc.ents``), ``span_key`` and
    ``nesting_level`` (0: outermost). ``omop``: OMOP ``note_nlp`` columns instead (see
    :data:`OMOP_COLUMNS`; the id becomes ``note_id``; extras :data:`OMOP_EXTRAS`)."""
    id_col = id_col or notes.columns[0]
    keep = notes.columns[1:notes.columns.index("status")]
    rows = notes.select(id_col, *keep, F.explode("entities").alias("e"))
    rows = rows.select(id_col, *keep, *[f"e.{name}" for name, _ in ENTITY_FIELDS])
    if not omop:
        return rows
    system = nlp_system or f"spacy-crf-ner {__version__}"
    null = F.lit(None).cast("string")
    return rows.select(
        F.monotonically_increasing_id().alias("note_nlp_id"),
        F.col(id_col).alias("note_id"),
        F.lit(0).alias("section_concept_id"),
        null.alias("snippet"),
        F.col("start_char").cast("string").alias("offset"),
        F.col("text").alias("lexical_variant"),
        F.lit(0).alias("note_nlp_concept_id"),
        F.lit(0).alias("note_nlp_source_concept_id"),
        F.lit(system).alias("nlp_system"),
        F.current_date().alias("nlp_date"),
        F.current_timestamp().alias("nlp_datetime"),
        null.alias("term_exists"),
        null.alias("term_temporal"),
        null.alias("term_modifiers"),
        "start_char", "end_char",
        F.col("label").alias("note_nlp_source_value"),
        "confidence", "span_key", "nesting_level",
        *[c for c in keep if c != "note_id"],
    )


def error_rows(notes: "DataFrame", id_col: Optional[str] = None) -> "DataFrame":
    """The rows of :func:`annotate_notes`' output in error: id, kept columns, ``error``
    (the reason) and ``error_message``."""
    id_col = id_col or notes.columns[0]
    keep = notes.columns[1:notes.columns.index("status")]
    return notes.where(F.col("status") == "error").select(id_col, *keep, "error",
                                                          "error_message")


def count_notes(notes: "DataFrame") -> Dict[str, Any]:
    """Every input row accounted for, in one aggregation: ``rows`` = ``with_entities`` +
    ``without_entities`` + ``errors``; ``error_reasons``: rows per reason; ``entities``,
    ``words`` and ``parts`` summed over the rows predicted."""
    found = notes.groupBy("status", "error").agg(
        F.count(F.lit(1)).alias("rows"),
        F.sum(F.size("entities")).alias("entities"),
        F.sum("n_words").alias("words"),
        F.sum("n_parts").alias("parts"),
    ).collect()
    counts: Dict[str, Any] = {"rows": 0, "with_entities": 0, "without_entities": 0,
                              "errors": 0, "error_reasons": {}, "entities": 0, "words": 0,
                              "parts": 0}
    for row in found:
        counts["rows"] += row["rows"]
        name = {"entities": "with_entities", "none": "without_entities",
                "error": "errors"}[row["status"]]
        counts[name] += row["rows"]
        if row["status"] == "error":
            counts["error_reasons"][row["error"]] = row["rows"]
        else:
            counts["entities"] += int(row["entities"] or 0)
            counts["words"] += int(row["words"] or 0)
            counts["parts"] += int(row["parts"] or 0)
    return counts


def annotate(
    df: "DataFrame",
    model: Union[str, Path],
    text_col: str = "note_text",
    id_col: str = "note_id",
    *,
    omop: bool = False,
    **kwargs,
) -> "DataFrame":
    """One row per predicted entity (see :func:`entity_rows`; ``omop`` for the OMOP
    ``note_nlp`` columns). Keyword arguments go to :func:`annotate_notes`. Rows in error
    and rows without entities do not appear here: use :func:`annotate_notes` with
    :func:`error_rows` and :func:`count_notes` to account for them."""
    notes = annotate_notes(df, model, text_col, id_col, **kwargs)
    system = None
    if omop:
        system = f"spacy-crf-ner {__version__}; model {model}"
    return entity_rows(notes, id_col, omop=omop, nlp_system=system)


def local_session(master: Optional[str] = None, app_name: str = "spacy-crf-ner",
                  progress: bool = True, **conf):
    """The active SparkSession (e.g. under spark-submit), or a new one on ``master``
    (default: Spark's own default, ``local[*]``). In local mode the Python workers run this
    interpreter, so they see the same installed packages."""
    import os

    from pyspark.sql import SparkSession

    # Under spark-submit (a gateway is already up) the cluster decides; otherwise a master
    # of None means Spark's default, local[*].
    local = ("PYSPARK_GATEWAY_PORT" not in os.environ if master is None
             else master.startswith("local"))
    if local:
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(app_name)
    if master:
        builder = builder.master(master)
    settings = {"spark.ui.showConsoleProgress": str(bool(progress)).lower(),
                "spark.sql.execution.arrow.pyspark.enabled": "true", **conf}
    for key, value in settings.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()
