"""PDF loader (PyMuPDF): paragraphs with 1-based page numbers, headings by font size, table rows.

PDF text comes as positioned lines. The loader re-joins lines of one paragraph (directly in
Chinese, with a space in English, re-joining hyphenated words), also when the writer put each
line in its own block or a page break cut a sentence; it drops page numbers and running
headers/footers, reads cells that share a baseline as table rows, and calls short lines set
larger (or bold) than the body text headings, the largest size being level 1.

Pages without a text layer (scans) are rendered (``ingest.ocr_dpi``) and read by OCR
(``ingest.ocr_engine``, the ``ocr`` extra), page by page, so a PDF with some scanned pages
keeps the text layer of the others. OCR'd lines become the same positioned lines (their box
height stands in for the font size), so paragraphs, table rows, headings and running heads
are found the same way; each block keeps its OCR confidence, and the loader records which
pages were OCR'd. At most ``ingest.ocr_max_pages`` pages per document are OCR'd (about 8 s a
page on one core); the rest are skipped with a warning.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from knowledge.core.errors import IngestError, KBError, MissingExtraError
from knowledge.loaders.base import Loader, register_loader
from knowledge.text_utils import (classify_text, ends_paragraph, ends_sentence, is_cjk, join_lines,
                                  starts_new_block)
from knowledge.core.types import Block
from config.settings import get_settings
from knowledge.loaders.sheet import find_header_row, row_text
from knowledge.ocr import group_rows
from knowledge.ocr import get_ocr_engine, render_dpi
from statistics import median
from tqdm.auto import tqdm

# Page furniture that carries no content: "3", "- 3 -", "第 3 页", "第3页 共10页", "Page 3 of 10".
_PAGE_NUMBER_RE = re.compile(
    r"^(?:[-—–\s]*\d+[-—–\s]*|第\s*\d+\s*页(?:\s*[,，/]?\s*共\s*\d+\s*页)?|page\s+\d+(?:\s+of\s+\d+)?)$",
    re.IGNORECASE,
)
_HEADING_RATIO = 1.15      # a block at least this much larger than body text is a heading
# OCR box heights vary with the glyphs of a line (brackets, "%", digits) by up to ~15%, so an
# OCR'd line counts as set larger than the body only from this ratio of the OCR body height.
_OCR_LARGER = 1.2
_BOLD_FLAG = 16            # PyMuPDF span flag for bold fonts
_SHORT_LINE_EMS = 3.0      # a Chinese line ending this many characters short of the column ended on purpose

BBox = tuple[float, float, float, float]   # x0, y0, x1, y1


# Pages read from one PDF; a larger one is refused, so one upload cannot hold a build for hours.
MAX_PAGES = 2000


@dataclass
class _RawBlock:
    lines: list[str]
    size: float            # the largest font size in the block
    bold: bool             # every span bold
    page: int
    bbox: BBox = (0.0, 0.0, 0.0, 0.0)
    cells: list[str] = field(default_factory=list)   # set for a table row
    margin: bool = False   # lies in the top or bottom tenth of the page (where running heads sit)
    ocr: list[tuple[float, int]] = field(default_factory=list)  # (confidence, characters) per OCR'd line

    @property
    def confidence(self) -> float | None:
        """Character-weighted mean OCR confidence (None: text-layer text)."""
        chars = sum(n for _, n in self.ocr)
        return round(sum(c * n for c, n in self.ocr) / chars, 4) if chars else None

    def extend(self, other: "_RawBlock") -> None:
        self.lines.extend(other.lines)
        self.ocr.extend(other.ocr)
        self.bold = self.bold and other.bold
        if other.page == self.page:
            x0, y0, x1, y1 = self.bbox
            self.bbox = (min(x0, other.bbox[0]), y0, max(x1, other.bbox[2]), max(y1, other.bbox[3]))


@dataclass
class _Line:
    text: str
    size: float
    bold: bool
    bbox: BBox


class PdfLoader(Loader):
    """Reads a PDF: the text layer where a page has one, OCR where it has none."""

    content = "pdf"

    def load(self, path: Path) -> list[Block]:
        import pymupdf  # deferred: pymupdf, PDF files only

        try:
            doc = pymupdf.open(path)
        except Exception as exc:  # PyMuPDF raises FileDataError / RuntimeError for damage
            raise IngestError(path, f"corrupt PDF ({exc})") from exc
        with doc:
            if doc.needs_pass:
                raise IngestError(path, "encrypted PDF (a password is required to read it)")
            if doc.page_count == 0:
                raise IngestError(path, "PDF has no pages (corrupt?)")
            if doc.page_count > MAX_PAGES:
                raise IngestError(path, f"PDF has {doc.page_count} pages; the limit is {MAX_PAGES} "
                                        "(split it into smaller documents)")
            self.doc_title = (doc.metadata or {}).get("title") or ""
            ocr = _PageOcr(path, self._ingest_options(), self.progress)
            raw, empty_pages = _read_pages(doc, pymupdf, ocr)
        self.ocr_pages = dict(ocr.pages)  # the build report names them (a note, not a warning)
        for number, dpi in sorted(ocr.lowered.items()):
            self.warn(f"{path.name}: page {number} is too large to render at ingest.ocr_dpi="
                      f"{ocr.options.ocr_dpi} within ingest.max_render_pixels={ocr.options.max_render_pixels}; "
                      f"it was read by OCR at {dpi} dpi")
        if not raw:
            raise IngestError(path, f"no text layer (scanned PDF?) in any of its {len(empty_pages)} "
                                    f"pages{ocr.why_not}")
        if empty_pages:
            self.warn(f"{path.name}: page(s) {_page_list(empty_pages)} have no extractable "
                      f"text (scanned images?) and were skipped{ocr.why_not}")
        return _to_blocks(raw)

    def _ingest_options(self):  # type: ignore[no-untyped-def]
        if self.options is not None:
            return self.options

        return get_settings().ingest


def _page_list(pages) -> str:  # type: ignore[no-untyped-def]
    """``1, 3, 4``: page numbers for a message."""
    return ", ".join(map(str, sorted(pages)))


class _PageOcr:
    """OCR of one document's scanned pages, within the per-document page limit."""

    def __init__(self, path: Path, options, progress: bool):  # type: ignore[no-untyped-def]
        self.path, self.options, self.progress = path, options, progress
        self.pages: dict[int, float] = {}      # page -> mean confidence
        self.over_limit: list[int] = []
        self.no_text: list[int] = []           # OCR'd, but nothing recognised
        self.lowered: dict[int, int] = {}      # page -> the dpi it was rendered at (pixel cap)
        self.unavailable = "" if options.ocr else "OCR is switched off (ingest.ocr)"
        self.engine_name = options.ocr_engine
        self._engine = None
        self._bar = None
        self._confidence: list[tuple[float, int]] = []
        self.expected = 0                      # pages without a text layer (for the progress bar)

    @property
    def why_not(self) -> str:
        """Why scanned pages were not read (for messages; empty when they all were)."""
        if self.unavailable:
            return f"; {self.unavailable}"
        reasons = []
        if self.no_text:
            reasons.append(f"OCR found no text on page(s) {_page_list(self.no_text)}")
        if self.over_limit:
            reasons.append(f"OCR stops after ingest.ocr_max_pages={self.options.ocr_max_pages} pages per "
                           f"document (not read: {_page_list(self.over_limit)})")
        return "".join(f"; {r}" for r in reasons)

    @property
    def mean_confidence(self) -> float:
        chars = sum(n for _, n in self._confidence)
        return sum(c * n for c, n in self._confidence) / chars if chars else 0.0

    def read(self, page, number: int, page_count: int) -> list[_RawBlock]:  # type: ignore[no-untyped-def]
        """The page's lines by OCR (empty when OCR is off, missing or over the limit)."""
        if self.unavailable:
            return []
        if not page.get_images(full=False) and not page.get_drawings():
            return []  # a blank page: nothing to read (a scan is an image)
        if len(self.pages) + len(self.no_text) >= self.options.ocr_max_pages:
            self.over_limit.append(number)
            return []
        engine = self._get_engine()
        if engine is None:
            return []
        if self._bar is None and self.progress:
            self._bar = tqdm(desc=f"OCR {self.path.name}", unit="page",
                             total=min(self.expected or page_count, self.options.ocr_max_pages))
        dpi = render_dpi(page.rect.width, page.rect.height, self.options.ocr_dpi, self.options.max_render_pixels)
        if dpi < self.options.ocr_dpi:
            self.lowered[number] = dpi
        raw, confidence = ocr_page(page, number, engine, dpi, self.options.ocr_min_confidence,
                                   self.options.max_render_pixels)
        if raw:
            self.pages[number] = round(confidence, 4)
            self._confidence.extend(c for b in raw for c in b.ocr)
        else:
            self.no_text.append(number)
        if self._bar is not None:
            self._bar.update(1)
        return raw

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()

    def _get_engine(self):  # type: ignore[no-untyped-def]
        if self._engine is None:
            try:
                self._engine = get_ocr_engine(self.engine_name, self.options.ocr_threads)
            except MissingExtraError as exc:
                self.unavailable = f"to read scanned pages, {exc}"
            except KBError as exc:
                self.unavailable = str(exc)
        return self._engine


