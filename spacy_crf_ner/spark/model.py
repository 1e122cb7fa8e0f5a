"""Where the pipeline comes from, checked on the driver and loaded the same way on executors.

A model is one of:

* a pipeline folder (``nlp.to_disk``) that every executor sees at the same path (local mode,
  NFS, ``/dbfs/...``), loaded from there;
* an installed pipeline package (the wheel ``spacy package`` builds), installed on the
  driver and on every executor;
* a folder or an archive of one (``.zip``, ``.tar.gz``, ``.tgz``, ``.tar``) on the driver that
  the API ships to the executors itself with ``SparkContext.addArchive``.

No pyspark import at module level: :class:`ModelSpec` travels to the executors inside the
task closure and :func:`load_pipeline` runs there.
"""
import atexit
import hashlib
import shutil
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

ARCHIVE_SUFFIXES = (".zip", ".tar.gz", ".tgz", ".tar")


class ModelError(ValueError):
    """The model cannot be used: raised on the driver, before any Spark job runs."""


@dataclass(frozen=True)
class ModelSpec:
    """How executors find the pipeline. ``kind``: ``"path"`` (a folder every executor sees),
    ``"package"`` (an installed package name) or ``"archive"`` (a file name registered with
    ``addArchive``, unpacked by Spark into a folder of that name). ``code``: names of Python
    files registered with ``addFile``, imported before loading (custom components).
    ``precision``: the transformer's precision after loading (``set_precision``; None keeps
    the pipeline's own)."""

    kind: str
    location: str
    description: str
    code: Tuple[str, ...] = ()
    precision: Optional[str] = None

    @property
    def key(self) -> Tuple[str, str, Tuple[str, ...], Optional[str]]:
        return (self.kind, self.location, self.code, self.precision)


def is_archive(path: Path) -> bool:
    return path.name.lower().endswith(ARCHIVE_SUFFIXES)


def pipeline_root(folder: Path) -> Optional[Path]:
    """The folder itself when it holds a pipeline (``config.cfg``), else the shallowest
    sub-folder that does (an archive made of the pipeline's parent folder)."""
    if (folder / "config.cfg").is_file():
        return folder
    found = sorted(folder.rglob("config.cfg"), key=lambda p: len(p.parts))
    return found[0].parent if found else None


def fingerprint(folder: Path) -> str:
    """A short hash of the folder's file names, sizes and modification times: a changed model
    gets a new archive name (Spark refuses a second file of the same name)."""
    digest = hashlib.sha1()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        stat = path.stat()
        digest.update(f"{path.relative_to(folder).as_posix()}\0{stat.st_size}\0"
                      f"{stat.st_mtime_ns}\n".encode("utf8"))
    return digest.hexdigest()[:12]


_PACKED: Dict[Tuple[str, str], Path] = {}


def pack_folder(folder: Path) -> Path:
    """An uncompressed zip of the pipeline folder (weights do not compress; storing is fast)
    in a temporary folder removed when the driver exits. The same folder, unchanged, gives
    the same file: Spark refuses a second path for a name it has registered."""
    key = (str(folder.resolve()), fingerprint(folder))
    if key in _PACKED and _PACKED[key].exists():
        return _PACKED[key]
    work = Path(tempfile.mkdtemp(prefix="spacy-crf-ner-model-"))
    atexit.register(shutil.rmtree, work, True)
    target = work / f"{folder.name or 'model'}-{key[1]}.zip"
    with zipfile.ZipFile(target, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(folder).as_posix())
    _PACKED[key] = target
    return target


def unpack_archive(archive: Path) -> Path:
    """Unpack an archive into a temporary folder (the driver's check); returns the folder."""
    work = Path(tempfile.mkdtemp(prefix="spacy-crf-ner-check-"))
    atexit.register(shutil.rmtree, work, True)
    try:
        if archive.name.lower().endswith(".zip"):
            with zipfile.ZipFile(archive) as zf:
                zf.extractall(work)
        else:
            with tarfile.open(archive) as tf:
                if hasattr(tarfile, "data_filter"):  # no links or paths out of the folder
                    tf.extractall(work, filter="data")
                else:
                    tf.extractall(work)
    except (OSError, zipfile.BadZipFile, tarfile.TarError) as err:
        raise ModelError(f"model archive {archive} cannot be unpacked: {err}") from err
    return work


def import_code(paths: Sequence[Path]) -> None:
    """Import Python files that register custom components (like ``spacy ... --code``)."""
    from spacy.util import import_file

    for path in paths:
        import_file(f"spacy_crf_ner_code_{Path(path).stem}", str(path))


def load_pipeline(source, what: str, precision: Optional[str] = None):
    """``spacy.load`` (then ``set_precision`` when ``precision`` is given) with errors turned
    into :class:`ModelError`."""
    import spacy

    from ..integrity import check_before_load

    try:
        if isinstance(source, (str, Path)) and Path(source).is_dir():
            check_before_load(source)
        nlp = spacy.load(source)
    except Exception as err:
        raise ModelError(f"cannot load model {what}: {type(err).__name__}: {err}") from err
    if precision is not None:
        from ..transformer.model_class import set_precision

        try:
            set_precision(nlp, precision)
        except ValueError as err:
            raise ModelError(f"model {what} cannot run at precision {precision}: {err}") from err
    return nlp


def local_source(spec: ModelSpec):
    """Executor side: what to give ``spacy.load`` for this spec (after Spark has fetched the
    archive and the code files)."""
    if spec.kind == "package":
        return spec.location
    if spec.kind == "path":
        return Path(spec.location)
    from pyspark import SparkFiles

    folder = Path(SparkFiles.get(spec.location))
    root = pipeline_root(folder) if folder.is_dir() else None
    if root is None:
        raise ModelError(f"model {spec.description}: no pipeline (config.cfg) in the archive "
                         f"unpacked at {folder}")
    return root


def code_paths(spec: ModelSpec) -> Sequence[Path]:
    """Executor side: the local paths of the shipped code files."""
    if not spec.code:
        return ()
    from pyspark import SparkFiles

    return [Path(SparkFiles.get(name)) for name in spec.code]
