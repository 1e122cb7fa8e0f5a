"""Write Docs (gold or predicted, whole or split) back to BRAT standoff files.

Parts of one source document are re-joined by their provenance (ordered by offset) and
every span is written in the coordinates of the source text. T ids carried by the spans
(``span.id_``) are kept, others get fresh ids; attributes, notes and other lines kept by
the reader are written back, and a span group's ``attrs["scores"]`` can be written as a
note per entity.
"""
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple, Union

from spacy.tokens import Doc

from ..spans import SpanGetter, get_span_scores, get_spans
from .meta import get_annotations, get_provenance
from .report import StandoffIssue

_LINE_BREAK = re.compile(r"\s*[\r\n]\s*")
_NUMBERED = re.compile(r"^([A-Z#]+)(\d+)$")



def make_folders(path: Path) -> None:
    """``path.mkdir(parents=True, exist_ok=True)`` without recursion (pathlib recurses once
    per missing level, which fails for folders ~1,000 levels deep)."""
    missing = []
    while not path.is_dir():
        missing.append(path)
        if path.parent == path:
            break
        path = path.parent
    for folder in reversed(missing):
        try:
            folder.mkdir()
        except FileExistsError:
            if not folder.is_dir():
                raise


def _offset(doc: Doc) -> int:
    """Where a part starts in its source text (0 for a Doc without provenance)."""
    prov = get_provenance(doc)
    return prov.offset if prov is not None else 0

@dataclass
class WriteReport:
    """What :func:`write_standoff` wrote."""

    files: int = 0  # .ann files written
    texts: int = 0  # .txt files written
    entities: int = 0  # T lines
    spans: int = 0  # spans read from the Docs
    discontinuous: int = 0  # T lines with several fragments
    attributes: int = 0
    notes: int = 0
    scores: int = 0
    other_lines: int = 0
    other_lines_dropped: int = 0  # referring to annotations not written
    issues: List[StandoffIssue] = field(default_factory=list)

    def to_dict(self) -> Dict[str, Any]:
        out = dict(vars(self))
        out["issues"] = [i.to_dict() for i in self.issues]
        return out


@dataclass
class _Entry:
    label: str
    fragments: List[Tuple[int, int]]
    tid: str  # id carried by the span ("" if none)
    score: Optional[float] = None


def _entries_for_source(
    parts: List[Doc], span_getter: SpanGetter
) -> Tuple[List[_Entry], Dict[str, Dict[str, Any]], List[List[Any]]]:
    entries: List[_Entry] = []
    records: Dict[str, Dict[str, Any]] = {}
    others: List[List[Any]] = []
    for doc in parts:
        prov = get_provenance(doc)
        offset = prov.offset if prov else 0
        spans, scores = get_spans(doc, span_getter), get_span_scores(doc, span_getter)
        for i, span in enumerate(spans):
            score = None if scores is None else float(scores[i])
            entries.append(
                _Entry(span.label_, [(offset + span.start_char, offset + span.end_char)],
                       span.id_, score)
            )
        annotations = get_annotations(doc)
        records.update(annotations["entities"])
        others.extend(annotations["other_lines"])
    return entries, records, others


def _rejoin_fragments(entries: List[_Entry], records: Dict[str, Dict[str, Any]]) -> List[_Entry]:
    """Turn the spans of a discontinuous entity back into one T line with its fragments.

    This happens when the spans carrying the entity's id (same label) are exactly the spans
    the reader made from it ('split': one per fragment; 'cover': one covering span).
    Otherwise each span is written on its own.
    """
    by_id: Dict[str, List[int]] = defaultdict(list)
    for i, entry in enumerate(entries):
        if entry.tid in records and records[entry.tid].get("fragments"):
            by_id[entry.tid].append(i)
    drop = set()
    for tid, indices in by_id.items():
        record = records[tid]
        label = record.get("label")
        wanted = sorted(tuple(s) for s in record.get("spans") or ())
        mine = [i for i in indices if entries[i].label == label]
        have = sorted(entries[i].fragments[0] for i in mine)
        if not wanted or have != wanted:
            continue
        first = mine[0]
        entries[first].fragments = [tuple(f) for f in record["fragments"]]
        scores: List[float] = [s for s in (entries[i].score for i in mine) if s is not None]
        entries[first].score = min(scores) if scores else None
        drop.update(mine[1:])
    return [e for i, e in enumerate(entries) if i not in drop]