def ocr_page(page, number: int, engine, dpi: int, min_confidence: float,  # type: ignore[no-untyped-def]
             max_pixels: int | None = None) -> tuple[list[_RawBlock], float]:
    """Render one page, OCR it and return its rows as positioned lines (PDF points), with the
    page's character-weighted mean confidence. Boxes below ``min_confidence`` are dropped.
    The image has at most ``max_pixels`` pixels: a larger page is rendered at a lower ``dpi``."""

    if max_pixels is not None:
        dpi = render_dpi(page.rect.width, page.rect.height, dpi, max_pixels)
    png = page.get_pixmap(dpi=dpi).tobytes("png")
    boxes = [b for b in engine.recognize(png) if b.text.strip() and b.score >= min_confidence]
    scale = 72.0 / dpi
    raw: list[_RawBlock] = []
    for row in group_rows(boxes):
        cells = [_join_segment(seg) for seg in _row_segments(row)]
        chars = sum(len(b.text) for b in row)
        confidence = sum(b.score * len(b.text) for b in row) / chars
        # The box height stands in for the font size; half points absorb the detector's jitter.
        size = round(median(b.height for b in row) * scale * 2) / 2
        bbox = (row[0].x0 * scale, min(b.y0 for b in row) * scale,
                max(b.x1 for b in row) * scale, max(b.y1 for b in row) * scale)
        if len(cells) > 1:
            raw.append(_RawBlock([" | ".join(cells)], size, False, number, bbox, cells, ocr=[(confidence, chars)]))
        elif not _PAGE_NUMBER_RE.match(cells[0]):
            raw.append(_RawBlock([cells[0]], size, False, number, bbox, ocr=[(confidence, chars)]))
    total = sum(len(b.text) for b in boxes)
    mean = sum(b.score * len(b.text) for b in boxes) / total if total else 0.0
    return raw, mean


