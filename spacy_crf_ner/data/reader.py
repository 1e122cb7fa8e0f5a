"""Read a folder of BRAT standoff files (``name.txt`` + ``name.ann``) into spaCy Docs.

Each entity becomes a span in ``doc.spans[span_key]`` (all of them, overlapping or not),
with ``span.id_`` set to its T id; a non-overlapping subset also goes to ``doc.ents``.
Attributes, notes, discontinuous fragments and ``N``/``R``/``E``/``*`` lines are kept in
``doc.user_data`` (see :mod:`.meta`), so :func:`write_standoff` can write them back. Every
problem is counted in a :class:`ConversionReport` and located by file and line; with
``strict=True`` the first problem raises :class:`StandoffError` instead.
"""
import codecs
import os
import stat
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Set, Tuple, Union

from spacy.language import Language
from spacy.tokens import Doc, Span

from ..spans import select_longest_first
from .ann import AnnDocument, AnnEntity, parse_ann
from .meta import ANNOTATIONS_KEY, PROVENANCE_KEY
from .report import ConversionReport, StandoffError, StandoffIssue
from .split import DEFAULT_SPLIT_REGEX, check_split_regex, split_doc
from .writer import one_line

DISCONTINUOUS_POLICIES = ("split", "cover", "skip")
ALIGNMENT_POLICIES = ("split_tokens", "expand", "contract", "strict")


@dataclass
class StandoffOptions:
    """Options shared by the reader, the converter CLI and the corpus reader.

    * ``span_key``: span group receiving every kept entity.
    * ``set_ents``: also fill ``doc.ents`` with a non-overlapping subset (longest first).
    * ``discontinuous``: ``"split"`` (a span per fragment), ``"cover"`` (one span from the
      first start to the last end) or ``"skip"``. Fragments separated only by whitespace are
      merged first, whatever the policy.
    * ``alignment``: what to do with entity boundaries that are not token boundaries:
      ``"split_tokens"`` (split the tokens there; nothing changes or is lost),
      ``"expand"``/``"contract"`` (snap outwards/inwards), ``"strict"`` (drop).
    * ``split_regex``/``max_length``: see :func:`split_doc` (``max_length=0``: no split).
    * ``strict``: raise :class:`StandoffError` on the first problem instead of warning.
    * ``keep_txt_only``: keep ``.txt`` files without ``.ann`` as Docs without entities.
    """

    span_key: str = "sc"
    set_ents: bool = True
    discontinuous: str = "split"
    alignment: str = "split_tokens"
    split_regex: Optional[str] = DEFAULT_SPLIT_REGEX
    max_length: int = 0
    strict: bool = False
    keep_txt_only: bool = True
    encoding: str = "utf-8"

    def __post_init__(self) -> None:
        if self.discontinuous not in DISCONTINUOUS_POLICIES:
            raise ValueError(
                f"discontinuous={self.discontinuous!r}; expected one of {DISCONTINUOUS_POLICIES}"
            )
        if self.alignment not in ALIGNMENT_POLICIES:
            raise ValueError(
                f"alignment={self.alignment!r}; expected one of {ALIGNMENT_POLICIES}"
            )
        if self.max_length < 0:
            raise ValueError(f"max_length={self.max_length} must be >= 0")
        if not self.span_key:
            raise ValueError("span_key must be a non-empty string")
        if isinstance(self.split_regex, str):
            check_split_regex(self.split_regex)

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> "StandoffOptions":
        known = {f.name for f in fields(cls)}
        unknown = set(kwargs) - known
        if unknown:
            raise TypeError(f"Unknown standoff options: {sorted(unknown)}")
        return cls(**kwargs)


# ---------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------
@dataclass
class StandoffFile:
    """A document of the corpus: relative stem (``sub/name``) and its .txt/.ann paths.

    ``extra`` holds further files with the same stem whose suffix differs only by case
    (``a.ann`` and ``a.ANN``): they cannot both be paired, so readers skip and count them.
    """

    stem: str
    txt: Optional[Path]
    ann: Optional[Path]
    extra: List[Path] = field(default_factory=list)

    @property
    def source(self) -> str:
        """The text's relative path, with the input's own suffix (``UPPER.TXT`` stays so)."""
        return self.stem + (self.txt.suffix if self.txt is not None else ".txt")