def _split_line_breaks(
    fragments: List[Tuple[int, int]], text: str
) -> List[Tuple[int, int]]:
    """Cut fragments around the line breaks inside them, as BRAT does.

    Only line breaks between two non-blank pieces cut (the reader merges fragments separated
    by whitespace back into one span); a fragment that starts or ends on a line break keeps
    its exact offsets, and only its text column is made single-line (:func:`one_line`).
    """
    out: List[Tuple[int, int]] = []
    for start, end in fragments:
        piece = text[start:end]
        pos = 0
        for match in _LINE_BREAK.finditer(piece):
            if match.start() == 0 or match.end() == len(piece):
                continue
            out.append((start + pos, start + match.start()))
            pos = match.end()
        out.append((start + pos, end))
    return out


def one_line(text: str) -> str:
    """A text column for a .ann line: each CR or LF becomes a space (same length)."""
    return text.replace("\r", " ").replace("\n", " ")


class _Ids:
    """Fresh annotation ids that do not collide with ids already in use."""

    def __init__(self, used: Iterable[str]):
        self.used = set(used)
        self.next: Counter = Counter()
        for ann_id in self.used:
            match = _NUMBERED.match(ann_id)
            if match:
                prefix, number = match.groups()
                self.next[prefix] = max(self.next[prefix], int(number))

    def fresh(self, prefix: str) -> str:
        while True:
            self.next[prefix] += 1
            candidate = f"{prefix}{self.next[prefix]}"
            if candidate not in self.used:
                self.used.add(candidate)
                return candidate


def _source_text(parts: List[Doc], source: str, report: WriteReport) -> Optional[str]:
    """The source text re-joined from its parts, or None if parts are missing/overlapping."""
    pieces: List[str] = []
    pos = 0
    for doc in parts:
        prov = get_provenance(doc)
        offset = prov.offset if prov else 0
        if offset != pos:
            report.issues.append(
                StandoffIssue("incomplete_parts",
                              f"parts do not join up at offset {pos} (next part at {offset}); "
                              ".txt not written", source)
            )
            return None
        pieces.append(doc.text)
        pos += len(doc.text)
    prov = get_provenance(parts[0])
    if prov is not None and prov.length is not None and pos != prov.length:
        report.issues.append(
            StandoffIssue("incomplete_parts",
                          f"parts cover {pos} of {prov.length} characters; .txt not written",
                          source)
        )
        return None
    return "".join(pieces)


def format_ann(
    parts: List[Doc],
    span_getter: SpanGetter = "sc",
    *,
    text: Optional[str] = None,
    write_scores: bool = True,
    score_note_type: str = "AnnotatorNotes",
    report: Optional[WriteReport] = None,
    source: str = "doc",
) -> str:
    """The ``.ann`` content for the parts (Docs) of one source document."""
    report = report if report is not None else WriteReport()
    parts = sorted(parts, key=_offset)
    if text is None:  # parts missing: place the parts we have at their offsets
        chunks, pos = [], 0
        for doc in parts:
            prov = get_provenance(doc)
            offset = prov.offset if prov else pos
            if offset >= pos:
                chunks.append("\x00" * (offset - pos) + doc.text)
            else:
                chunks.append(doc.text[pos - offset:])
            pos = max(pos, offset + len(doc.text))
        text = "".join(chunks)
    entries, records, others = _entries_for_source(parts, span_getter)
    report.spans += len(entries)
    entries = _rejoin_fragments(entries, records)
    lines: List[Tuple[Tuple, str]] = []
    # ids: keep each carried T id once, fresh ids for the rest
    used = {e.tid for e in entries if e.tid}
    for rec in records.values():
        used.update(a[0] for a in rec.get("attributes") or ())
        used.update(n[0] for n in rec.get("notes") or ())
    used.update(o[1] for o in others)
    ids = _Ids(used)
    taken = set()
    written: List[Tuple[str, _Entry]] = []
    entries.sort(key=lambda e: (min(e.fragments), max(f[1] for f in e.fragments), e.label))
    for entry in entries:
        fragments = _split_line_breaks(list(entry.fragments), text)
        tid = entry.tid if entry.tid and entry.tid.startswith("T") and entry.tid not in taken \
            else ids.fresh("T")
        taken.add(tid)
        label = re.sub(r"\s+", "_", entry.label) or "_"
        offsets = ";".join(f"{s} {e}" for s, e in fragments)
        ent_text = one_line(" ".join(text[s:e] for s, e in fragments))
        lines.append(((0,), f"{tid}\t{label} {offsets}\t{ent_text}"))
        report.entities += 1
        report.discontinuous += len(fragments) > 1
        written.append((tid, entry))
    # attributes and notes: from the entity's record (by the id the span carried)
    extra: List[str] = []
    attached = set()
    for tid, entry in written:
        record = records.get(entry.tid) if entry.tid else None
        if record:
            first = entry.tid not in attached
            attached.add(entry.tid)
            for aid, name, value in record.get("attributes") or ():
                aid = aid if first and tid == entry.tid else ids.fresh(aid[:1] or "A")
                suffix = "" if value is True else f" {value}"
                extra.append(f"{aid}\t{name} {tid}{suffix}")
                report.attributes += 1
            for nid, ntype, note in record.get("notes") or ():
                nid = nid if first and tid == entry.tid else ids.fresh("#")
                extra.append(f"{nid}\t{ntype} {tid}\t{note}")
                report.notes += 1
        if write_scores and entry.score is not None:
            extra.append(f"{ids.fresh('#')}\t{score_note_type} {tid}\tconf={entry.score:.4f}")
            report.scores += 1
    # other lines: only those whose references are all written (checked to a fixpoint)
    known = {tid for tid, entry in written if tid == entry.tid}
    pending = list(others)
    kept: List[str] = []
    changed = True
    while changed:
        changed = False
        for line in list(pending):
            refs = line[3] if len(line) > 3 else ()
            if all(r in known for r in refs):
                kept.append(line[2])
                if line[1] != "*":
                    known.add(line[1])
                pending.remove(line)
                changed = True
    report.other_lines += len(kept)
    report.other_lines_dropped += len(pending)
    if pending:
        report.issues.append(
            StandoffIssue("other_lines_dropped",
                          f"{len(pending)} line(s) refer to annotations not written, e.g. "
                          f"{pending[0][2][:60]!r}", source)
        )
    out = [line for _, line in lines] + extra + kept
    return "".join(line + "\n" for line in out)


