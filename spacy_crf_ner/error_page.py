"""An HTML page of a model's errors: per document, gold and predicted entities side by side.

``spacy evaluate --displacy-path`` renders only spaCy's own ``ner`` and ``spancat``; this
page is its counterpart for any span getter (``python -m spacy_crf_ner evaluate --html``).
Each side is drawn by displaCy's span renderer, so overlapping and nested entities stack
as separate lines under the tokens. Every entity is coloured by its category, the one
:func:`spacy_crf_ner.evaluation.error_analysis` counts it under:

* gold side: ``correct``, ``missed`` (nothing predicted overlaps it), or the error of the
  prediction that overlaps it (``label``, ``boundary``, ``label_and_boundary``);
* predicted side: ``correct``, ``spurious`` (no gold entity overlaps it), ``label``,
  ``boundary``, ``label_and_boundary``.

Under the two sides, a list names every error with its text and offsets. The markup
carries the categories as data attributes (``data-kind``, ``data-side``, ``data-label``),
so the page can be checked (and styled) without parsing the drawing.
"""
import html
from collections import Counter
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

from spacy import displacy
from spacy.tokens import Doc

from .data.meta import get_provenance
from .evaluation import SpanGetter, check_docs, classify_entities, get_entities

# Colour of each category (background of the span line and of its label).
KIND_COLORS: Dict[str, str] = {
    "correct": "#b5e6b5",
    "missed": "#ff8080",
    "spurious": "#ffb347",
    "boundary": "#f5e663",
    "label": "#8fc3ff",
    "label_and_boundary": "#d9a6ff",
}
KIND_NAMES = {"label_and_boundary": "label + boundary"}

Entity = Tuple[int, int, str]

