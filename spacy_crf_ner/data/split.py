"""Split long Docs into parts without cutting through any span.

Why: transformer windows and CRF memory grow with document length, so long files are cut
into parts of at most ``max_length`` spaCy tokens. Cuts are only made at token boundaries
that no span (any span group, or ``doc.ents``) crosses, so no entity is truncated, and each
part records its character offset in the source text, so :func:`write_standoff` can put the
parts back together exactly.
"""
import copy
import re
from bisect import bisect_left, bisect_right
from typing import Any, Dict, List, Optional, Pattern, Sequence, Tuple, Union

from spacy.attrs import ENT_IOB
from spacy.tokens import Doc, Span, SpanGroup

from ..internals import doc_array_attrs, span_as_doc
from .meta import ANNOTATIONS_KEY, PROVENANCE_KEY, get_annotations, get_provenance
from .report import ConversionReport

# Blank lines (one or more empty lines), tolerating CRLF line ends.
DEFAULT_SPLIT_REGEX = r"\r?\n(?:\r?\n)+"


def check_split_regex(split_regex: Optional[str], name: str = "split_regex") -> None:
    """ValueError unless ``split_regex`` is None, empty or a valid regular expression
    (``name``: how the caller's user knows the option)."""
    if split_regex:
        try:
            re.compile(split_regex)
        except re.error as err:
            raise ValueError(
                f"{name} {split_regex!r} is not a valid regular expression: {err}"
            ) from None


def _blocked_boundaries(doc: Doc) -> List[bool]:
    """blocked[i] is True when token boundary i (before token i) lies inside some span."""
    n = len(doc)
    delta = [0] * (n + 2)
    spans = [(s.start, s.end) for group in doc.spans.values() for s in group]
    spans += [(e.start, e.end) for e in doc.ents]
    for start, end in spans:
        if end - start >= 2:
            delta[start + 1] += 1
            delta[end] -= 1
    blocked, depth = [], 0
    for i in range(n + 1):
        depth += delta[i]
        blocked.append(depth > 0)
    return blocked


def _segments(doc: Doc, regex: Optional[Pattern], allowed: List[int]) -> List[Tuple[int, int]]:
    """Token ranges between the regex matches that fall on an allowed boundary."""
    n = len(doc)
    cuts = set()
    if regex is not None:
        starts = [t.idx for t in doc]
        allowed_set = set(allowed)
        for match in regex.finditer(doc.text):
            i = bisect_left(starts, match.end())
            if i in allowed_set:
                cuts.add(i)
    bounds = [0] + sorted(cuts) + [n]
    segments = list(zip(bounds, bounds[1:]))
    # A segment made only of whitespace tokens is not worth a part of its own.
    merged: List[Tuple[int, int]] = []
    for a, b in segments:
        if merged and all(t.is_space for t in doc[a:b]):
            merged[-1] = (merged[-1][0], b)
        elif merged and all(t.is_space for t in doc[merged[-1][0]:merged[-1][1]]):
            merged[-1] = (merged[-1][0], b)
        else:
            merged.append((a, b))
    return merged


def _pack(
    segments: List[Tuple[int, int]], allowed: List[int], max_length: int
) -> List[Tuple[int, int]]:
    parts: List[Tuple[int, int]] = []
    cur_a = cur_b = segments[0][0]
    for a, b in segments:
        if b - a > max_length:
            if cur_b > cur_a:
                parts.append((cur_a, cur_b))
            start = a
            while b - start > max_length:
                # last allowed boundary in (start, start + max_length]
                k = bisect_right(allowed, start + max_length) - 1
                if k >= 0 and allowed[k] > start:
                    cut = allowed[k]
                else:  # no safe cut within the limit: first one after it
                    k = bisect_right(allowed, start + max_length)
                    cut = allowed[k] if k < len(allowed) and allowed[k] < b else b
                if cut >= b:
                    break
                parts.append((start, cut))
                start = cut
            cur_a, cur_b = start, b
        elif cur_b == cur_a or (cur_b - cur_a) + (b - a) <= max_length:
            cur_b = b
        else:
            parts.append((cur_a, cur_b))
            cur_a, cur_b = a, b
    if cur_b > cur_a:
        parts.append((cur_a, cur_b))
    return parts