def write_standoff(
    docs: Iterable[Doc],
    out_dir: Union[str, Path],
    span_getter: SpanGetter = "sc",
    *,
    write_text: bool = True,
    write_scores: bool = True,
    score_note_type: str = "AnnotatorNotes",
    encoding: str = "utf-8",
) -> WriteReport:
    """Write Docs to ``out_dir`` as ``.ann`` (and ``.txt``) files, one pair per source.

    * Parts of one source (same provenance ``source``) are re-joined in offset order; the
      ``.txt`` is the concatenation of their texts (byte-identical to the original when all
      parts are there) and is not written if parts are missing.
    * ``span_getter``: a span group key (default ``"sc"``), ``"ents"``, or a callable
      ``doc -> spans``.
    * A span keeps the T id it carries (``span.id_``) when it is unique, else gets a fresh
      one. Attributes and notes of that entity are written back. The spans a discontinuous
      entity was split into (or its covering span) are written as the original
      discontinuous T line when they are all present and unchanged; otherwise each span is
      written on its own. A span with a line break inside is written as fragments around
      it, as BRAT does; offsets are never moved (a span may start or end on a line break),
      and CR/LF in the text column become spaces.
    * ``write_scores``: when the group has ``attrs["scores"]`` (one per span), add a note
      ``conf=0.1234`` per entity (type ``score_note_type``).
    * Docs without provenance are written as ``doc0001.txt``/``.ann`` ... in input order.
    """
    out = Path(out_dir)
    make_folders(out)
    report = WriteReport()
    groups: Dict[str, List[Doc]] = {}
    anonymous = 0
    for doc in docs:
        prov = get_provenance(doc)
        if prov is None or not prov.source:
            anonymous += 1
            key = f"doc{anonymous:04d}.txt"
        else:
            key = prov.source
        groups.setdefault(key, []).append(doc)
    for source, parts in groups.items():
        parts.sort(key=_offset)
        text = _source_text(parts, source, report)
        has_suffix = source.lower().endswith(".txt")
        stem = source[:-4] if has_suffix else source
        txt_suffix = source[-4:] if has_suffix else ".txt"  # keeps the input's "UPPER.TXT"
        target = out / stem
        make_folders(target.parent)
        ann = format_ann(parts, span_getter, text=text, write_scores=write_scores,
                         score_note_type=score_note_type, report=report, source=source)
        with open(target.with_name(target.name + ".ann"), "w", encoding=encoding,
                  newline="") as f:
            f.write(ann)
        report.files += 1
        if write_text and text is not None:
            with open(target.with_name(target.name + txt_suffix), "w", encoding=encoding,
                      newline="") as f:
                f.write(text)
            report.texts += 1
    return report
