"""Counts, warnings and errors of a standoff conversion.

Every entity (``T`` line) that enters the reader leaves it either as a span in the span
group or as a dropped span with a named reason; :meth:`ConversionReport.check` verifies
that bookkeeping so that nothing can be lost silently.
"""
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

# Reasons a span can be dropped (keys of ConversionReport.dropped).
DROP_REASONS = {
    "malformed": "T line that cannot be parsed (bad or non-integer offsets, end <= start)",
    "out_of_range": "offsets past the end of the text",
    "duplicate_id": "a second T line with an id already used in the same file",
    "discontinuous_skipped": "discontinuous entity with discontinuous='skip'",
    "misaligned": "boundaries not on token boundaries under alignment='strict' "
    "(or nothing left after 'contract'/'expand')",
    "missing_txt": ".ann file without a .txt file",
    "unreadable_file": ".txt or .ann file that cannot be read or decoded",
    "case_collision": ".ann file whose name differs from the paired one only by case",
    "empty_text": "entity of an empty .txt file",
}

# How kept spans relate to the token boundaries (keys of ConversionReport.alignment).
ALIGNMENT_OUTCOMES = ("exact", "expanded", "contracted", "split_tokens")


@dataclass
class StandoffIssue:
    """One problem found in the input, located by file and 1-based line number."""

    code: str
    message: str
    file: Optional[str] = None
    line: Optional[int] = None

    def __str__(self) -> str:
        where = self.file or "<input>"
        if self.line is not None:
            where = f"{where}:{self.line}"
        return f"{where}: [{self.code}] {self.message}"

    def to_dict(self) -> Dict[str, Any]:
        return {"code": self.code, "message": self.message, "file": self.file, "line": self.line}


class StandoffError(ValueError):
    """Raised instead of a warning when reading with ``strict=True``, or for unusable input."""

    def __init__(self, message: str, issue: Optional[StandoffIssue] = None):
        super().__init__(message)
        self.issue = issue