def _row_segments(row):  # type: ignore[no-untyped-def]
    """Split one row of boxes where the gap is wider than 1.5 line heights: table cells."""
    segments = [[row[0]]]
    for box in row[1:]:
        prev = segments[-1][-1]
        if box.x0 - prev.x1 > 1.5 * max(prev.height, box.height):
            segments.append([box])
        else:
            segments[-1].append(box)
    return segments


def _join_segment(boxes) -> str:  # type: ignore[no-untyped-def]
    """Texts of adjacent boxes: a space only between two Latin letters or digits.

    >>> from knowledge.ocr import OcrBox
    >>> _join_segment([OcrBox("住宿费", 1, 0, 0, 9, 9), OcrBox("500元", 1, 10, 0, 19, 9)])
    '住宿费500元'
    """
    text = boxes[0].text.strip()
    for box in boxes[1:]:
        nxt = box.text.strip()
        sep = " " if text and nxt and text[-1].isascii() and text[-1].isalnum() and nxt[0].isascii() and nxt[0].isalnum() else ""
        text += sep + nxt
    return text


def _read_pages(doc, pymupdf, ocr: "_PageOcr | None" = None) -> tuple[list[_RawBlock], list[int]]:
    flags = pymupdf.TEXTFLAGS_DICT & ~pymupdf.TEXT_PRESERVE_IMAGES
    raw: list[_RawBlock] = []
    if ocr is not None and not ocr.unavailable:
        ocr.expected = sum(1 for page in doc if not page.get_text("text").strip())
    try:
        for number, page in enumerate(doc, start=1):
            _read_page(page, number, doc.page_count, flags, ocr, raw)
    finally:
        if ocr is not None:
            ocr.close()
    _scale_ocr_sizes(raw)
    raw = _drop_running_lines(raw, doc.page_count)
    pages_with_text = {b.page for b in raw}
    empty_pages = [n for n in range(1, doc.page_count + 1) if n not in pages_with_text]
    return raw, empty_pages


