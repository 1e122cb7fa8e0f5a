"""Where standoff information lives on a Doc, and helpers to read it.

Everything is stored as plain values in ``doc.user_data`` (string keys, lists, dicts), so it
survives ``DocBin(store_user_data=True)`` (which turns lists into tuples: readers here accept
both):

* ``doc.user_data["standoff"]``: provenance ``{"source", "offset", "length", "part",
  "n_parts"}`` -- the source ``.txt`` path relative to the input root, the character offset
  of this Doc's text in the source text, the length of the whole source text, the part index
  and the number of parts the source was split into.
* ``doc.user_data["standoff_annotations"]``: ``{"entities": {T id: {...}}, "other_lines":
  [...]}`` -- per-entity BRAT data that a span cannot hold (original fragments, attributes,
  notes), keyed by the T id, and verbatim ``N``/``R``/``E``/``*`` lines.

A span is linked to its entity by ``span.id_`` (the BRAT T id, e.g. ``"T3"``), which spaCy
keeps in span groups, in ``doc.ents`` and through DocBin. Offsets in these records are
always in the coordinates of the *source* text.
"""
from dataclasses import asdict, dataclass
from typing import Any, Dict, Optional

from spacy.tokens import Doc, Span

PROVENANCE_KEY = "standoff"
ANNOTATIONS_KEY = "standoff_annotations"


@dataclass(frozen=True)
class Provenance:
    """Where a Doc's text comes from (see module docstring)."""

    source: str
    offset: int = 0
    length: Optional[int] = None
    part: int = 0
    n_parts: int = 1

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


def get_provenance(doc: Doc) -> Optional[Provenance]:
    """The Doc's provenance, or None for a Doc that was not read from standoff files."""
    data = doc.user_data.get(PROVENANCE_KEY)
    if not data:
        return None
    return Provenance(
        source=str(data["source"]),
        offset=int(data.get("offset", 0)),
        length=None if data.get("length") is None else int(data["length"]),
        part=int(data.get("part", 0)),
        n_parts=int(data.get("n_parts", 1)),
    )


def set_provenance(
    doc: Doc,
    source: str,
    offset: int = 0,
    length: Optional[int] = None,
    part: int = 0,
    n_parts: int = 1,
) -> None:
    """Record where ``doc`` comes from (e.g. for Docs made from raw text before predicting)."""
    if length is None and offset == 0 and n_parts == 1:
        length = len(doc.text)
    doc.user_data[PROVENANCE_KEY] = Provenance(source, offset, length, part, n_parts).to_dict()


def copy_provenance(source_doc: Doc, target_doc: Doc) -> None:
    """Copy provenance (not annotations) from one Doc to another with the same text.

    Use it when predicting: ``pred = nlp.make_doc(ref.text); copy_provenance(ref, pred)``,
    so :func:`write_standoff` puts the predictions back into the source file.
    """
    prov = get_provenance(source_doc)
    if prov is not None:
        target_doc.user_data[PROVENANCE_KEY] = prov.to_dict()


def get_annotations(doc: Doc) -> Dict[str, Any]:
    """The Doc's ``standoff_annotations`` record (empty structure if none)."""
    data = doc.user_data.get(ANNOTATIONS_KEY) or {}
    return {
        "entities": dict(data.get("entities") or {}),
        "other_lines": list(data.get("other_lines") or []),
    }


def get_span_annotation(span: Span) -> Optional[Dict[str, Any]]:
    """BRAT data of the entity a span was read from, or None.

    Returns ``{"id", "label", "fragments", "attributes": {name: value},
    "notes": [(type, text), ...]}``; ``fragments`` are the entity's original (start, end)
    fragments in source-text coordinates.
    """
    if not span.id_:
        return None
    record = get_annotations(span.doc)["entities"].get(span.id_)
    if record is None:
        return {"id": span.id_, "label": span.label_, "fragments": None, "attributes": {},
                "notes": []}
    return {
        "id": span.id_,
        "label": record.get("label", span.label_),
        "fragments": [tuple(f) for f in record.get("fragments") or ()],
        "attributes": {a[1]: a[2] for a in record.get("attributes") or ()},
        "notes": [(n[1], n[2]) for n in record.get("notes") or ()],
    }
