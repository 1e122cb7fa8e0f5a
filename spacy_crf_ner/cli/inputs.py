"""The inputs of ``predict`` (both engines): what the formats are, how a folder or a JSONL
file becomes texts with their output names, how skipped inputs are counted and reported,
and the checks on the output folder. Shared by :mod:`.predict` and :mod:`.predict_spark`,
below both, so that neither imports the other's helpers.
"""
import codecs
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

from wasabi import msg

from ..data.reader import printable_name
from .util import fail

FORMATS = ("auto", "brat", "txt", "jsonl")
JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")
SHOW_SKIPS = 20


@dataclass
class TextInput:
    """One text to predict: where it goes (``source``, relative ``.txt`` path), its text,
    and the file to copy byte for byte (None: write the text)."""

    source: str
    text: str
    copy_from: Optional[Path] = None


@dataclass
class Skips:
    reasons: Counter = field(default_factory=Counter)
    messages: List[str] = field(default_factory=list)
    renamed: int = 0

    def add(self, reason: str, message: str) -> None:
        self.reasons[reason] += 1
        self.messages.append(printable_name(message))

    @property
    def total(self) -> int:
        return sum(self.reasons.values())


def detect_format(path: Path) -> str:
    if path.is_file():
        if path.suffix.lower() in JSONL_SUFFIXES:
            return "jsonl"
        if path.suffix.lower() == ".txt":
            return "txt"
        fail(f"cannot tell the format of {path}: use --format jsonl|txt")
    from ..data import find_standoff_files

    has_ann = any(entry.ann is not None for entry in find_standoff_files(path))
    return "brat" if has_ann else "txt"


def folder_inputs(path: Path, skips: Skips) -> Tuple[int, Iterator[TextInput]]:
    """Every ``.txt`` under ``path`` (or ``path`` itself), decoded as UTF-8 and unchanged.

    Files that cannot be read (broken links, FIFOs, permissions), that are not UTF-8, or
    whose name differs from another input's only by the case of its suffix are skipped and
    counted.
    """
    from ..data import find_standoff_files
    from ..data.reader import read_file_bytes

    problems: List[Tuple[str, str]] = []
    entries = find_standoff_files(path, problems)
    collisions = [(e, extra) for e in entries for extra in e.extra
                  if extra.suffix.lower() == ".txt"]
    texts = [(e, e.txt) for e in entries if e.txt is not None]

    def generate() -> Iterator[TextInput]:
        for rel, why in problems:
            skips.add("unreadable_folder", f"{printable_name(rel)}/: {why}; its files skipped")
        for entry, extra in collisions:
            paired = entry.txt.name if entry.txt is not None else "?"
            skips.add("case_collision", f"{entry.stem + extra.suffix}: name differs from "
                                        f"{paired} only by case; skipped")
        for entry, txt in texts:
            data, why = read_file_bytes(txt)
            if data is None:
                skips.add("unreadable", f"{entry.source}: {why}; skipped")
                continue
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError as err:
                line = data[: err.start].count(b"\n") + 1
                skips.add("not_utf8", f"{entry.source}:{line}: not valid UTF-8 "
                                      f"(byte offset {err.start}); skipped")
                continue
            yield TextInput(entry.source, text, txt)

    return len(texts) + len(collisions) + len(problems), generate()


_UNSAFE = re.compile(r"[^\w.\-]+")
# File names are limited in bytes (255 on most systems); room is left for "__N" and ".ann".
MAX_NAME_BYTES = 200


def _safe_name(value: object) -> str:
    """A file name from a JSONL id: unsafe characters replaced, at most MAX_NAME_BYTES bytes
    of UTF-8 (cut between characters)."""
    name = _UNSAFE.sub("_", str(value)).lstrip(".")
    encoded = name.encode("utf-8", "replace")
    if len(encoded) > MAX_NAME_BYTES:
        name = encoded[:MAX_NAME_BYTES].decode("utf-8", "ignore")
    return name