def _scale_ocr_sizes(raw: list[_RawBlock]) -> None:
    """Put OCR'd lines' sizes (box heights) on the text layer's font-size scale, so that body
    text, continuations across a page break and headings compare alike on mixed PDFs."""
    ocr = [b for b in raw if b.ocr]
    if not ocr:
        return
    text = [b for b in raw if not b.ocr]
    ocr_body = _body_size(ocr) or 1.0
    body = _body_size(text) if text else ocr_body
    for b in ocr:
        ratio = b.size / ocr_body
        b.size = round(body * (ratio if ratio >= _OCR_LARGER else 1.0), 1)


def _read_page(page, number: int, page_count: int, flags: int, ocr: "_PageOcr | None",  # type: ignore[no-untyped-def]
               raw: list[_RawBlock]) -> None:
    """Append one page's lines to ``raw``: its text layer, or OCR when it has none."""
    height = page.rect.height
    page_raw: list[_RawBlock] = []
    for block in page.get_text("dict", flags=flags, sort=True)["blocks"]:
        page_raw.extend(_raw_blocks(block, number))
    if not page_raw and ocr is not None:
        page_raw = ocr.read(page, number, page_count)
    for b in _join_cells(page_raw):
        b.margin = b.bbox[3] <= 0.1 * height or b.bbox[1] >= 0.9 * height
        raw.append(b)


def _lines(block: dict) -> list[_Line]:
    lines = []
    for line in block.get("lines", []):
        spans = [s for s in line.get("spans", []) if s.get("text", "").strip()]
        text = "".join(s["text"] for s in line.get("spans", [])).strip()
        if text and spans:
            bold = all(s["flags"] & _BOLD_FLAG or "bold" in s.get("font", "").lower() for s in spans)
            lines.append(_Line(text, max(s["size"] for s in spans), bold, tuple(line["bbox"])))
    return lines


def _same_row(a: BBox, b: BBox) -> bool:
    """Two lines on one baseline (their vertical extents mostly overlap)."""
    overlap = min(a[3], b[3]) - max(a[1], b[1])
    return overlap > 0.5 * min(a[3] - a[1], b[3] - b[1])