def _pairing_order(file: Path) -> Tuple[bool, str]:
    """Lower-case suffix first, then by name: which of case-colliding files is paired."""
    return (file.suffix != file.suffix.lower(), file.name)


def walk_files(
    root: Path, problems: Optional[List[Tuple[str, str]]] = None
) -> List[Path]:
    """Every file under ``root``, hidden files and folders skipped, without recursion.

    A loop over a stack of folders, so that any depth of nesting works (``os.walk``
    recurses: ~1,000 levels raise ``RecursionError``). As with ``os.walk``, symbolic links
    to folders are not followed (no cycles) and broken links are files. A folder that
    cannot be listed (permissions, a path too long for the system) is appended to
    ``problems`` as ``(relative path, why)`` rather than ignored.
    """
    found: List[Path] = []
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as listing:
                entries = sorted(listing, key=lambda e: e.name)
        except OSError as err:
            if problems is not None:
                rel = folder.relative_to(root).as_posix()
                problems.append((rel, f"cannot list this folder ({err.strerror or err})"))
            continue
        subfolders = []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            path = folder / entry.name
            try:
                is_dir = entry.is_dir()
                is_link = entry.is_symlink()
            except OSError:
                is_dir = is_link = False
            if is_dir:
                if not is_link:
                    subfolders.append(path)
            else:
                found.append(path)
        stack.extend(reversed(subfolders))
    return found


def find_standoff_files(
    path: Union[str, Path], problems: Optional[List[Tuple[str, str]]] = None
) -> List[StandoffFile]:
    """Walk ``path`` recursively (hidden files and folders skipped) and pair .txt with .ann.

    ``path`` may also be a single ``.txt`` or ``.ann`` file: its other half beside it (same
    name, ``.ann`` or ``.txt`` in any case) is paired with it. Sorted by relative path. When
    several files differ only by the case of their suffix (``doc.txt``, ``doc.TXT``), the one
    with a lower-case suffix (else the first by name) is paired; the others go to ``extra``.
    Folders that cannot be listed go to ``problems`` (see :func:`walk_files`).
    """
    root = Path(path)
    if root.is_file() or (root.exists() and not root.is_dir()):
        base = root.parent
        files = [root] + [
            root.with_name(root.stem + suffix) for suffix in _sibling_suffixes(root)
        ]
    else:
        base, files = root, walk_files(root, problems)
    pairs: Dict[str, StandoffFile] = {}
    for file in sorted(files, key=_pairing_order):
        suffix = file.suffix.lower()
        if suffix not in (".txt", ".ann"):
            continue
        stem = file.relative_to(base).with_suffix("").as_posix()
        entry = pairs.setdefault(stem, StandoffFile(stem, None, None))
        slot = "txt" if suffix == ".txt" else "ann"
        if getattr(entry, slot) is None:
            setattr(entry, slot, file)
        else:
            entry.extra.append(file)
    return [pairs[k] for k in sorted(pairs)]


def _sibling_suffixes(file: Path) -> List[str]:
    """Suffixes of the files beside ``file`` that pair with it (``a.txt``: ``.ann``,
    ``.ANN``...), as found in its folder."""
    other = {".txt": ".ann", ".ann": ".txt"}.get(file.suffix.lower())
    if other is None:
        return []
    try:
        names = os.listdir(file.parent if str(file.parent) else ".")
    except OSError:
        return []
    return sorted(
        name[len(file.stem):] for name in names
        if name != file.name and name[: len(file.stem)] == file.stem
        and name[len(file.stem):].lower() == other
    )


def read_file_bytes(path: Path) -> Tuple[Optional[bytes], str]:
    """The bytes of ``path``, or ``(None, why)`` when it is not a readable regular file.

    Checked before opening, so that a FIFO or device never blocks the run and a broken
    symbolic link or a permission problem is reported instead of raised.
    """
    try:
        mode = path.stat().st_mode  # follows symbolic links
    except FileNotFoundError:
        return None, "broken symbolic link" if path.is_symlink() else "file vanished"
    except OSError as err:
        return None, f"cannot stat ({err.strerror or err})"
    if not stat.S_ISREG(mode):
        return None, "not a regular file (FIFO, device or folder)"
    try:
        return path.read_bytes(), ""
    except OSError as err:
        return None, f"cannot read ({err.strerror or err})"


# Byte order marks that identify a UTF-16/32 file (UTF-32 first: its LE mark starts like
# UTF-16's).
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"),
)


