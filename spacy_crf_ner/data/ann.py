"""Parse the lines of a BRAT ``.ann`` file into plain records.

The parser never raises on bad input: each problem becomes a :class:`StandoffIssue` with its
line number, and the caller decides whether to warn or fail (``strict``). Lines other than
entities, attributes and notes (``N``, ``R``, ``E``, ``*``) are kept verbatim together with
the annotation ids they refer to, so a writer can put them back.
"""
import re
from dataclasses import dataclass, field
from typing import List, Optional, Tuple, Union

from .report import StandoffIssue

_INT = re.compile(r"[0-9]+")
# Longer offsets cannot address any text (and Python refuses int() of > 4,300 digits).
MAX_OFFSET_DIGITS = 18
# Line ends as BRAT tools read them: LF, CRLF or a lone CR (other Unicode separators are text).
_LINE_END = re.compile(r"\r\n|\r|\n")
OTHER_TYPES = ("N", "R", "E", "*")


@dataclass
class AnnEntity:
    """A ``T`` line: id, label, fragments as (start, end) in file order, text column."""

    id: str
    label: str
    fragments: List[Tuple[int, int]]
    text: Optional[str]
    line: int


@dataclass
class AnnAttribute:
    """An ``A``/``M`` line; ``value`` is True for a binary attribute written without value."""

    id: str
    name: str
    target: str
    value: Union[str, bool]
    line: int
    raw: str


@dataclass
class AnnNote:
    """A ``#`` line, e.g. ``#1<TAB>AnnotatorNotes T1<TAB>some text``."""

    id: str
    type: str
    target: str
    text: str
    line: int
    raw: str


@dataclass
class AnnOther:
    """Any other valid line (``N``, ``R``, ``E``, ``*``), kept verbatim."""

    kind: str
    id: str
    refs: Tuple[str, ...]
    line: int
    raw: str


@dataclass
class AnnDocument:
    """Everything parsed from one ``.ann`` text. ``t_lines`` includes malformed T lines."""

    entities: List[AnnEntity] = field(default_factory=list)
    attributes: List[AnnAttribute] = field(default_factory=list)
    notes: List[AnnNote] = field(default_factory=list)
    others: List[AnnOther] = field(default_factory=list)
    issues: List[StandoffIssue] = field(default_factory=list)
    t_lines: int = 0
    malformed_t_lines: int = 0
    unknown_lines: int = 0
    malformed_other_lines: int = 0


def _parse_offsets(spec: str) -> Tuple[Optional[List[Tuple[int, int]]], str]:
    fragments = []
    for frag in spec.split(";"):
        bits = frag.split()
        if len(bits) != 2:
            return None, f"fragment {frag.strip()[:60]!r} is not 'start end'"
        if not (_INT.fullmatch(bits[0]) and _INT.fullmatch(bits[1])):
            return None, f"offsets {frag.strip()[:60]!r} are not non-negative integers"
        longest = max(bits, key=len)
        if len(longest) > MAX_OFFSET_DIGITS:
            return None, (f"offset of {len(longest)} digits ({longest[:12]}...): more than "
                          f"{MAX_OFFSET_DIGITS}, past any text")
        start, end = int(bits[0]), int(bits[1])
        if end < start:
            return None, f"end {end} is before start {start}"
        if end == start:
            return None, f"empty fragment {start} {end}"
        fragments.append((start, end))
    return fragments, ""


def _refs(kind: str, head: str, args: List[str]) -> Tuple[str, ...]:
    if kind in ("N", "A", "M", "#"):
        return tuple(args[:1])
    if kind == "*":
        return tuple(args)
    # R: Role:ID arguments; E: Type:Trigger followed by Role:ID arguments
    items = [head] + args if kind == "E" else args
    return tuple(item.split(":", 1)[1] for item in items if ":" in item)


def parse_ann(text: str) -> AnnDocument:
    """Parse ``.ann`` content (already decoded) into an :class:`AnnDocument`.

    Lines end with ``\\n``, ``\\r\\n`` or a lone ``\\r`` (as BRAT tools split them; a
    leading BOM is removed); unusual Unicode line separators inside entity texts do not
    break lines apart. A line indented by spaces or tabs is malformed (counted as a
    malformed line of its type, e.g. a malformed T line), since BRAT ids start the line.
    """
    out = AnnDocument()
    if text.startswith("\ufeff"):
        text = text[1:]
    for number, line in enumerate(_LINE_END.split(text), start=1):
        if not line.strip():
            continue
        kind = line[0]
        fields = line.split("\t", 2)
        if kind in " \t":
            kind = line.lstrip(" \t")[0]
            if kind == "T":
                out.t_lines += 1
                out.malformed_t_lines += 1
                code = "malformed_entity"
            elif kind in ("A", "M", "#") + OTHER_TYPES:
                out.malformed_other_lines += 1
                code = "malformed_line"
            else:
                out.unknown_lines += 1
                code = "unknown_line_type"
            out.issues.append(StandoffIssue(
                code, f"line starts with whitespace before its id: {line[:60]!r}", line=number))
            continue
        if kind == "T":
            out.t_lines += 1
            entity, problem = _parse_entity(fields, number)
            if entity is None:
                out.malformed_t_lines += 1
                out.issues.append(StandoffIssue("malformed_entity", problem, line=number))
            else:
                out.entities.append(entity)
                if entity.text is None:
                    out.issues.append(
                        StandoffIssue(
                            "missing_text_column",
                            f"entity {entity.id} has no text column; text not checked",
                            line=number,
                        )
                    )
            continue
        if kind not in ("A", "M", "#") + OTHER_TYPES:
            out.unknown_lines += 1
            out.issues.append(
                StandoffIssue("unknown_line_type", f"unknown line type {line[:40]!r}", line=number)
            )
            continue
        if len(fields) < 2 or not fields[1].split():
            out.malformed_other_lines += 1
            out.issues.append(
                StandoffIssue("malformed_line", f"cannot parse {line[:60]!r}", line=number)
            )
            continue
        ann_id = fields[0].strip()
        words = fields[1].split()
        head, args = words[0], words[1:]
        if kind in ("A", "M", "#") and not args:
            out.malformed_other_lines += 1
            out.issues.append(
                StandoffIssue("malformed_line", f"no target in {line[:60]!r}", line=number)
            )
            continue
        if kind in ("A", "M"):
            value: Union[str, bool] = " ".join(args[1:]) if len(args) > 1 else True
            out.attributes.append(AnnAttribute(ann_id, head, args[0], value, number, line))
        elif kind == "#":
            note = fields[2] if len(fields) > 2 else ""
            out.notes.append(AnnNote(ann_id, head, args[0], note, number, line))
        else:
            out.others.append(AnnOther(kind, ann_id, _refs(kind, head, args), number, line))
    return out


def _parse_entity(fields: List[str], number: int) -> Tuple[Optional[AnnEntity], str]:
    if len(fields) < 2:
        return None, f"T line without tab-separated fields: {fields[0][:60]!r}"
    ann_id = fields[0].strip()
    head = fields[1].split(None, 1)
    if len(head) < 2:
        return None, f"entity {ann_id}: expected 'Label start end', got {fields[1][:60]!r}"
    label, spec = head
    fragments, problem = _parse_offsets(spec)
    if fragments is None:
        return None, f"entity {ann_id}: {problem}"
    text = fields[2] if len(fields) > 2 else None
    return AnnEntity(ann_id, label, fragments, text, number), ""