def _raw_blocks(block: dict, page: int) -> list[_RawBlock]:
    """The lines of one PyMuPDF text block. Lines side by side are table cells (one row);
    stacked lines are split where the font size changes (a heading set close above its
    paragraph often lands in the same block)."""
    rows: list[list[_Line]] = []
    for line in _lines(block):
        if rows and _same_row(rows[-1][0].bbox, line.bbox):
            rows[-1].append(line)
        else:
            rows.append([line])
    out: list[_RawBlock] = []
    for row in rows:
        if len(row) > 1:
            row.sort(key=lambda ln: ln.bbox[0])
            cells = [ln.text for ln in row]
            bbox = (row[0].bbox[0], min(ln.bbox[1] for ln in row),
                    row[-1].bbox[2], max(ln.bbox[3] for ln in row))
            out.append(_RawBlock([" | ".join(cells)], max(ln.size for ln in row), False, page, bbox, cells))
            continue
        line = _RawBlock([row[0].text], row[0].size, row[0].bold, page, row[0].bbox)
        prev = out[-1] if out else None
        if prev is not None and not prev.cells and abs(prev.size - line.size) <= 0.1 * max(line.size, 1.0):
            prev.extend(line)
        else:
            out.append(line)
    return [b for b in out if not (len(b.lines) == 1 and _PAGE_NUMBER_RE.match(b.lines[0]))]


def _join_cells(raw: list[_RawBlock]) -> list[_RawBlock]:
    """Join one-line blocks that sit side by side on one baseline into a table row (writers that
    place every cell as its own text object give one block per cell)."""
    out: list[_RawBlock] = []
    for b in raw:
        prev = out[-1] if out else None
        if (prev is not None and len(prev.lines) == 1 and len(b.lines) == 1 and not b.cells
                and _same_row(prev.bbox, b.bbox) and b.bbox[0] >= prev.bbox[2] - 1.0):
            prev.cells = (prev.cells or [prev.lines[0]]) + [b.lines[0]]
            prev.lines = [" | ".join(prev.cells)]
            prev.bold = False
            prev.bbox = (prev.bbox[0], min(prev.bbox[1], b.bbox[1]), b.bbox[2], max(prev.bbox[3], b.bbox[3]))
        else:
            out.append(b)
    return out


def _drop_running_lines(raw: list[_RawBlock], page_count: int) -> list[_RawBlock]:
    """Drop one-line blocks in the page margins repeated on more than half of the pages
    (running headers and footers); digits are ignored when comparing, so "第 1 页 / 共 4 页"
    repeats too. Lines in the body of the page ("第1部分" on every page) are never dropped."""
    if page_count < 3:
        return raw

    def key(b: _RawBlock) -> str | None:
        if not b.margin or len(b.lines) != 1 or len(b.lines[0]) > 80:
            return None
        # Spaces ignored too: OCR drops the full-width spaces a text layer has.
        return re.sub(r"\d+", "#", re.sub(r"\s+", "", b.lines[0]))

    pages_by_key: dict[str, set[int]] = {}
    for b in raw:
        k = key(b)
        if k is not None:
            pages_by_key.setdefault(k, set()).add(b.page)
    running = {k for k, pages in pages_by_key.items() if len(pages) * 2 > page_count}
    return [b for b in raw if key(b) not in running]


def _body_size(raw: list[_RawBlock]) -> float:
    """The font size that carries the most characters: the size of running text."""
    counts: Counter[float] = Counter()
    for b in raw:
        counts[round(b.size, 1)] += sum(len(line) for line in b.lines)
    return counts.most_common(1)[0][0]


def _heading_levels(raw: list[_RawBlock], body: float) -> dict[float, int]:
    """Map each heading font size to a level: the largest size is level 1."""
    sizes = {round(b.size, 1) for b in raw if _is_heading(b, body) and b.size >= body * _HEADING_RATIO}
    return {size: level for level, size in enumerate(sorted(sizes, reverse=True), start=1)}


def _is_heading(b: _RawBlock, body: float) -> bool:
    if b.cells:
        return False
    text = join_lines(b.lines)
    if len(b.lines) > 3 or len(text) > 80 or ends_sentence(text):
        return False
    return b.size >= body * _HEADING_RATIO or (b.bold and len(text) <= 40)