def split_doc(
    doc: Doc,
    split_regex: Union[str, Pattern, None] = DEFAULT_SPLIT_REGEX,
    max_length: int = 0,
    *,
    report: Optional[ConversionReport] = None,
) -> List[Doc]:
    """Split ``doc`` into parts of at most ``max_length`` tokens (0: no limit, no split).

    Segments end after each match of ``split_regex`` (default: blank lines); a match inside
    a span does not cut. Consecutive segments are packed into parts of up to ``max_length``
    tokens. A segment longer than that is cut at the last token boundary within the limit
    that no span crosses; if there is none, the part is left longer (counted in
    ``report.over_length``). Span groups (with list attrs aligned to their spans, e.g.
    ``"scores"``), ``doc.ents``, token annotations, span ids and the standoff records
    travel with their part; each part's provenance gives its offset in the source text.
    Returns ``[doc]`` unchanged when no split is needed.
    """
    n = len(doc)
    if max_length <= 0 or n <= max_length:
        return [doc]
    regex = re.compile(split_regex) if isinstance(split_regex, str) and split_regex else (
        split_regex or None
    )
    blocked = _blocked_boundaries(doc)
    allowed = [i for i in range(1, n) if not blocked[i]]
    ranges = _pack(_segments(doc, regex, allowed), allowed, max_length)
    if report is not None:
        report.over_length += sum(1 for a, b in ranges if b - a > max_length)
    if len(ranges) == 1:
        return [doc]
    return _make_parts(doc, ranges)


def split_text(
    nlp: Any, text: str, source: str, split_regex: Optional[str], max_length: int
) -> List[Tuple[str, Dict[str, Any]]]:
    """Raw text -> ``(part text, provenance dict)`` for each part, as ``predict`` and the Spark
    engine feed ``nlp.pipe(..., as_tuples=True)``: one part when ``max_length <= 0``, else
    the parts of ``split_doc`` (provenance gives each part's offset in ``text``)."""
    from .meta import Provenance, set_provenance

    n = len(text)
    if max_length <= 0:
        return [(text, Provenance(source, 0, n, 0, 1).to_dict())]
    doc = nlp.tokenizer(text) if n > nlp.max_length else nlp.make_doc(text)
    set_provenance(doc, source, 0, n)
    parts = split_doc(doc, split_regex or None, max_length)
    provenances = [get_provenance(part) for part in parts]  # split_doc sets one on every part
    return [(part.text, prov.to_dict()) for part, prov in zip(parts, provenances) if prov]


def _slice_attrs(attrs: Dict[str, Any], size: int, keep: Sequence[int]) -> Dict[str, Any]:
    out = {}
    for key, value in attrs.items():
        if isinstance(value, (list, tuple)) and len(value) == size:
            out[key] = [value[i] for i in keep]
        else:
            out[key] = copy.deepcopy(value)
    return out


def _slice_docs(doc: Doc, ranges: List[Tuple[int, int]]) -> List[Doc]:
    """One Doc per token range, with the token annotations (and entities) of that range.

    ``Span.as_doc`` reads the whole Doc again (its array and all its entities) for every
    part, which makes splitting quadratic when a document has many parts; here the array is
    read once, so the work is linear in the document length. Cuts never cross an entity.
    Docs with a dependency parse keep ``as_doc``, which re-roots heads outside the part.
    """
    array_head: Any = doc_array_attrs()
    array: Any = doc.to_array(array_head)
    if doc.has_annotation("DEP"):
        return [span_as_doc(doc[a:b], array_head, array) for a, b in ranges]
    iob_col = array_head.index(ENT_IOB)
    parts = []
    for a, b in ranges:
        tokens = doc[a:b]
        part = Doc(doc.vocab, words=[t.text for t in tokens],
                   spaces=[bool(t.whitespace_) for t in tokens])
        rows = array[a:b].copy()
        if len(rows) and rows[0][iob_col] == 1:  # an entity cannot start with I
            rows[0][iob_col] = 3
        part.from_array(array_head, rows)
        part.user_hooks = doc.user_hooks
        part.user_span_hooks = doc.user_span_hooks
        part.user_token_hooks = doc.user_token_hooks
        if doc.tensor is not None and len(doc.tensor):
            part.tensor = doc.tensor[a:b]
        parts.append(part)
    return parts