@dataclass
class ConversionReport:
    """What a standoff read did: files, entities kept/changed/dropped, other lines, warnings.

    The entity unit is the *span*: a T line gives one span, except a discontinuous T line
    under ``discontinuous="split"``, which gives one span per (whitespace-merged) fragment;
    ``extra_fragments`` counts those additional spans, so
    ``spans_read == t_lines + extra_fragments`` and
    ``spans_read == kept + sum(dropped.values())``.
    """

    # files
    txt_files: int = 0
    ann_files: int = 0
    documents: int = 0  # source documents turned into Docs
    parts: int = 0  # Docs produced (a document split by split_doc gives several)
    txt_only: int = 0  # .txt without .ann (kept as Docs without entities, or skipped)
    empty_ann: int = 0  # empty .ann files (valid: a document without annotations)
    bom_decoded: int = 0  # files decoded as UTF-16/32 from their byte order mark
    files_skipped: Counter = field(default_factory=Counter)  # by reason
    # entities
    t_lines: int = 0
    discontinuous: int = 0  # T lines with more than one fragment
    merged_fragments: int = 0  # fragment gaps made only of whitespace, merged away
    extra_fragments: int = 0  # spans beyond one per T line (discontinuous="split")
    spans_read: int = 0
    kept: int = 0  # spans put in the span group
    in_ents: int = 0  # kept spans also put in doc.ents
    not_in_ents: int = 0  # kept spans left out of doc.ents because they overlap
    alignment: Counter = field(default_factory=Counter)  # ALIGNMENT_OUTCOMES
    tokens_split: int = 0  # extra tokens created by alignment="split_tokens"
    dropped: Counter = field(default_factory=Counter)  # DROP_REASONS
    text_mismatches: int = 0
    attributes: int = 0  # A/M lines attached to kept entities
    notes: int = 0  # '#' lines attached to kept entities
    # other line types (N, R, E, *, attributes/notes on non-entities): kept in user_data
    other_lines: Counter = field(default_factory=Counter)
    # lines not kept, by type ("unknown", "dangling", "malformed", ...)
    ignored_lines: Counter = field(default_factory=Counter)
    # splitting
    over_length: int = 0  # parts longer than max_length (no safe cut point)
    # warnings
    warnings: Counter = field(default_factory=Counter)  # by code
    issues: List[StandoffIssue] = field(default_factory=list)
    max_issues: int = 10000
    seconds: float = 0.0

    # -- recording -------------------------------------------------------------------
    def add_issue(self, issue: StandoffIssue) -> None:
        self.warnings[issue.code] += 1
        if len(self.issues) < self.max_issues:
            self.issues.append(issue)

    def drop(self, reason: str, n: int = 1) -> None:
        if reason not in DROP_REASONS:
            raise ValueError(f"Unknown drop reason {reason!r}")
        self.dropped[reason] += n

    # -- derived ---------------------------------------------------------------------
    @property
    def n_warnings(self) -> int:
        return sum(self.warnings.values())

    @property
    def n_dropped(self) -> int:
        return sum(self.dropped.values())

    @property
    def misaligned(self) -> int:
        """Spans whose boundaries were not token boundaries of the tokenizer's output."""
        return (
            self.alignment["expanded"]
            + self.alignment["contracted"]
            + self.alignment["split_tokens"]
            + self.dropped["misaligned"]
        )

    @property
    def aligned_total(self) -> int:
        """Spans that reached the alignment step (valid offsets, not skipped)."""
        return sum(self.alignment.values()) + self.dropped["misaligned"]

    def check(self) -> None:
        """Raise AssertionError if the entity bookkeeping does not add up."""
        problems = []
        if self.spans_read != self.t_lines + self.extra_fragments:
            problems.append(
                f"spans_read={self.spans_read} != t_lines={self.t_lines} "
                f"+ extra_fragments={self.extra_fragments}"
            )
        if self.spans_read != self.kept + self.n_dropped:
            problems.append(
                f"spans_read={self.spans_read} != kept={self.kept} + dropped={self.n_dropped}"
            )
        if sum(self.alignment.values()) != self.kept:
            problems.append(f"alignment outcomes {dict(self.alignment)} != kept={self.kept}")
        if self.in_ents + self.not_in_ents not in (0, self.kept):
            problems.append(
                f"in_ents={self.in_ents} + not_in_ents={self.not_in_ents} != kept={self.kept}"
            )
        if problems:
            raise AssertionError("Conversion counts do not add up: " + "; ".join(problems))

    def merge(self, other: "ConversionReport") -> "ConversionReport":
        """Add another report's counts into this one (returns self)."""
        for name, value in vars(other).items():
            mine = getattr(self, name)
            if name in ("max_issues",):
                continue
            if name == "issues":
                room = self.max_issues - len(self.issues)
                self.issues.extend(value[: max(room, 0)])
            elif isinstance(mine, Counter):
                mine.update(value)
            elif isinstance(mine, (int, float)) and not isinstance(mine, bool):
                setattr(self, name, mine + value)
        return self

    # -- output ----------------------------------------------------------------------
    def to_dict(self) -> Dict[str, Any]:
        """JSON-serialisable counts (and the recorded issues)."""
        out: Dict[str, Any] = {}
        for name, value in vars(self).items():
            if name == "issues":
                out[name] = [i.to_dict() for i in value]
            elif isinstance(value, Counter):
                out[name] = dict(sorted(value.items()))
            else:
                out[name] = value
        out["misaligned"] = self.misaligned
        out["aligned_total"] = self.aligned_total
        out["n_warnings"] = self.n_warnings
        out["n_dropped"] = self.n_dropped
        return out

    def rows(self) -> List[Tuple[str, str]]:
        """(name, value) rows of the summary table printed by the converter."""
        rows: List[Tuple[str, str]] = [
            ("files .txt / .ann", f"{self.txt_files} / {self.ann_files}"),
            ("documents converted", str(self.documents)),
            ("docs written (parts)", str(self.parts)),
            ("  .txt without .ann", str(self.txt_only)),
            ("  empty .ann", str(self.empty_ann)),
            ("  decoded as UTF-16/32 (BOM)", str(self.bom_decoded)),
        ]
        for reason, n in sorted(self.files_skipped.items()):
            rows.append((f"  files skipped: {reason}", str(n)))
        rows += [
            ("T lines", str(self.t_lines)),
            ("  discontinuous", str(self.discontinuous)),
            ("  + extra fragment spans", str(self.extra_fragments)),
            ("spans read", str(self.spans_read)),
            ("kept in span group", str(self.kept)),
        ]
        for outcome in ALIGNMENT_OUTCOMES:
            rows.append((f"  {outcome}", str(self.alignment[outcome])))
        rows.append(("  tokens created by split", str(self.tokens_split)))
        rows.append(("kept in doc.ents", str(self.in_ents)))
        rows.append(("  not in doc.ents (overlap)", str(self.not_in_ents)))
        rows.append(("dropped", str(self.n_dropped)))
        for reason, n in sorted(self.dropped.items()):
            rows.append((f"  dropped: {reason}", str(n)))
        total = self.aligned_total
        rate = f"{self.misaligned / total:.2%}" if total else "n/a"
        rows.append(("misaligned with tokens", f"{self.misaligned} / {total} ({rate})"))
        rows.append(("text column mismatches", str(self.text_mismatches)))
        rows.append(("attributes / notes kept", f"{self.attributes} / {self.notes}"))
        for kind, n in sorted(self.other_lines.items()):
            rows.append((f"other lines kept: {kind}", str(n)))
        for kind, n in sorted(self.ignored_lines.items()):
            rows.append((f"lines ignored: {kind}", str(n)))
        rows.append(("parts over max_length", str(self.over_length)))
        rows.append(("warnings", str(self.n_warnings)))
        for code, n in sorted(self.warnings.items()):
            rows.append((f"  {code}", str(n)))
        rows.append(("seconds", f"{self.seconds:.2f}"))
        return rows

    def format_table(self) -> str:
        rows = self.rows()
        width = max(len(name) for name, _ in rows)
        return "\n".join(f"{name.ljust(width)}  {value}" for name, value in rows)