STYLE = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 1.5em; }
.legend span.swatch { padding: 2px 8px; margin-right: 6px; border-radius: 3px; font-size: 0.85em; }
section.doc { border-top: 1px solid #ccc; padding-top: 0.5em; margin-top: 1em; }
.pair { display: flex; gap: 2em; }
.side { flex: 1 1 0; min-width: 0; }
/* long documents and long unbroken words (URLs, codes) wrap inside their side: never a
   horizontal scroll, whatever the window's width */
.side .spans, ul.errors li { overflow-wrap: anywhere; word-break: break-word; }
.side h3 { margin: 0.2em 0; font-size: 1em; color: #444; }
ul.errors { font-size: 0.9em; }
ul.errors li span.kind { padding: 1px 6px; border-radius: 3px; margin-right: 4px; }
/* displaCy's span labels are absolutely placed inside their token: keep them on one line */
.spans span[style*="z-index: 10"] { white-space: nowrap; }
"""


def _kind_label(label: str, kind: str) -> str:
    return f"{html.escape(label)} · {KIND_NAMES.get(kind, kind)}"


def _side_markup(doc: Doc, ents: List[Entity], kinds: List[str]) -> str:
    """One side of a document drawn by displaCy's span renderer (manual data)."""
    spans, colors = [], {}
    for (start, end, label), kind in zip(ents, kinds):
        span = doc.char_span(start, end, alignment_mode="expand")
        if span is None:  # offsets outside the text: cannot be drawn (listed below it)
            continue
        shown = _kind_label(label, kind)
        colors[shown] = KIND_COLORS[kind]
        spans.append({"start_token": span.start, "end_token": span.end, "label": shown,
                      "kb_id": "", "kb_url": "#"})
    data = {"text": doc.text, "tokens": [t.text for t in doc], "spans": spans}
    return displacy.render([data], style="span", manual=True, page=False, jupyter=False,
                           options={"colors": colors})


def _error_item(text: str, ent: Entity, kind: str, side: str) -> str:
    start, end, label = ent
    return (
        f'<li data-kind="{kind}" data-side="{side}" data-label="{html.escape(label)}" '
        f'data-start="{start}" data-end="{end}"><span class="kind" style="background: '
        f'{KIND_COLORS[kind]}">{KIND_NAMES.get(kind, kind)}</span>{side} '
        f'<b>{html.escape(label)}</b> “{html.escape(text[start:end])}” [{start}, {end})</li>'
    )


def _doc_section(index: int, gold_doc: Doc, pred_doc: Doc, gold: List[Entity],
                 pred: List[Entity]) -> Tuple[str, Counter]:
    """The section of one document and the count of each error kind (both sides)."""
    gold_kinds, pred_kinds = classify_entities(gold, pred)
    items = [_error_item(gold_doc.text, e, k, "gold") for e, k in zip(gold, gold_kinds)
             if k != "correct"]
    items += [_error_item(pred_doc.text, e, k, "predicted") for e, k in zip(pred, pred_kinds)
              if k != "correct"]
    prov = get_provenance(gold_doc)
    title = f"Document {index}" + (f" — {html.escape(prov.source)}" if prov is not None else "")
    errors = f'<ul class="errors">{"".join(items)}</ul>' if items else "<p>No errors.</p>"
    section = (
        f'<section class="doc" id="doc-{index}" data-doc="{index}" data-errors="{len(items)}">'
        f"<h2>{title}</h2><div class=\"pair\">"
        f'<div class="side" data-side="gold"><h3>Gold ({len(gold)})</h3>'
        f"{_side_markup(gold_doc, gold, gold_kinds)}</div>"
        f'<div class="side" data-side="predicted"><h3>Predicted ({len(pred)})</h3>'
        f"{_side_markup(pred_doc, pred, pred_kinds)}</div></div>{errors}</section>"
    )
    return section, Counter(k for k in gold_kinds + pred_kinds if k != "correct")


def render_error_page(
    gold_docs: Sequence[Doc],
    pred_docs: Sequence[Doc],
    gold_getter: SpanGetter = "sc",
    pred_getter: SpanGetter = "sc",
    *,
    title: str = "Entity errors",
    only_errors: bool = False,
) -> str:
    """The whole HTML page for aligned gold and predicted docs (same texts, in order).

    ``only_errors``: leave out the documents where every entity is correct.
    """
    gold_docs, pred_docs = list(gold_docs), list(pred_docs)
    check_docs(gold_docs, pred_docs)
    sections, with_errors = [], []
    totals: Counter = Counter()
    for i, (g_doc, p_doc) in enumerate(zip(gold_docs, pred_docs)):
        gold, pred = get_entities(g_doc, gold_getter), get_entities(p_doc, pred_getter)
        section, errors = _doc_section(i, g_doc, p_doc, gold, pred)
        totals.update(errors)
        if errors:
            with_errors.append(i)
        if errors or not only_errors:
            sections.append(section)
    legend = "".join(
        f'<span class="swatch" data-kind="{k}" style="background: {c}">'
        f"{KIND_NAMES.get(k, k)}{'' if k == 'correct' else f': {totals[k]}'}</span>"
        for k, c in KIND_COLORS.items()
    )
    jump = ", ".join(f'<a href="#doc-{i}">{i}</a>' for i in with_errors) or "none"
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>"
        f'<p class="legend">{legend}</p>'
        f'<p class="summary">{len(gold_docs)} documents, {len(with_errors)} with errors: '
        f"{jump}</p>{''.join(sections)}</body></html>\n"
    )


def write_error_page(path: Path, gold_docs: Sequence[Doc], pred_docs: Sequence[Doc],
                     gold_getter: SpanGetter = "sc", pred_getter: SpanGetter = "sc",
                     *, title: str = "Entity errors", only_errors: bool = False) -> int:
    """Write :func:`render_error_page` to ``path``; return the number of bytes written."""
    page = render_error_page(gold_docs, pred_docs, gold_getter, pred_getter, title=title,
                             only_errors=only_errors)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return Path(path).write_text(page, encoding="utf8")
