"""The HTML error page: every entity coloured by its category, checked in the markup and in
a real headless browser (Debian's ``chromium``: its DOM and a screenshot)."""
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
import spacy

from spacy_crf_ner.error_page import KIND_COLORS, render_error_page, write_error_page
from spacy_crf_ner.evaluation import error_analysis

TEXT = ("Known chronic kidney disease and carcinoma of the left breast ; takes <b> tamoxifen </b> "
        "and aspirin daily .")


def span(text, label, occurrence=0):
    start = -1
    for _ in range(occurrence + 1):
        start = TEXT.index(text, start + 1)
    return (start, start + len(text), label)


# Gold: nested DISORDER (same label), ANATOMY inside a DISORDER, two drugs.
GOLD = [span("chronic kidney disease", "DISORDER"), span("kidney disease", "DISORDER"),
        span("carcinoma of the left breast", "DISORDER"), span("left breast", "ANATOMY"),
        span("tamoxifen", "DRUG"), span("aspirin", "DRUG")]
PRED = [span("chronic kidney disease", "DISORDER"),   # correct
        span("kidney", "ANATOMY"),                     # label_and_boundary (inside DISORDERs)
        span("carcinoma of the left breast", "DISORDER"),  # correct
        span("breast", "ANATOMY"),                     # boundary
        span("tamoxifen", "DISORDER"),                 # label
        span("daily", "DRUG")]                         # spurious; gold aspirin is missed
EXPECTED_ITEMS = sorted([
    # the nested gold span overlaps the predicted outer one, same label: a boundary error
    ("gold", "kidney disease", "boundary"), ("gold", "left breast", "boundary"),
    ("gold", "tamoxifen", "label"), ("gold", "aspirin", "missed"),
    ("predicted", "kidney", "label_and_boundary"), ("predicted", "breast", "boundary"),
    ("predicted", "tamoxifen", "label"), ("predicted", "daily", "spurious"),
])


def make_docs():
    nlp = spacy.blank("en")

    def doc(text, ents):
        d = nlp(text)
        d.spans["sc"] = [d.char_span(s, e, label=label) for s, e, label in ents]
        return d

    clean = "Nothing to find here ."
    return [doc(TEXT, GOLD), doc(clean, [])], [doc(TEXT, PRED), doc(clean, [])]


class PageReader(HTMLParser):
    """The error list items, the doc sections and displaCy's span labels of a page."""

    def __init__(self):
        super().__init__()
        self.items, self.sections, self.labels, self.bold_tags = [], [], [], 0
        self._item, self._label = None, None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "li" and "data-kind" in attrs:
            self._item = [attrs["data-side"], attrs["data-kind"], int(attrs["data-start"]),
                          int(attrs["data-end"])]
        if tag == "section":
            self.sections.append((int(attrs["data-doc"]), int(attrs["data-errors"])))
        if tag == "span" and "z-index: 10" in attrs.get("style", ""):
            self._label = []
        if tag == "b":
            self.bold_tags += 1

    def handle_data(self, data):
        if self._label is not None:
            self._label.append(data)

    def handle_endtag(self, tag):
        if tag == "li" and self._item is not None:
            side, kind, start, end = self._item
            self.items.append((side, TEXT[start:end], kind))
            self._item = None
        if tag == "span" and self._label is not None:
            self.labels.append(" ".join("".join(self._label).split()))
            self._label = None


def read(page: str) -> PageReader:
    reader = PageReader()
    reader.feed(page)
    return reader


def test_page_shows_every_entity_by_kind_with_overlaps_and_nesting():
    gold_docs, pred_docs = make_docs()
    page = render_error_page(gold_docs, pred_docs, title="t")
    reader = read(page)
    assert sorted(reader.items) == EXPECTED_ITEMS
    assert reader.sections == [(0, 8), (1, 0)]
    # displaCy drew one labelled line per entity, nested and overlapping ones included.
    assert sorted(reader.labels) == sorted(
        [f"{label} · {kind}" for label, kind in [
            ("DISORDER", "correct"), ("DISORDER", "boundary"),
            ("DISORDER", "correct"), ("ANATOMY", "boundary"), ("DRUG", "label"),
            ("DRUG", "missed"),  # gold side
            ("DISORDER", "correct"), ("ANATOMY", "label + boundary"), ("DISORDER", "correct"),
            ("ANATOMY", "boundary"), ("DISORDER", "label"), ("DRUG", "spurious")]])
    # The counts agree with the error analysis the evaluate command prints.
    errors = error_analysis(gold_docs, pred_docs)
    for side, key in (("gold", "gold"), ("predicted", "pred")):
        for kind, n in errors[key].items():
            if kind != "correct":
                assert sum(1 for s, _, k in reader.items if (s, k) == (side, kind)) == n
    # The document's own "<b>" is text, not markup: only the list's labels are bold.
    assert reader.bold_tags == len(EXPECTED_ITEMS)


def test_page_can_leave_out_documents_without_errors():
    gold_docs, pred_docs = make_docs()
    reader = read(render_error_page(gold_docs, pred_docs, only_errors=True))
    assert reader.sections == [(0, 8)]


