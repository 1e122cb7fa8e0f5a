"""SHA-256 checksums of a saved pipeline's files, verified before the pipeline is loaded.

Why: a damaged weights file can load without any error and predict garbage, and other
damage gives errors that do not say which file is at fault (``Unpack failed``, ``requires
the protobuf library``...). Hashing is much faster than reading the weights into torch, so
every load can afford it.

How: :func:`guard_pipeline_files` is called by the ``crf_ner`` factory with the ``nlp``
being built, and wraps that object's ``to_disk``/``from_disk``:

* after ``nlp.to_disk(path)`` (also what ``spacy train`` calls for ``model-best``/
  ``model-last``), :data:`MANIFEST_NAME` is written in ``path`` with one
  ``<sha256>  <relative path>`` line per file that ``nlp`` wrote (the format of
  ``sha256sum``, so ``sha256sum -c checksums.sha256`` checks a folder by hand);
* ``spacy.load`` builds ``nlp`` from the config (running the factory) and then calls
  ``nlp.from_disk(path)``: every listed file is checked first, before any component
  reads its weights, and a missing or changed file raises :class:`PipelineIntegrityError`
  naming it. Components left out with ``exclude`` are not checked.

``meta.json`` is not covered: ``spacy package`` rewrites it, and it holds no weights.
``spacy package`` copies the rest of the folder unchanged, so an installed package is
checked too.

The policy when the manifest itself is not usable:

* **missing** (a pipeline saved by an older version, or one that only sourced ``crf_ner``
  from another pipeline; every other pipeline this package saves has one): a :class:`MissingChecksumsWarning` naming the folder, and the
  pipeline loads unchecked; with :data:`REQUIRE_ENV` (``SPACY_CRF_NER_REQUIRE_CHECKSUMS=1``)
  a :class:`PipelineIntegrityError` instead;
* **empty (0 bytes), a folder, unreadable, or a line that is not** ``<sha256>  <path>``:
  always a :class:`PipelineIntegrityError`, since a damaged manifest cannot vouch for
  anything.

spaCy reads ``config.cfg`` and ``meta.json`` before any component exists, so their damage
surfaces as spaCy's own error, which names neither file. :func:`check_before_load` (run by
the command line and the Spark engine before ``spacy.load``) checks the manifest and both
files first and names the file at fault. Set :data:`SKIP_ENV`
(``SPACY_CRF_NER_SKIP_CHECKSUMS=1``) to load files edited by hand; saving the pipeline again
writes a new manifest.

No torch or spaCy import at module level: only the standard library (thinc's config
parser inside :func:`check_before_load`).
"""
import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Union

MANIFEST_NAME = "checksums.sha256"
SKIP_ENV = "SPACY_CRF_NER_SKIP_CHECKSUMS"
REQUIRE_ENV = "SPACY_CRF_NER_REQUIRE_CHECKSUMS"
NOT_COVERED = ("meta.json", MANIFEST_NAME)
_CHUNK = 1 << 20


class PipelineIntegrityError(ValueError):
    """A file of a saved pipeline is missing or differs from the checksum saved with it."""


class MissingChecksumsWarning(UserWarning):
    """A pipeline folder has no checksum file: it loads, but unchecked."""


def file_sha256(path: Union[str, Path]) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _files_under(folder: Path, names: Iterable[str]) -> List[str]:
    """Relative POSIX paths of the files under the top-level entries ``names``."""
    found = []
    for name in names:
        entry = folder / name
        if entry.is_file():
            found.append(name)
        elif entry.is_dir():
            for sub, dirs, files in os.walk(entry):
                dirs.sort()
                found.extend((Path(sub) / f).relative_to(folder).as_posix() for f in files)
    return sorted(found)


def write_manifest(folder: Union[str, Path], names: Iterable[str]) -> Path:
    """Write :data:`MANIFEST_NAME` in ``folder`` for every file under the entries ``names``."""
    folder = Path(folder)
    names = [n for n in names if n not in NOT_COVERED]
    lines = [f"{file_sha256(folder / rel)}  {rel}\n" for rel in _files_under(folder, names)]
    target = folder / MANIFEST_NAME
    target.write_text("".join(lines), encoding="utf-8")
    return target


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes")


def missing_manifest_message(folder: Union[str, Path]) -> str:
    return (f"{folder} has no {MANIFEST_NAME}: its files cannot be checked for damage "
            "(a pipeline saved by spacy-crf-ner has one, unless it only sourced crf_ner from "
            "another pipeline; load it and save it again with nlp.to_disk to add it). Set "
            f"{REQUIRE_ENV}=1 to refuse such folders.")


def read_manifest(folder: Union[str, Path]) -> Optional[Dict[str, str]]:
    """``{relative path: sha256}`` from ``folder``'s manifest; None when there is none (a
    :class:`MissingChecksumsWarning`, or an error under :data:`REQUIRE_ENV`). An empty,
    unreadable or damaged manifest raises :class:`PipelineIntegrityError`."""
    path = Path(folder) / MANIFEST_NAME
    restore = (f"Restore the pipeline from its original copy, or set {SKIP_ENV}=1 to load it "
               "without checking.")
    if not path.exists() and not path.is_symlink():
        if _env_true(REQUIRE_ENV):
            raise PipelineIntegrityError(missing_manifest_message(folder) + f" ({REQUIRE_ENV} "
                                         "is set)")
        warnings.warn(missing_manifest_message(folder), MissingChecksumsWarning, stacklevel=3)
        return None
    if not path.is_file():
        raise PipelineIntegrityError(f"{path} is not a regular file (a folder or a broken "
                                     f"link): the checksum file is damaged. {restore}")
    try:
        content = path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise PipelineIntegrityError(f"{path} cannot be read ({err}): the checksum file is "
                                     f"damaged. {restore}") from err
    if not content.strip():
        raise PipelineIntegrityError(f"{path} is empty: the checksum file is damaged (a "
                                     f"pipeline always has files to check). {restore}")
    entries: Dict[str, str] = {}
    for number, line in enumerate(content.splitlines(), start=1):
        digest, sep, rel = line.partition("  ")
        if not sep or len(digest) != 64 or not rel:
            raise PipelineIntegrityError(
                f"{path}:{number}: not a '<sha256>  <path>' line; the checksum file is "
                f"damaged. {restore}"
            )
        entries[rel] = digest
    return entries