def _continues(a: _RawBlock, b: _RawBlock, body: float, right_edge: float | None = None) -> bool:
    """True when ``b`` continues ``a``'s paragraph: many PDF writers emit one block per line.

    Same font size, ``a`` stops mid-paragraph, ``b`` does not open an article or list item,
    neither is a heading or table row, and ``b`` sits just below ``a`` in the same column (or
    starts the next page, for a sentence cut by a page break). A one-line ``a`` between Chinese
    characters that stops well short of the column's ``right_edge`` did not wrap: it is a line
    of its own (centred document-info lines), and joining it would glue two lines together.
    """
    if a.cells or b.cells or abs(a.size - b.size) > 0.1 * max(a.size, 1.0) or ends_paragraph(a.lines[-1]):
        return False
    if starts_new_block(b.lines[0]) or _is_heading(a, body) or _is_heading(b, body):
        return False
    if b.page == a.page + 1:
        return True
    if b.page != a.page:
        return False
    if (right_edge is not None and len(a.lines) == 1 and is_cjk(a.lines[0][-1]) and is_cjk(b.lines[0][0])
            and right_edge - a.bbox[2] >= _SHORT_LINE_EMS * a.size):
        return False
    gap = b.bbox[1] - a.bbox[3]
    same_column = b.bbox[0] < a.bbox[2] and a.bbox[0] < b.bbox[2]
    return same_column and -2.0 <= gap <= 1.2 * max(a.size, b.size)


def _merge_continuations(raw: list[_RawBlock], body: float) -> list[_RawBlock]:
    right_edges: dict[int, float] = {}      # per page: where the text column ends
    for b in raw:
        if not b.cells and not b.margin:
            right_edges[b.page] = max(right_edges.get(b.page, 0.0), b.bbox[2])
    merged: list[_RawBlock] = []
    for b in raw:
        if merged and _continues(merged[-1], b, body, right_edges.get(merged[-1].page)):
            merged[-1].extend(b)
        else:
            merged.append(b)
    return merged


def _table_blocks(rows: list[_RawBlock]) -> list[Block]:
    """Consecutive table rows: with a header row each row reads ``header: value；...``."""

    cells = [r.cells for r in rows]
    header_at = find_header_row(cells)
    header = cells[header_at] if header_at is not None else None
    return [Block(row_text(r.cells, header), kind="table", page=r.page, ocr_confidence=r.confidence)
            for i, r in enumerate(rows) if i != header_at]


def _to_blocks(raw: list[_RawBlock]) -> list[Block]:
    body = _body_size(raw)
    raw = _merge_continuations(raw, body)
    levels = _heading_levels(raw, body)
    blocks: list[Block] = []
    table: list[_RawBlock] = []
    for b in raw + [_RawBlock([], 0.0, False, 0)]:     # a sentinel flushes a trailing table
        if b.cells:
            table.append(b)
            continue
        if table:
            blocks.extend(_table_blocks(table))
            table = []
        if not b.lines:
            continue
        if _is_heading(b, body):
            level = levels.get(round(b.size, 1), len(levels) + 1)
            blocks.append(Block(join_lines(b.lines), kind="heading", page=b.page, level=level,
                                ocr_confidence=b.confidence))
            continue
        for para in _split_paragraphs(b.lines):
            kind, level = classify_text(para)
            blocks.append(Block(para, kind=kind, page=b.page, level=level, ocr_confidence=b.confidence))
    return blocks


def _split_paragraphs(lines: list[str]) -> list[str]:
    """Join a text block's lines into paragraphs; an article or list marker starts a new one.

    >>> _split_paragraphs(["第一条 出差应当", "节约。", "第二条 住宿费", "按标准报销。"])
    ['第一条 出差应当节约。', '第二条 住宿费按标准报销。']
    """
    paragraphs: list[list[str]] = []
    for line in lines:
        if not paragraphs or starts_new_block(line):
            paragraphs.append([line])
        else:
            paragraphs[-1].append(line)
    return [join_lines(p) for p in paragraphs]


register_loader((".pdf",), PdfLoader)