def _make_parts(doc: Doc, ranges: List[Tuple[int, int]]) -> List[Doc]:
    starts = [a for a, _ in ranges]
    n = len(doc)

    def part_of(token_i: int) -> int:
        return max(bisect_right(starts, min(token_i, n - 1)) - 1, 0)

    prov = get_provenance(doc)
    annotations = get_annotations(doc)
    parts = _slice_docs(doc, ranges)
    ids_per_part: List[set] = [set() for _ in parts]
    for key, group in doc.spans.items():
        members: List[List[int]] = [[] for _ in parts]
        for index, span in enumerate(group):
            members[part_of(span.start)].append(index)
        for k, (part, (a, _)) in enumerate(zip(parts, ranges)):
            spans = []
            for index in members[k]:
                span = group[index]
                spans.append(
                    Span(part, span.start - a, span.end - a, label=span.label,
                         kb_id=span.kb_id, span_id=span.id)
                )
                if span.id_:
                    ids_per_part[k].add(span.id_)
            attrs = _slice_attrs(group.attrs, len(group), members[k])
            part.spans[key] = SpanGroup(part, name=key, attrs=attrs, spans=spans)
    for ent in doc.ents:
        if ent.id_:
            ids_per_part[part_of(ent.start)].add(ent.id_)
    # user data: plain keys and Doc-level extension values; span/token extensions are not
    # carried (their keys are character offsets of the original Doc).
    for key, value in doc.user_data.items():
        if key in (PROVENANCE_KEY, ANNOTATIONS_KEY):
            continue
        if isinstance(key, tuple) and not (len(key) == 4 and key[2] is None):
            continue
        for part in parts:
            part.user_data[key] = copy.deepcopy(value)
    entity_part = {tid: k for k, ids in enumerate(ids_per_part) for tid in ids}
    others: List[List[Any]] = [[] for _ in parts]
    for line in annotations["other_lines"]:
        refs = line[3] if len(line) > 3 else ()
        k = next((entity_part[r] for r in refs if r in entity_part), 0)
        others[k].append(list(line))
    records = annotations["entities"]
    entities_per_part = [
        {tid: copy.deepcopy(records[tid]) for tid in sorted(ids) if tid in records}
        for ids in ids_per_part
    ]
    base_offset = prov.offset if prov else 0
    for k, (part, (a, _)) in enumerate(zip(parts, ranges)):
        entities = entities_per_part[k]
        if entities or others[k]:
            part.user_data[ANNOTATIONS_KEY] = {"entities": entities, "other_lines": others[k]}
        if prov is not None:
            resplit = prov.n_parts > 1
            part.user_data[PROVENANCE_KEY] = {
                "source": prov.source,
                "offset": base_offset + doc[a].idx,
                "length": prov.length,
                "part": prov.part if resplit else k,
                "n_parts": prov.n_parts if resplit else len(parts),
            }
    return parts


def allow_length(nlp, texts: List[str]) -> Optional[int]:
    """Raise ``nlp.max_length`` so that every text can be processed; returns the new value
    when it had to change (the caller says so)."""
    longest = max((len(t) for t in texts), default=0)
    if longest > nlp.max_length:
        nlp.max_length = longest + 1
        return nlp.max_length
    return None