def verify_manifest(folder: Union[str, Path], exclude: Iterable[str] = ()) -> int:
    """Check every file listed in ``folder``'s manifest; returns how many were checked.

    Files under a top-level entry in ``exclude`` are not checked. Raises
    :class:`PipelineIntegrityError` naming the first missing or changed file.
    """
    folder = Path(folder)
    excluded = set(exclude)
    checked = 0
    for rel, expected in (read_manifest(folder) or {}).items():
        if rel.split("/", 1)[0] in excluded:
            continue
        path = folder / rel
        if not path.is_file():
            raise PipelineIntegrityError(
                f"Pipeline file {path} is missing (listed in {MANIFEST_NAME}). The pipeline "
                "folder is incomplete: copy or install it again."
            )
        if file_sha256(path) != expected:
            raise PipelineIntegrityError(
                f"Pipeline file {path} has changed since the pipeline was saved (its SHA-256 "
                f"differs from {MANIFEST_NAME}): it is damaged or was edited. Restore the "
                "pipeline from its original copy (or reinstall the package); if you edited "
                f"it on purpose, set {SKIP_ENV}=1 to load it, then save it again with "
                "nlp.to_disk to record new checksums."
            )
        checked += 1
    return checked


def checks_enabled() -> bool:
    """False when :data:`SKIP_ENV` is set to a true value (1, true, yes)."""
    return not _env_true(SKIP_ENV)


def check_before_load(folder: Union[str, Path]) -> int:
    """What can be checked before ``spacy.load`` reads ``folder``: the manifest itself and
    ``config.cfg``'s checksum, then that ``meta.json`` and ``config.cfg`` read as
    spaCy will read them, so that damage to either is reported with the file's name rather
    than as spaCy's parse error. A folder that is not a pipeline saved by this package
    (no ``config.cfg``) is left to spaCy. The weights are checked by ``from_disk`` as
    always; here only ``config.cfg``'s checksum. Returns how many files were checked."""
    folder = Path(folder)
    if not (folder / "config.cfg").is_file() or not checks_enabled():
        return 0
    checked = 0
    manifest = folder / MANIFEST_NAME
    if manifest.exists() or manifest.is_symlink():  # missing: from_disk warns (or refuses)
        expected = (read_manifest(folder) or {}).get("config.cfg")
        if expected is not None:
            if file_sha256(folder / "config.cfg") != expected:
                raise PipelineIntegrityError(
                    f"Pipeline file {folder / 'config.cfg'} has changed since the pipeline was "
                    f"saved (its SHA-256 differs from {MANIFEST_NAME}): restore it from the "
                    f"original copy, or set {SKIP_ENV}=1 if you edited it on purpose.")
            checked = 1
    meta = folder / "meta.json"
    if meta.exists():
        try:
            json.loads(meta.read_bytes().decode("utf-8"))
        except (OSError, ValueError) as err:
            raise PipelineIntegrityError(
                f"{meta} is damaged: not valid JSON ({err}). It is not covered by "
                f"{MANIFEST_NAME} (spacy package rewrites it): restore it from the original "
                "copy of the pipeline.") from err
    config = folder / "config.cfg"
    try:
        from thinc.api import Config

        Config().from_disk(config, interpolate=False)
    except Exception as err:  # configparser's and thinc's errors have no common base
        raise PipelineIntegrityError(
            f"{config} is damaged: {type(err).__name__}: {err}. Restore it from the original "
            "copy of the pipeline.") from err
    return checked


class _ToDiskWithManifest:
    """``nlp.to_disk`` followed by :func:`write_manifest` for what it wrote."""

    def __init__(self, nlp):
        self.nlp = nlp

    def __call__(self, path, **kwargs):
        type(self.nlp).to_disk(self.nlp, path, **kwargs)
        exclude = set(kwargs.get("exclude") or ())
        names = ["tokenizer", "config.cfg", "vocab"] + list(self.nlp.pipe_names)
        write_manifest(path, [n for n in names if n not in exclude])


class _VerifiedFromDisk:
    """:func:`verify_manifest` (unless disabled), then ``nlp.from_disk``."""

    def __init__(self, nlp):
        self.nlp = nlp

    def __call__(self, path, **kwargs):
        if checks_enabled():
            verify_manifest(path, kwargs.get("exclude") or ())
        return type(self.nlp).from_disk(self.nlp, path, **kwargs)


def guard_pipeline_files(nlp) -> None:
    """Make ``nlp.to_disk`` write checksums and ``nlp.from_disk`` verify them (idempotent)."""
    if isinstance(vars(nlp).get("to_disk"), _ToDiskWithManifest):
        return
    nlp.to_disk = _ToDiskWithManifest(nlp)
    nlp.from_disk = _VerifiedFromDisk(nlp)