def jsonl_inputs(path: Path, skips: Skips) -> Tuple[int, Iterator[TextInput]]:
    """One input per valid line; bad lines are skipped with their line number."""
    with open(path, "rb") as f:
        total = sum(1 for line in f if line.strip())

    def generate() -> Iterator[TextInput]:
        used: Dict[str, int] = {}
        with open(path, "rb") as f:
            for lineno, raw in enumerate(f, start=1):
                if lineno == 1 and raw.startswith(codecs.BOM_UTF8):
                    raw = raw[len(codecs.BOM_UTF8):]
                if not raw.strip():
                    continue
                where = f"{path.name}:{lineno}"
                try:
                    record = json.loads(raw.decode("utf-8"))
                except UnicodeDecodeError:
                    skips.add("not_utf8", f"{where}: not valid UTF-8; skipped")
                    continue
                except ValueError as err:
                    skips.add("bad_json", f"{where}: invalid JSON ({err}); skipped")
                    continue
                except RecursionError:
                    skips.add("bad_json", f"{where}: JSON nested too deeply to read; skipped")
                    continue
                if not isinstance(record, dict):
                    skips.add("not_an_object", f"{where}: not a JSON object; skipped")
                    continue
                text = record.get("text")
                if not isinstance(text, str):
                    reason = "no_text" if text is None else "text_not_a_string"
                    skips.add(reason, f"{where}: no string \"text\" field; skipped")
                    continue
                try:
                    text.encode("utf-8")
                except UnicodeEncodeError as err:  # a lone surrogate such as "\\ud800"
                    skips.add("not_encodable", f"{where}: \"text\" has {err.reason} at "
                                               f"character {err.start}; skipped")
                    continue
                ident = record.get("id", record.get("name"))
                name = _safe_name(ident) if ident is not None else ""
                if not name:
                    name = f"line{lineno:06d}"
                if name in used:
                    used[name] += 1
                    new = f"{name}__{used[name]}"
                    while new in used:
                        used[name] += 1
                        new = f"{name}__{used[name]}"
                    skips.renamed += 1
                    skips.messages.append(f"{where}: name {name!r} used before; written as "
                                          f"{new!r}")
                    name = new
                used[name] = used.get(name, 1)
                yield TextInput(name + ".txt", text)

    return total, generate()


def prepare_output(input_path: Path, output_dir: Path, fmt: str, writes_ann: bool) -> None:
    """Fail now if the input does not fit ``fmt`` or the output folder cannot be used (a
    file; the input folder itself when ``.ann`` files would be written over the input's);
    else create the output folder."""
    if fmt == "jsonl" and not input_path.is_file():
        what = "a folder" if input_path.is_dir() else "not a regular file (a FIFO, socket or " \
            "device: it is read twice, so save it to a file first)"
        fail(f"--format jsonl needs a file; {input_path} is {what}")
    if fmt in ("brat", "txt") and input_path.is_file() and input_path.suffix.lower() != ".txt":
        fail(f"--format {fmt} needs a folder or a .txt file; got {input_path}")
    if output_dir.exists() and not output_dir.is_dir():
        fail(f"output {output_dir} is a file, not a folder")
    in_root = input_path if input_path.is_dir() else input_path.parent
    if output_dir.exists() and output_dir.resolve() == in_root.resolve() and writes_ann:
        fail("OUTPUT_DIR is the input folder: the input .ann files would be overwritten; "
             "choose another folder")
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        fail(f"cannot create {output_dir}: {err}")


def echo_skips(skips: Skips) -> None:
    """How many inputs were skipped, by reason, and the first messages."""
    show = msg.warn if skips.total else msg.info
    show(f"Skipped inputs: {skips.total}")
    for reason, n in sorted(skips.reasons.items()):
        msg.text(f"  {reason}: {n}")
    if skips.renamed:
        msg.info(f"Renamed (name used before): {skips.renamed}")
    for message in skips.messages[:SHOW_SKIPS]:
        msg.text(f"  {message}")
    if len(skips.messages) > SHOW_SKIPS:
        msg.text(f"  ... and {len(skips.messages) - SHOW_SKIPS} more")