def test_misaligned_docs_are_refused():
    gold_docs, pred_docs = make_docs()
    with pytest.raises(ValueError, match="texts differ"):
        render_error_page(gold_docs, pred_docs[::-1])


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    assert path, "the browser check needs Debian's chromium (apt-get install chromium; .ci/install does it)"
    return path


def run_chromium(*args) -> subprocess.CompletedProcess:
    cmd = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
           "--user-data-dir=" + str(Path(args[-1].replace("file://", "")).parent / "profile"),
           *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


# Added to a copy of the page in the browser test only: writes each side's and each displaCy
# label's box (left, top, width, height in CSS pixels, as laid out) into the DOM.
MEASURE = """<script>
for (const el of document.querySelectorAll('.side, .side span[style*="z-index: 10"]')) {
  const r = el.getBoundingClientRect();
  el.setAttribute('data-box', [r.left, r.top, r.width, r.height].join(','));
}
</script>"""


class BoxReader(HTMLParser):
    """Boxes of the sides and of the labels (with their text), in document order."""

    def __init__(self):
        super().__init__()
        self.sides, self.labels, self._label = [], [], None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "data-box" in attrs:
            box = tuple(float(v) for v in attrs["data-box"].split(","))
            if tag == "div":
                self.sides.append((attrs["data-side"], box))
            else:
                self._label = (box, [])

    def handle_data(self, data):
        if self._label is not None:
            self._label[1].append(data)

    def handle_endtag(self, tag):
        if tag == "span" and self._label is not None:
            self.labels.append((" ".join("".join(self._label[1]).split()), self._label[0]))
            self._label = None


@pytest.mark.slow
def test_page_in_headless_chromium(tmp_path):
    gold_docs, pred_docs = make_docs()
    page = tmp_path / "errors.html"
    write_error_page(page, gold_docs, pred_docs, title="Errors")
    url = page.as_uri()

    # The DOM the browser built from the page: same entities, same kinds, same drawing.
    dom = read(run_chromium("--dump-dom", url).stdout)
    assert sorted(dom.items) == EXPECTED_ITEMS
    assert dom.sections == [(0, 8), (1, 0)]
    assert len(dom.labels) == 12 and dom.bold_tags == len(EXPECTED_ITEMS)

    # The layout: gold and predicted side by side, every label drawn on one line inside its
    # side, and nested or overlapping entities stacked on separate lines.
    measured = tmp_path / "measured.html"
    measured.write_text(page.read_text().replace("</body>", MEASURE + "</body>"))
    boxes = BoxReader()
    boxes.feed(run_chromium("--window-size=1400,800", "--dump-dom", measured.as_uri()).stdout)
    (gold_side, gold_box), (pred_side, pred_box) = boxes.sides[:2]
    assert (gold_side, pred_side) == ("gold", "predicted")
    assert gold_box[0] + gold_box[2] <= pred_box[0] and abs(gold_box[1] - pred_box[1]) < 1
    doc0 = boxes.labels[:12]
    for text, (left, top, width, height) in doc0:
        assert width > 0 and 0 < height < 20, (text, width, height)  # one line, not wrapped
    for side_box, labels in ((gold_box, doc0[:6]), (pred_box, doc0[6:])):
        for text, (left, top, width, height) in labels:
            assert side_box[0] - 1 <= left < side_box[0] + side_box[2], text
    gold_tops = {text: top for text, (left, top, w, h) in doc0[:6]}
    # "chronic kidney disease" (correct) holds "kidney disease" (boundary): two lines.
    assert gold_tops["DISORDER · boundary"] > gold_tops["DISORDER · correct"]

    # The picture: every kind's colour is on screen (span lines, labels, legend, list).
    shot = tmp_path / "errors.png"
    run_chromium("--window-size=1400,800", f"--screenshot={shot}", url)
    from PIL import Image

    pixels = Image.open(shot).convert("RGB")
    counts = {rgb: n for n, rgb in pixels.getcolors(maxcolors=1 << 20)}
    for kind, color in KIND_COLORS.items():
        rgb = tuple(int(color[i:i + 2], 16) for i in (1, 3, 5))
        assert counts.get(rgb, 0) > 500, (kind, color, counts.get(rgb, 0))


def test_long_documents_never_scroll_sideways(tmp_path):
    """A long document with a long unbroken word (a URL) wraps inside its side: the page is
    no wider than the window at 1,300 and at 800 pixels (issue 26)."""
    nlp = spacy.blank("en")
    text = " ".join([TEXT] * 30) + " http://example.org/" + "x" * 300 + " ."

    def doc(ents):
        d = nlp(text)
        d.spans["sc"] = [d.char_span(s, e, label=label) for s, e, label in ents]
        return d

    page = tmp_path / "errors.html"
    write_error_page(page, [doc(GOLD)], [doc(PRED)], title="Errors")
    measured = tmp_path / "measured.html"
    measured.write_text(page.read_text().replace("</body>", (
        "<script>document.body.setAttribute('data-widths', "
        "[document.documentElement.scrollWidth, window.innerWidth].join(','))</script></body>")))
    for width in (1300, 800):
        dom = run_chromium(f"--window-size={width},900", "--dump-dom", measured.as_uri()).stdout
        scroll, inner = map(int, re.search(r'data-widths="(\d+),(\d+)"', dom).group(1, 2))
        assert inner == width and scroll <= inner, (width, scroll)
