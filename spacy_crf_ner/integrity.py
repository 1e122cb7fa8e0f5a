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
checked too. A pipeline saved without a manifest (older versions) loads without a check.
Set :data:`SKIP_ENV` (``SPACY_CRF_NER_SKIP_CHECKSUMS=1``) to load files edited by hand;
saving the pipeline again writes a new manifest.

No torch or spaCy import at module level: only the standard library.
"""
import hashlib
import os
from pathlib import Path
from typing import Dict, Iterable, List, Union

MANIFEST_NAME = "checksums.sha256"
SKIP_ENV = "SPACY_CRF_NER_SKIP_CHECKSUMS"
NOT_COVERED = ("meta.json", MANIFEST_NAME)
_CHUNK = 1 << 20


class PipelineIntegrityError(ValueError):
    """A file of a saved pipeline is missing or differs from the checksum saved with it."""


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


def read_manifest(folder: Union[str, Path]) -> Dict[str, str]:
    """``{relative path: sha256}`` from ``folder``'s manifest ({} when there is none)."""
    path = Path(folder) / MANIFEST_NAME
    if not path.is_file():
        return {}
    entries: Dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        digest, sep, rel = line.partition("  ")
        if not sep or len(digest) != 64 or not rel:
            raise PipelineIntegrityError(
                f"{path}:{number}: not a '<sha256>  <path>' line; the checksum file is "
                f"damaged. Restore the pipeline from its original copy, or set {SKIP_ENV}=1 "
                "to load it without checking."
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
    for rel, expected in read_manifest(folder).items():
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
    return os.environ.get(SKIP_ENV, "").strip().lower() not in ("1", "true", "yes")


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