def bom_encoding(data: bytes) -> Optional[str]:
    """``"utf-16"``/``"utf-32"`` when ``data`` starts with that byte order mark, else None."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return encoding
    return None


def looks_like_utf16(data: bytes) -> bool:
    """True when ``data`` reads as UTF-16 without a byte order mark: NUL on (nearly) every
    byte of one parity and (nearly) no other. Text that merely contains NUL characters, as
    the writer may write them, has NULs at both parities or few of them."""
    if len(data) < 4:
        return False
    halves = (data[0::2], data[1::2])
    nul = [half.count(0) / len(half) for half in halves]
    return any(nul[k] >= 0.9 and nul[1 - k] <= 0.1 for k in (0, 1))


@dataclass
class Decoded:
    """What :func:`decode_bytes` made of a file: ``text`` (None: unusable), the problem to
    report (also for a usable ``text`` that lost a truncated tail), its line, whether a byte
    order mark chose the encoding, and ``fallback``: the bytes decoded leniently, so that
    the T lines of an unusable ``.ann`` can still be counted."""

    text: Optional[str]
    problem: str = ""
    line: Optional[int] = None
    bom: bool = False
    fallback: str = ""


def decode_bytes(data: bytes, encoding: str = "utf-8") -> Decoded:
    """Decode a file's bytes by what they say of themselves, never by guessing from one NUL.

    1. A UTF-16/32 byte order mark decides. A file cut inside its last character keeps what
       decodes before it (``problem`` says how many bytes were left out); damage elsewhere
       makes it unusable.
    2. Otherwise ``encoding`` (UTF-8 by default), NUL characters included.
    3. Bytes that do not decode are unusable; when they look like UTF-16 without a mark
       (:func:`looks_like_utf16`), the problem says so.
    """
    bom = bom_encoding(data)
    if bom is not None:
        try:
            return Decoded(data.decode(bom), bom=True)
        except UnicodeDecodeError as err:
            lenient = data.decode(bom, errors="replace")
            if err.end >= len(data):  # only the tail is incomplete: a truncated file
                text = data[: err.start].decode(bom)
                left = len(data) - err.start
                return Decoded(text, f"{bom} file cut short: its last {left} byte(s) do not "
                                     "form a character and were left out", bom=True,
                               line=text.count("\n") + 1)
            return Decoded(None, f"starts with a {bom} byte order mark but is not valid "
                                 f"{bom} ({err.reason} at byte {err.start})", bom=True,
                           fallback=lenient)
    if looks_like_utf16(data):
        return Decoded(None, "UTF-16 without a byte order mark (a NUL byte every other "
                             "byte); save it as UTF-8",
                       fallback=data.replace(b"\x00", b"").decode(encoding, "replace"))
    try:
        return Decoded(data.decode(encoding))
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        return Decoded(None, f"not valid {encoding} (byte {data[err.start]:#04x} at byte "
                             f"offset {err.start})", line=line,
                       fallback=data.decode(encoding, errors="replace"))


def printable_name(name: str) -> str:
    """``name`` as UTF-8 text: bytes of a file name that are not UTF-8 (which Python keeps as
    lone surrogates, and which a DocBin or a terminal cannot encode) written as ``\\xff``."""
    try:
        name.encode("utf-8")
        return name
    except UnicodeEncodeError:
        return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


# ---------------------------------------------------------------------------------------
# Conversion of one document
# ---------------------------------------------------------------------------------------
def _merge_fragments(
    fragments: List[Tuple[int, int]], text: str
) -> List[Tuple[int, int]]:
    """Sort fragments and merge those separated only by whitespace (or touching/overlapping)."""
    merged: List[Tuple[int, int]] = []
    for start, end in sorted(fragments):
        if merged and (start <= merged[-1][1] or not text[merged[-1][1]:start].strip()):
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def _retokenize(doc: Doc, starts: Set[int], ends: Set[int]) -> Tuple[Doc, int]:
    """Rebuild ``doc`` with extra token boundaries so every start/end is a token boundary.

    A token is split inside its text; when an entity starts on a token's trailing space, or
    ends right after it, the space becomes a token of its own. Norms set by the tokenizer
    are kept on unchanged tokens.
    """
    cuts = starts | ends
    words: List[str] = []
    spaces: List[bool] = []
    norms: List[Optional[str]] = []
    for tok in doc:
        a = tok.idx
        b = a + len(tok.text)
        inner = sorted(c for c in cuts if a < c < b)
        space_cut = bool(tok.whitespace_) and (b in starts or b + 1 in ends)
        if not inner and not space_cut:
            words.append(tok.text)
            spaces.append(bool(tok.whitespace_))
            norms.append(tok.norm_ if tok.norm != tok.lex.norm else None)
            continue
        bounds = [a] + inner + [b]
        for k, (x, y) in enumerate(zip(bounds, bounds[1:])):
            words.append(doc.text[x:y])
            last = k == len(bounds) - 2
            spaces.append(last and bool(tok.whitespace_) and not space_cut)
            norms.append(None)
        if space_cut:
            words.append(tok.whitespace_)
            spaces.append(False)
            norms.append(None)
    new = Doc(doc.vocab, words=words, spaces=spaces)
    for token, norm in zip(new, norms):
        if norm is not None:
            token.norm_ = norm
    assert new.text == doc.text
    return new, len(new) - len(doc)


class StandoffReader:
    """Converts standoff documents with one ``nlp`` and options, filling one report."""

    def __init__(
        self,
        nlp: Language,
        options: Optional[StandoffOptions] = None,
        report: Optional[ConversionReport] = None,
    ):
        self.nlp = nlp
        self.options = options or StandoffOptions()
        self.report = report if report is not None else ConversionReport()

    # -- problems ------------------------------------------------------------------------
    def warn(self, code: str, message: str, file: Optional[str], line: Optional[int] = None):
        self._issue(StandoffIssue(code, message, file, line))

    def _issue(self, issue: StandoffIssue) -> None:
        self.report.add_issue(issue)
        if self.options.strict:
            raise StandoffError(str(issue), issue)

    # -- files ---------------------------------------------------------------------------
    def _read(self, path: Path, source: str) -> Tuple[Optional[str], str]:
        """Decoded text, or ``(None, fallback)`` with what can still be read of it, so that
        the T lines of an unusable file are counted as dropped rather than lost.

        The encoding follows from the bytes (:func:`decode_bytes`): a byte order mark, else
        UTF-8 (NUL characters included: the writer writes them when the text has them),
        else UTF-16 without a mark when its NUL bytes say so. A UTF-16/32 file cut short
        keeps what decodes, with a warning for the bytes left out.
        """
        data, why = read_file_bytes(path)
        if data is None:
            self.warn("unreadable_file", f"{why}; file skipped", source)
            return None, ""
        decoded = decode_bytes(data, self.options.encoding)
        if decoded.bom:
            self.report.bom_decoded += 1
        if decoded.text is not None:
            if decoded.problem:
                self.warn("decode_error", decoded.problem, source, decoded.line)
            return decoded.text, ""
        self.warn("decode_error", decoded.problem + "; file skipped", source, decoded.line)
        return None, decoded.fallback

    def _skip_extra(self, entry: StandoffFile) -> None:
        """Count the files that collide with the paired ones by the case of their suffix."""
        for extra in entry.extra:
            is_ann = extra.suffix.lower() == ".ann"
            paired = entry.ann if is_ann else entry.txt
            paired_name = paired.name if paired is not None else "?"
            name = entry.stem + extra.suffix
            if is_ann:
                self.report.ann_files += 1
            else:
                self.report.txt_files += 1
            self.report.files_skipped["case_collision"] += 1
            self.warn("case_collision", f"name differs from {paired_name} only by case; "
                      f"{paired_name} is used and this file skipped", name)
            if is_ann:
                ann_text, fallback = self._read(extra, name)
                self._drop_all(parse_ann(ann_text if ann_text is not None else fallback),
                               "case_collision")

    def skip_folders(self, problems: List[Tuple[str, str]]) -> None:
        """Count the folders :func:`find_standoff_files` could not list (their files are
        unknown, so only the folder is counted)."""
        for rel, why in problems:
            self.report.files_skipped["unreadable_folder"] += 1
            self.warn("unreadable_folder", f"{why}; its files are skipped",
                      printable_name(rel) + "/")

    def read_file(self, entry: StandoffFile) -> List[Doc]:
        """Convert one corpus entry (any of .txt/.ann possibly missing)."""
        rep = self.report
        stem = printable_name(entry.stem)
        if stem != entry.stem:
            self.warn("name_not_utf8", f"file name is not valid UTF-8; recorded as {stem!r}",
                      stem + ".txt")
            entry = StandoffFile(stem, entry.txt, entry.ann, entry.extra)
        ann_name = entry.stem + ".ann"
        self._skip_extra(entry)
        if entry.txt is not None:
            rep.txt_files += 1
        if entry.ann is not None:
            rep.ann_files += 1
        ann_text: Optional[str] = ""
        if entry.ann is not None:
            ann_name = entry.stem + entry.ann.suffix
            ann_text, fallback = self._read(entry.ann, ann_name)
            if ann_text is None:
                self._drop_all(parse_ann(fallback), "unreadable_file")
                rep.files_skipped["unreadable"] += 1
                return []
        if entry.txt is None:
            self.warn("ann_without_txt", "no matching .txt file; annotations skipped", ann_name)
            self._drop_all(parse_ann(ann_text or ""), "missing_txt")
            rep.files_skipped["ann_without_txt"] += 1
            return []
        text, _ = self._read(entry.txt, entry.source)
        if text is None:
            self._drop_all(parse_ann(ann_text or ""), "unreadable_file")
            rep.files_skipped["unreadable"] += 1
            return []
        if entry.ann is None:
            rep.txt_only += 1
            if not self.options.keep_txt_only:
                rep.files_skipped["txt_only"] += 1
                return []
            self.warn("txt_without_ann", "no matching .ann file; kept without entities",
                      entry.source)
        return self.convert(
            text, ann_text or "", entry.source, ann_name=ann_name, has_ann=entry.ann is not None
        )

    def _drop_all(self, parsed: AnnDocument, reason: str) -> None:
        rep = self.report
        rep.t_lines += parsed.t_lines
        rep.spans_read += parsed.t_lines
        rep.drop(reason, parsed.t_lines)
        n_other = len(parsed.attributes) + len(parsed.notes) + len(parsed.others)
        if n_other:
            rep.ignored_lines[reason] += n_other

    # -- one document --------------------------------------------------------------------
    def make_doc(self, text: str) -> Doc:
        if len(text) > self.nlp.max_length:  # long documents are the point of split_doc
            return self.nlp.tokenizer(text)
        return self.nlp.make_doc(text)

    def convert(
        self,
        text: str,
        ann_text: str,
        source: str,
        *,
        ann_name: Optional[str] = None,
        has_ann: bool = True,
    ) -> List[Doc]:
        """Convert one document given as strings; ``source`` names it in provenance."""
        opts, rep = self.options, self.report
        ann_name = ann_name or (source.rsplit(".", 1)[0] + ".ann")
        parsed = parse_ann(ann_text)
        for issue in parsed.issues:
            issue.file = ann_name
            self._issue(issue)
        if has_ann and not ann_text.strip():
            rep.empty_ann += 1
        rep.t_lines += parsed.t_lines
        rep.spans_read += parsed.malformed_t_lines
        if parsed.malformed_t_lines:
            rep.drop("malformed", parsed.malformed_t_lines)
        if text == "":
            self.warn("empty_text", "empty .txt file; skipped", source)
            rep.files_skipped["empty_text"] += 1
            valid = len(parsed.entities)
            rep.spans_read += valid
            if valid:
                rep.drop("empty_text", valid)
            n_other = len(parsed.attributes) + len(parsed.notes) + len(parsed.others)
            if n_other:
                rep.ignored_lines["empty_text"] += n_other
            return []
        if parsed.unknown_lines:
            rep.ignored_lines["unknown"] += parsed.unknown_lines
        if parsed.malformed_other_lines:
            rep.ignored_lines["malformed"] += parsed.malformed_other_lines

        doc = self.make_doc(text)
        candidates, records = self._candidates(parsed, text, ann_name)
        doc, spans = self._align(doc, candidates, ann_name)
        kept_ids = {span.id_ for span in spans}
        other_attr_lines = self._attach(parsed, records, kept_ids, ann_name)

        doc.spans[opts.span_key] = spans
        rep.kept += len(spans)
        if opts.set_ents:
            ents = select_longest_first(spans, n_tokens=len(doc))
            doc.ents = ents
            rep.in_ents += len(ents)
            rep.not_in_ents += len(spans) - len(ents)
        doc.user_data[PROVENANCE_KEY] = {
            "source": source, "offset": 0, "length": len(text), "part": 0, "n_parts": 1,
        }
        records = {tid: rec for tid, rec in records.items() if tid in kept_ids}
        other_lines = [
            [o.kind, o.id, o.raw, list(o.refs)] for o in parsed.others
        ] + other_attr_lines
        if records or other_lines:
            doc.user_data[ANNOTATIONS_KEY] = {"entities": records, "other_lines": other_lines}
        parts = split_doc(doc, opts.split_regex, opts.max_length, report=rep)
        rep.documents += 1
        rep.parts += len(parts)
        return parts

    def _candidates(
        self, parsed: AnnDocument, text: str, ann_name: str
    ) -> Tuple[List[Tuple[int, int, str, str, int]], Dict[str, Dict[str, Any]]]:
        """(start, end, label, T id, line) per span the policy makes, and per-entity records."""
        opts, rep = self.options, self.report
        seen: Set[str] = set()
        candidates: List[Tuple[int, int, str, str, int]] = []
        records: Dict[str, Dict[str, Any]] = {}
        n = len(text)
        for ent in parsed.entities:
            if ent.id in seen:
                self.warn("duplicate_id", f"entity id {ent.id} used again; dropped",
                          ann_name, ent.line)
                rep.spans_read += 1
                rep.drop("duplicate_id")
                continue
            seen.add(ent.id)
            last = max(end for _, end in ent.fragments)
            if last > n:
                self.warn(
                    "out_of_range",
                    f"entity {ent.id} ends at {last}, past the end of the text ({n} chars); "
                    "dropped",
                    ann_name,
                    ent.line,
                )
                rep.spans_read += 1
                rep.drop("out_of_range")
                continue
            self._check_text(ent, text, ann_name)
            merged = _merge_fragments(ent.fragments, text)
            if len(ent.fragments) > 1:
                rep.discontinuous += 1
                rep.merged_fragments += len(ent.fragments) - len(merged)
            if len(merged) == 1:
                spans = merged
            elif opts.discontinuous == "split":
                spans = merged
                rep.extra_fragments += len(merged) - 1
            elif opts.discontinuous == "cover":
                spans = [(merged[0][0], merged[-1][1])]
            else:
                rep.spans_read += 1
                rep.drop("discontinuous_skipped")
                continue
            rep.spans_read += len(spans)
            if len(ent.fragments) > 1:
                records[ent.id] = {
                    "label": ent.label,
                    "fragments": [list(f) for f in ent.fragments],
                    "spans": [list(s) for s in spans],
                }
            candidates.extend((s, e, ent.label, ent.id, ent.line) for s, e in spans)
        return candidates, records

    def _check_text(self, ent: AnnEntity, text: str, ann_name: str) -> None:
        if ent.text is None:
            return
        expected = " ".join(text[s:e] for s, e in ent.fragments)
        # A text column cannot hold a line break: writers put a space for each CR/LF.
        if ent.text != expected and ent.text != one_line(expected):
            self.report.text_mismatches += 1
            self.warn(
                "text_mismatch",
                f"entity {ent.id}: text column {ent.text[:60]!r} != .txt slice "
                f"{expected[:60]!r}; offsets kept",
                ann_name,
                ent.line,
            )

    def _align(
        self, doc: Doc, candidates: List[Tuple[int, int, str, str, int]], ann_name: str
    ) -> Tuple[Doc, List[Span]]:
        policy, rep = self.options.alignment, self.report
        starts = {t.idx for t in doc}
        ends = {t.idx + len(t.text) for t in doc}
        aligned = [c[0] in starts and c[1] in ends for c in candidates]
        if policy == "split_tokens" and not all(aligned):
            bad = [c for c, ok in zip(candidates, aligned) if not ok]
            doc, added = _retokenize(doc, {c[0] for c in bad}, {c[1] for c in bad})
            rep.tokens_split += added
        spans: List[Span] = []
        for (start, end, label, tid, line), ok in zip(candidates, aligned):
            if ok or policy == "split_tokens":
                span = doc.char_span(start, end, label=label, span_id=tid)
                outcome = "exact" if ok else "split_tokens"
            elif policy == "strict":
                span, outcome = None, "strict"
            else:
                span = doc.char_span(start, end, label=label, span_id=tid,
                                     alignment_mode=policy)
                outcome = "expanded" if policy == "expand" else "contracted"
                if span is not None and span.start == span.end:
                    span = None
            if span is None:
                if outcome in ("exact", "split_tokens"):
                    raise AssertionError(f"could not align {start}-{end} in {ann_name}")
                rep.drop("misaligned")
                self.warn(
                    "misaligned",
                    f"entity {tid} [{start}, {end}) {doc.text[start:end][:40]!r} is not on "
                    f"token boundaries; dropped (alignment={policy!r})",
                    ann_name,
                    line,
                )
                continue
            rep.alignment[outcome] += 1
            spans.append(span)
        spans.sort(key=lambda s: (s.start, s.end, s.label_, s.id_))
        return doc, spans

    def _attach(
        self,
        parsed: AnnDocument,
        records: Dict[str, Dict[str, Any]],
        kept_ids: Set[str],
        ann_name: str,
    ) -> List[List[Any]]:
        """Attach A/M/# lines to kept entities; keep those on other annotations verbatim.

        Returns the A/M/# lines that target another annotation (R, E, ...) as other lines.
        """
        rep = self.report
        entity_ids = {e.id for e in parsed.entities}
        other_ids = {o.id for o in parsed.others}
        other_attr_lines: List[List[Any]] = []
        items: List[Tuple[Any, str, List[Any]]] = [
            (a, "attributes", [a.id, a.name, a.value]) for a in parsed.attributes]
        items += [(n, "notes", [n.id, n.type, n.text]) for n in parsed.notes]
        for item, slot, value in items:
            kind = item.id[:1]
            if item.target in kept_ids:
                record = records.setdefault(item.target, {})
                record.setdefault(slot, []).append(value)
                if slot == "attributes":
                    rep.attributes += 1
                else:
                    rep.notes += 1
            elif item.target in entity_ids:
                rep.ignored_lines[f"{kind} on dropped entity"] += 1
            elif item.target in other_ids:
                other_attr_lines.append([kind, item.id, item.raw, [item.target]])
                rep.other_lines[kind] += 1
            else:
                rep.ignored_lines["dangling"] += 1
                self.warn("dangling_reference",
                          f"{item.id} refers to unknown annotation {item.target!r}; ignored",
                          ann_name, item.line)
        known = entity_ids | other_ids
        for other in parsed.others:
            rep.other_lines[other.kind] += 1
            missing = [r for r in other.refs if r not in known]
            if missing:
                self.warn("dangling_reference",
                          f"{other.id} refers to unknown annotation(s) {missing}; kept",
                          ann_name, other.line)
        return other_attr_lines


# ---------------------------------------------------------------------------------------
# Public entry points
# ---------------------------------------------------------------------------------------
def iter_standoff(
    path: Union[str, Path],
    nlp: Language,
    report: Optional[ConversionReport] = None,
    **options: Any,
) -> Iterator[Doc]:
    """Yield Docs for every document under ``path``, filling ``report`` as it goes.

    Options are the fields of :class:`StandoffOptions`. Raises :class:`StandoffError` if
    ``path`` does not exist or holds no .txt/.ann file, and (``strict=True``) on any problem.
    The report's bookkeeping is checked once the iteration is complete.
    """
    opts = StandoffOptions.from_kwargs(**options)
    root = Path(path)
    if not root.exists():
        raise StandoffError(f"Input path does not exist: {root}")
    problems: List[Tuple[str, str]] = []
    files = find_standoff_files(root, problems)
    if not files and not problems:
        raise StandoffError(f"No .txt or .ann files found under {root}")
    reader = StandoffReader(nlp, opts, report)
    reader.skip_folders(problems)
    started = time.perf_counter()
    for entry in files:
        yield from reader.read_file(entry)
    reader.report.seconds += time.perf_counter() - started
    reader.report.check()


def read_standoff(
    path: Union[str, Path], nlp: Language, **options: Any
) -> Tuple[List[Doc], ConversionReport]:
    """Read all Docs under ``path``; returns ``(docs, report)``. See :func:`iter_standoff`."""
    report = ConversionReport()
    docs = list(iter_standoff(path, nlp, report, **options))
    return docs, report


def standoff_to_docs(
    nlp: Language,
    text: str,
    ann_text: str = "",
    source: str = "doc.txt",
    report: Optional[ConversionReport] = None,
    **options: Any,
) -> List[Doc]:
    """Convert one document given as strings (``.txt`` content, ``.ann`` content)."""
    reader = StandoffReader(nlp, StandoffOptions.from_kwargs(**options), report)
    return reader.convert(text, ann_text, source)
