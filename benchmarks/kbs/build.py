"""Render a test knowledge base's text sources into real office files (a development tool).

Every knowledge base under ``benchmarks/kbs/<name>/`` keeps its documents as plain UTF-8 text in
``sources/``; ``sources/manifest.json`` says which source becomes which file in which format, and
(optionally) where the built files go (``"out"``, relative to the knowledge-base folder; default:
the folder itself, so files land in ``<name>/docs/`` and ``<name>/glossary/``). The demo's
manifest points ``out`` at ``knowledge/demo``, the copy ``kb demo`` ships.

Formats: a multi-page PDF with running headers and footers, a Word document with headings and
tables, Excel workbooks (one of them the company glossary with a title row above its header),
a PowerPoint deck with speaker notes, GBK-encoded or UTF-8 text, Markdown, HTML and CSV.

The build is deterministic: fixed metadata dates, fixed zip timestamps and no random PDF ids, so
rebuilding from unchanged sources gives byte-identical files (the index reuses them by sha256).

Usage::

    python benchmarks/kbs/build.py benchmarks/kbs/demo            # rebuild knowledge/demo
    python benchmarks/kbs/build.py benchmarks/kbs/demo --check    # also verify the question files
    python benchmarks/kbs/build.py --all                            # every knowledge base here

The office libraries are imported inside the render functions, so importing this module is cheap.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

KBS_DIR = Path(__file__).resolve().parent
REPO = KBS_DIR.parents[1]

FIXED_DATE = dt.datetime(2025, 1, 1, 9, 0, 0)
"""Creation/modification date written into every file's metadata (keeps rebuilds identical)."""

_FIXED_ZIP_TIME = (2025, 1, 1, 9, 0, 0)
_FIXED_PDF_DATE = "D:20250101090000+08'00'"


@dataclass
class Style:
    """Per-knowledge-base house style, from ``manifest.json`` (all optional)."""

    org: str = ""                      # company name in running headers ("" = none)
    footer: str = "内部资料　注意保密"     # DOCX footer and the start of the PDF footer
    page_footer: str = "第 {n} 页 / 共 {total} 页"
    creator: str = "kb-assistant benchmarks/kbs/build.py"
    author: str = ""                   # default author of every document

    @classmethod
    def from_manifest(cls, manifest: dict[str, Any]) -> "Style":
        keys = cls.__dataclass_fields__
        return cls(**{k: v for k, v in manifest.get("style", {}).items() if k in keys})


_STYLE = Style()


# --------------------------------------------------------------------------------------------
# Source markup
# --------------------------------------------------------------------------------------------


@dataclass
class Element:
    """One block of a policy source: ``kind`` is title | meta | heading | para | item | table."""

    kind: str
    text: str = ""
    rows: list[list[str]] | None = None


_ITEM_RE = re.compile(r"^（[一二三四五六七八九十]+）")


def parse_markup(text: str) -> list[Element]:
    """Parse the small Markdown-like markup of the policy sources.

    ``# `` is the title, ``> `` a document-information line, ``## `` a chapter heading, ``|``
    lines a table (first row = header), lines opening with ``（一）`` list items, anything else a
    paragraph (one line = one paragraph).

    Example:
        >>> [e.kind for e in parse_markup("# T\\n> m\\n## 第一章\\n第一条　x\\n（一）y\\n| a | b |\\n| 1 | 2 |")]
        ['title', 'meta', 'heading', 'para', 'item', 'table']
    """
    elements: list[Element] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if elements and elements[-1].kind == "table" and elements[-1].rows is not None:
                elements[-1].rows.append(cells)
            else:
                elements.append(Element("table", rows=[cells]))
        elif line.startswith("## "):
            elements.append(Element("heading", line[3:].strip()))
        elif line.startswith("# "):
            elements.append(Element("title", line[2:].strip()))
        elif line.startswith("> "):
            elements.append(Element("meta", line[2:].strip()))
        elif _ITEM_RE.match(line):
            elements.append(Element("item", line))
        else:
            elements.append(Element("para", line))
    return elements


def _meta_value(elements: list[Element], key: str) -> str:
    """The value after ``key：`` in the document-information lines ("" when absent)."""
    for el in elements:
        if el.kind == "meta":
            m = re.search(re.escape(key) + r"：(\S+)", el.text)
            if m:
                return m.group(1)
    return ""


# --------------------------------------------------------------------------------------------
# Line wrapping (PDF)
# --------------------------------------------------------------------------------------------

_TOKEN_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9.%&/+\-]*|\s+|.")
_NO_LINE_START = set("，。；：、）」』”’！？%,.;:)!?·")
_NO_LINE_END = set("（「『“‘(")


def wrap_text(text: str, width: float, measure: Callable[[str], float]) -> list[str]:
    """Break ``text`` into lines no wider than ``width`` (Chinese may break between any two
    characters; Latin words and numbers stay whole; closing punctuation never starts a line).

    Example:
        >>> wrap_text("差旅费30天内报销", 4, len)
        ['差旅费', '30天内', '报销']
    """
    lines: list[str] = []
    line = ""
    for token in _TOKEN_RE.findall(text):
        if measure(line + token) <= width or not line.strip():
            line += token
            continue
        if token[0] in _NO_LINE_START:
            # Kinsoku: let the punctuation hang past the margin rather than open the next line.
            line += token
            continue
        carry = ""
        while line and line[-1] in _NO_LINE_END:
            carry, line = line[-1] + carry, line[:-1]
        lines.append(line.rstrip())
        line = carry + token.lstrip()
    if line.strip():
        lines.append(line.rstrip())
    return lines


# --------------------------------------------------------------------------------------------
# PDF
# --------------------------------------------------------------------------------------------


_ASCII_RUN_RE = re.compile(r"[\x20-\x7e]+|[^\x20-\x7e]+")


def _font_runs(text: str) -> list[tuple[str, str]]:
    """Split a line into (run, font) pairs: ASCII in Helvetica, everything else in "china-s".

    The built-in CJK font is not embedded and viewers give every glyph of it a full em, so Latin
    letters and digits set in it look spaced out; Helvetica keeps them proportional.

    Example:
        >>> _font_runs("单笔3000元")
        [('单笔', 'china-s'), ('3000', 'helv'), ('元', 'china-s')]
    """
    return [(run, "helv" if run.isascii() else "china-s") for run in _ASCII_RUN_RE.findall(text)]


class _PdfWriter:
    """Flows policy elements onto A4 pages: CJK in pymupdf's built-in "china-s", ASCII in Helvetica."""

    PAGE_W, PAGE_H = 595.0, 842.0
    LEFT, RIGHT, TOP, BOTTOM = 66.0, 66.0, 78.0, 76.0

    def __init__(self, header: str, total_pages: int) -> None:
        import pymupdf

        self.pymupdf = pymupdf
        self.doc = pymupdf.open()
        self.page: Any = None
        self.y = 0.0
        self.header = header
        self.total_pages = total_pages

    @property
    def text_width(self) -> float:
        return self.PAGE_W - self.LEFT - self.RIGHT

    def measure(self, text: str, size: float) -> float:
        return sum(self.pymupdf.get_text_length(run, fontname=font, fontsize=size)
                   for run, font in _font_runs(text))

    def new_page(self) -> None:
        self.page = self.doc.new_page(width=self.PAGE_W, height=self.PAGE_H)
        self.y = self.TOP
        self.running_heads()

    def ensure_room(self, height: float) -> None:
        if self.page is None or self.y + height > self.PAGE_H - self.BOTTOM:
            self.new_page()

    def put(self, x: float, text: str, size: float, color: tuple = (0, 0, 0), page: Any = None,
            baseline: float | None = None) -> None:
        """Write one line; ``y`` is the top of the line box unless a baseline is given."""
        page = page if page is not None else self.page
        y = baseline if baseline is not None else self.y + size
        for run, font in _font_runs(text):
            page.insert_text((x, y), run, fontname=font, fontsize=size, color=color)
            x += self.pymupdf.get_text_length(run, fontname=font, fontsize=size)

    def centered(self, text: str, size: float, gap_after: float) -> None:
        for line in wrap_text(text, self.text_width, lambda s: self.measure(s, size)):
            self.ensure_room(size * 1.6)
            x = self.LEFT + (self.text_width - self.measure(line, size)) / 2
            self.put(x, line, size)
            self.y += size * 1.6
        self.y += gap_after

    def paragraph(self, text: str, size: float, indent: float = 0.0, hanging: float = 0.0) -> None:
        """Wrap ``text``; the first line starts at ``indent``, the following ones at ``hanging``."""
        leading = size * 1.75
        first_w = self.text_width - indent
        lines = wrap_text(text, first_w, lambda s: self.measure(s, size))
        if len(lines) > 1 and hanging != indent:
            rest = "".join(lines[1:])
            lines = lines[:1] + wrap_text(rest, self.text_width - hanging, lambda s: self.measure(s, size))
        for i, line in enumerate(lines):
            self.ensure_room(leading)
            self.put(self.LEFT + (indent if i == 0 else hanging), line, size)
            self.y += leading
        self.y += size * 0.35

    def heading(self, text: str, size: float = 13.0) -> None:
        self.ensure_room(size * 4)  # never strand a heading at the foot of a page
        self.y += size * 0.6
        self.put(self.LEFT, text, size)
        self.y += size * 2.0

    def table(self, rows: list[list[str]], size: float = 10.0) -> None:
        ncols = max(len(r) for r in rows)
        col_w = self.text_width / ncols
        row_h = size * 2.2
        self.ensure_room(row_h * len(rows) + 6)
        self.y += 4
        for r, row in enumerate(rows):
            top = self.y
            if r == 0:
                self.page.draw_rect(
                    self.pymupdf.Rect(self.LEFT, top, self.LEFT + self.text_width, top + row_h),
                    color=None, fill=(0.88, 0.91, 0.96),
                )
            for c, cell in enumerate(row):
                x = self.LEFT + c * col_w + (col_w - self.measure(cell, size)) / 2
                self.y = top + (row_h - size) / 2 - 1
                self.put(x, cell, size)
            self.y = top
            for c in range(ncols + 1):
                x = self.LEFT + c * col_w
                self.page.draw_line((x, top), (x, top + row_h), color=(0.3, 0.3, 0.3), width=0.6)
            self.page.draw_line((self.LEFT, top), (self.LEFT + self.text_width, top), color=(0.3, 0.3, 0.3), width=0.6)
            self.y = top + row_h
        self.page.draw_line((self.LEFT, self.y), (self.LEFT + self.text_width, self.y), color=(0.3, 0.3, 0.3), width=0.6)
        self.y += 10

    def running_heads(self) -> None:
        """Company header and "第 n 页 / 共 N 页" footer, written first like a word processor does."""
        grey = (0.45, 0.45, 0.45)
        self.put(self.LEFT, self.header, 8, grey, baseline=48)
        self.page.draw_line((self.LEFT, 54), (self.PAGE_W - self.RIGHT, 54), color=grey, width=0.5)
        page = _STYLE.page_footer.format(n=len(self.doc), total=self.total_pages)
        footer = f"{_STYLE.footer}　　{page}" if _STYLE.footer else page
        x = (self.PAGE_W - self.measure(footer, 8)) / 2
        self.put(x, footer, 8, grey, baseline=self.PAGE_H - 42)


def _layout_pdf(elements: list[Element], header: str, total_pages: int) -> _PdfWriter:
    w = _PdfWriter(header, total_pages)
    w.new_page()
    for el in elements:
        if el.kind == "title":
            w.y += 8
            w.centered(el.text, 18, gap_after=6)
        elif el.kind == "meta":
            w.centered(el.text, 9, gap_after=2)
        elif el.kind == "heading":
            w.heading(el.text)
        elif el.kind == "item":
            w.paragraph(el.text, 10.5, indent=21, hanging=42)
        elif el.kind == "table" and el.rows:
            w.table(el.rows)
        else:
            w.paragraph(el.text, 10.5)
    return w


def render_pdf(source: Path, out: Path, record: dict[str, Any] | None = None) -> None:
    """Render a policy markup source as a multi-page PDF (two passes: the footers need the page count)."""
    record = record or {}
    elements = parse_markup(source.read_text(encoding="utf-8"))
    title = next(e.text for e in elements if e.kind == "title")
    org = _STYLE.org
    number = _meta_value(elements, "文件编号") or _meta_value(elements, "Document No.")
    header = (f"{org}　{title.replace(org, '') if org else title}　{number}").strip()
    draft = _layout_pdf(elements, header, 0)
    total = len(draft.doc)
    draft.doc.close()
    w = _layout_pdf(elements, header, total)
    w.doc.set_metadata({
        "title": title, "author": record.get("author", _STYLE.author), "subject": title, "keywords": "",
        "creator": _STYLE.creator, "producer": "PyMuPDF",
        "creationDate": _FIXED_PDF_DATE, "modDate": _FIXED_PDF_DATE,
    })
    out.parent.mkdir(parents=True, exist_ok=True)
    # no_new_id: PDF trailers otherwise get a fresh random /ID on every save.
    w.doc.save(str(out), garbage=4, deflate=True, no_new_id=True)
    w.doc.close()


# --------------------------------------------------------------------------------------------
# DOCX
# --------------------------------------------------------------------------------------------


def _set_east_asian_font(element: Any, font: str) -> None:
    """python-docx sets only the Latin font name; CJK text needs w:eastAsia as well."""
    from docx.oxml.ns import qn

    rpr = element.get_or_add_rPr()
    rfonts = rpr.find(qn("w:rFonts"))
    if rfonts is None:
        rfonts = rpr.makeelement(qn("w:rFonts"), {})
        rpr.append(rfonts)
    rfonts.set(qn("w:eastAsia"), font)


def render_docx(source: Path, out: Path, record: dict[str, Any] | None = None) -> None:
    """Render a policy markup source as a Word document (Title, Heading 1, table)."""
    import docx
    from docx.enum.table import WD_TABLE_ALIGNMENT
    from docx.enum.text import WD_ALIGN_PARAGRAPH
    from docx.shared import Pt

    elements = parse_markup(source.read_text(encoding="utf-8"))
    title = next(e.text for e in elements if e.kind == "title")
    document = docx.Document()
    normal = document.styles["Normal"]
    normal.font.name = "Times New Roman"
    normal.font.size = Pt(10.5)
    _set_east_asian_font(normal.element, "宋体")
    for name in ("Title", "Heading 1"):
        _set_east_asian_font(document.styles[name].element, "黑体")

    for el in elements:
        if el.kind == "title":
            document.add_heading(el.text, level=0).alignment = WD_ALIGN_PARAGRAPH.CENTER
        elif el.kind == "meta":
            p = document.add_paragraph()
            p.alignment = WD_ALIGN_PARAGRAPH.CENTER
            p.add_run(el.text).font.size = Pt(9)
        elif el.kind == "heading":
            document.add_heading(el.text, level=1)
        elif el.kind == "table" and el.rows:
            table = document.add_table(rows=0, cols=len(el.rows[0]))
            table.style = "Table Grid"
            table.alignment = WD_TABLE_ALIGNMENT.CENTER
            for r, row in enumerate(el.rows):
                cells = table.add_row().cells
                for c, value in enumerate(row):
                    cells[c].text = value
                    if r == 0:
                        for run in cells[c].paragraphs[0].runs:
                            run.bold = True
        else:
            p = document.add_paragraph(el.text)
            if el.kind == "item":
                p.paragraph_format.left_indent = Pt(21)

    section = document.sections[0]
    record = record or {}
    org = _STYLE.org
    section.header.paragraphs[0].text = f"{org}　{title.replace(org, '')}" if org else title
    section.footer.paragraphs[0].text = _STYLE.footer
    props = document.core_properties
    props.title = title
    props.author = record.get("author", _STYLE.author)
    props.last_modified_by = record.get("last_modified_by", props.author)
    props.created = props.modified = FIXED_DATE
    props.revision = 3
    out.parent.mkdir(parents=True, exist_ok=True)
    document.save(str(out))
    normalize_zip(out)


# --------------------------------------------------------------------------------------------
# XLSX
# --------------------------------------------------------------------------------------------


def _style_header(ws: Any, row: int, ncols: int) -> None:
    from openpyxl.styles import Alignment, Border, Font, PatternFill, Side

    thin = Side(style="thin", color="808080")
    for col in range(1, ncols + 1):
        cell = ws.cell(row=row, column=col)
        cell.font = Font(bold=True)
        cell.fill = PatternFill("solid", fgColor="DCE6F1")
        cell.alignment = Alignment(horizontal="center", vertical="center", wrap_text=True)
        cell.border = Border(top=thin, bottom=thin, left=thin, right=thin)


def _set_widths(ws: Any, widths: list[int]) -> None:
    from openpyxl.utils import get_column_letter

    for i, width in enumerate(widths, start=1):
        ws.column_dimensions[get_column_letter(i)].width = width


def _title_row(ws: Any, row: int, text: str, ncols: int, size: int = 14) -> None:
    from openpyxl.styles import Alignment, Font

    ws.cell(row=row, column=1, value=text).font = Font(bold=True, size=size)
    ws.cell(row=row, column=1).alignment = Alignment(horizontal="center")
    ws.merge_cells(start_row=row, start_column=1, end_row=row, end_column=ncols)


def _new_workbook(title: str, author: str) -> Any:
    import openpyxl

    wb = openpyxl.Workbook()
    wb.remove(wb.active)
    wb.properties.title = title
    wb.properties.creator = author
    wb.properties.lastModifiedBy = author
    wb.properties.created = FIXED_DATE
    wb.properties.modified = FIXED_DATE  # openpyxl overwrites this on save; normalize_zip fixes it
    return wb


def render_xlsx(source: Path, out: Path, record: dict[str, Any] | None = None) -> None:
    """Render the expense-standard tables: per sheet a title row, a header row, values, notes."""
    spec = json.loads(source.read_text(encoding="utf-8"))
    wb = _new_workbook(spec["title"], spec["author"])
    for sheet in spec["sheets"]:
        ws = wb.create_sheet(sheet["name"])
        ncols = len(sheet["header"])
        _title_row(ws, 1, sheet["title"], ncols)
        ws.append(sheet["header"])
        _style_header(ws, 2, ncols)
        for row in sheet["rows"]:
            ws.append([None if v == "" else v for v in row])  # empty cells, not ""
        if sheet.get("notes"):
            ws.append([])
            for note in sheet["notes"]:
                ws.append([note])
        _set_widths(ws, sheet["widths"])
        ws.freeze_panes = "A3"
    out.parent.mkdir(parents=True, exist_ok=True)
    wb.save(str(out))
    normalize_zip(out)


def render_glossary(source: Path, out: Path, record: dict[str, Any] | None = None) -> None:
    """Render the abbreviation list in the company format: title row, blank row, header
    序号/缩略语/英文全称/中文解释, numbered rows, blank row, footnote."""
    spec = json.loads(source.read_text(encoding="utf-8"))
    wb = _new_workbook(spec["title"], spec["author"])
    ws = wb.create_sheet(spec["sheet"])
    ncols = len(spec["header"])
    _title_row(ws, 1, spec["title"], ncols, size=16)
    ws.append([])
    ws.append(spec["header"])
    _style_header(ws, 3, ncols)
    for number, (term, english, chinese) in enumerate(spec["rows"], start=1):
        ws.append([number, term, english, chinese])
    ws.append([])
    ws.append([spec["footer"]])
    ws.merge_cells(start_row=ws.max_row, start_column=1, end_row=ws.max_row, end_column=ncols)
    _set_widths(ws, spec["widths"])
    ws.freeze_panes = "A4"
    out.parent.mkdir(parents=True, exist_ok=True)
    wb.save(str(out))
    normalize_zip(out)


# --------------------------------------------------------------------------------------------
# PPTX
# --------------------------------------------------------------------------------------------


def render_pptx(source: Path, out: Path, record: dict[str, Any] | None = None) -> None:
    """Render the onboarding deck: title slide, bullet slides, one table slide, speaker notes."""
    from pptx import Presentation
    from pptx.util import Inches, Pt

    spec = json.loads(source.read_text(encoding="utf-8"))
    prs = Presentation()
    prs.slide_width, prs.slide_height = Inches(13.333), Inches(7.5)
    for s in spec["slides"]:
        if s["layout"] == "title":
            slide = prs.slides.add_slide(prs.slide_layouts[0])
            slide.shapes.title.text = s["title"]
            subtitle = slide.placeholders[1]
            subtitle.text = s["subtitle"]
            # The default template's placeholders are laid out for 4:3; re-centre them for 16:9.
            subtitle.left, subtitle.top, subtitle.width, subtitle.height = Inches(1.5), Inches(4.2), Inches(10.3), Inches(1.6)
            slide.shapes.title.top, slide.shapes.title.height = Inches(2.0), Inches(1.6)
        elif s["layout"] == "bullets":
            slide = prs.slides.add_slide(prs.slide_layouts[1])
            slide.shapes.title.text = s["title"]
            body = slide.placeholders[1]
            body.left, body.top, body.width, body.height = Inches(0.7), Inches(1.6), Inches(11.9), Inches(5.4)
            frame = body.text_frame
            for i, bullet in enumerate(s["bullets"]):
                para = frame.paragraphs[0] if i == 0 else frame.add_paragraph()
                para.text = bullet
                para.font.size = Pt(22)
        else:
            slide = prs.slides.add_slide(prs.slide_layouts[5])
            slide.shapes.title.text = s["title"]
            rows = s["table"]
            shape = slide.shapes.add_table(len(rows), len(rows[0]), Inches(0.8), Inches(1.7),
                                           Inches(11.7), Inches(0.6) * len(rows))
            for r, row in enumerate(rows):
                for c, value in enumerate(row):
                    cell = shape.table.cell(r, c)
                    cell.text = value
                    cell.text_frame.paragraphs[0].font.size = Pt(18)
        slide.shapes.title.width = prs.slide_width - Inches(1.0)
        slide.shapes.title.left = Inches(0.5)
        slide.notes_slide.notes_text_frame.text = s["notes"]
    props = prs.core_properties
    props.title, props.author, props.last_modified_by = spec["title"], spec["author"], spec["author"]
    props.created = props.modified = FIXED_DATE
    props.revision = 2
    out.parent.mkdir(parents=True, exist_ok=True)
    prs.save(str(out))
    normalize_zip(out)


# --------------------------------------------------------------------------------------------
# Text formats
# --------------------------------------------------------------------------------------------


def render_txt_gbk(source: Path, out: Path, record: dict[str, Any] | None = None) -> None:
    """Write the text re-encoded as GBK with Windows line endings, as Notepad-era files are."""
    text = source.read_text(encoding="utf-8")
    out.parent.mkdir(parents=True, exist_ok=True)
    # encode() raises on a character GBK lacks, which is what we want: fix the source.
    out.write_bytes(text.replace("\r\n", "\n").replace("\n", "\r\n").encode("gbk"))


def render_md(source: Path, out: Path, record: dict[str, Any] | None = None) -> None:
    """Markdown (and UTF-8 text) ships as written."""
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, out)


def render_html(source: Path, out: Path, record: dict[str, Any] | None = None) -> None:
    """Render a policy markup source as one HTML page (h1/h2, paragraphs, list items, tables),
    with a navigation bar and a footer the loader should not mistake for content."""
    from html import escape

    elements = parse_markup(source.read_text(encoding="utf-8"))
    title = next(e.text for e in elements if e.kind == "title")
    body: list[str] = []
    for el in elements:
        if el.kind == "title":
            body.append(f"<h1>{escape(el.text)}</h1>")
        elif el.kind == "meta":
            body.append(f'<p class="meta">{escape(el.text)}</p>')
        elif el.kind == "heading":
            body.append(f"<h2>{escape(el.text)}</h2>")
        elif el.kind == "item":
            body.append(f"<ul><li>{escape(el.text)}</li></ul>")
        elif el.kind == "table" and el.rows:
            head = "".join(f"<th>{escape(c)}</th>" for c in el.rows[0])
            rows = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in r) + "</tr>" for r in el.rows[1:])
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        else:
            body.append(f"<p>{escape(el.text)}</p>")
    nav = f'<nav><a href="#">{escape(_STYLE.org or "Intranet")}</a> | <a href="#">Policies</a></nav>'
    page = ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>" + escape(title) + "</title></head>\n"
            "<body>\n" + nav + "\n<main>\n" + "\n".join(body) + "\n</main>\n<footer>"
            + escape(_STYLE.footer) + "</footer>\n</body></html>\n")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")


def render_csv(source: Path, out: Path, record: dict[str, Any] | None = None) -> None:
    """Render ``{"header": [...], "rows": [[...], ...]}`` as UTF-8 CSV (with BOM, as Excel writes it)."""
    import csv
    import io

    spec = json.loads(source.read_text(encoding="utf-8"))
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(spec["header"])
    writer.writerows(spec["rows"])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\ufeff" + buf.getvalue(), encoding="utf-8", newline="")


def render_glossary_csv(source: Path, out: Path, record: dict[str, Any] | None = None) -> None:
    """The glossary JSON as a CSV abbreviation list (header row, one meaning per row)."""
    import csv
    import io

    spec = json.loads(source.read_text(encoding="utf-8"))
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(spec["header"])
    for number, row in enumerate(spec["rows"], start=1):
        writer.writerow([number, *row] if len(spec["header"]) == len(row) + 1 else row)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\ufeff" + buf.getvalue(), encoding="utf-8", newline="")


RENDERERS: dict[str, Callable[..., None]] = {
    "pdf": render_pdf,
    "docx": render_docx,
    "xlsx": render_xlsx,
    "glossary-xlsx": render_glossary,
    "glossary-csv": render_glossary_csv,
    "pptx": render_pptx,
    "txt-gbk": render_txt_gbk,
    "txt": render_md,
    "md": render_md,
    "html": render_html,
    "csv": render_csv,
}


def normalize_zip(path: Path) -> None:
    """Rewrite an OOXML zip with fixed entry timestamps and fixed core.xml dates.

    python-docx, python-pptx and openpyxl stamp every zip entry with the current time (and
    openpyxl sets dcterms:modified to now on save); without this the bytes change on every build.
    """
    with zipfile.ZipFile(path) as zin:
        entries = [(info.filename, zin.read(info.filename)) for info in zin.infolist()]
    stamp = FIXED_DATE.strftime("%Y-%m-%dT%H:%M:%SZ").encode()
    tmp = path.with_name(path.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zout:
        for name, data in entries:
            if name == "docProps/core.xml":
                data = re.sub(rb"(<dcterms:(created|modified)[^>]*>)[^<]*(</dcterms:\2>)",
                              rb"\g<1>" + stamp + rb"\g<3>", data)
            info = zipfile.ZipInfo(name, date_time=_FIXED_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zout.writestr(info, data)
    os.replace(tmp, path)


# --------------------------------------------------------------------------------------------
# Build entry point
# --------------------------------------------------------------------------------------------


def load_manifest(kb_dir: Path) -> dict[str, Any]:
    """``sources/manifest.json`` of a knowledge-base folder."""
    path = Path(kb_dir) / "sources" / "manifest.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no manifest (a knowledge base keeps its sources in sources/)")
    return json.loads(path.read_text(encoding="utf-8"))


def output_dir(kb_dir: Path, manifest: dict[str, Any]) -> Path:
    """Where a knowledge base's built files go: ``manifest["out"]`` relative to ``kb_dir``, else ``kb_dir``."""
    return (Path(kb_dir) / manifest.get("out", ".")).resolve()


def build_kb(kb_dir: Path, out_dir: Path | None = None) -> list[Path]:
    """Render every source of one knowledge base; return the written paths in manifest order.

    Documents go to ``out_dir/docs/`` and glossaries to ``out_dir/glossary/`` (as the manifest's
    ``output`` paths say), so ``build_kb(kb, tmp)`` gives a complete, self-contained copy.
    """
    global _STYLE
    kb_dir = Path(kb_dir)
    manifest = load_manifest(kb_dir)
    out_dir = Path(out_dir) if out_dir is not None else output_dir(kb_dir, manifest)
    _STYLE = Style.from_manifest(manifest)
    written: list[Path] = []
    try:
        for record in manifest["documents"]:
            render = RENDERERS.get(record["format"])
            if render is None:
                raise ValueError(f"unknown format {record['format']!r} for {record['source']} "
                                 f"(one of {sorted(RENDERERS)})")
            target = out_dir / record["output"]
            render(kb_dir / "sources" / record["source"], target, record)
            written.append(target)
    finally:
        _STYLE = Style()
    return written


def all_kbs() -> list[Path]:
    """Every knowledge-base folder under ``benchmarks/kbs`` (those with ``sources/manifest.json``)."""
    return sorted(p.parent.parent for p in KBS_DIR.glob("*/sources/manifest.json"))


# --------------------------------------------------------------------------------------------
# Verification helpers (used by --check)
# --------------------------------------------------------------------------------------------


def extract_text(path: Path) -> str:
    """Plain text of a built demo file, one line per PDF line / paragraph / cell / shape text.

    This is a reference extraction for checking the question files, not the project's loader.
    """
    suffix = path.suffix.lower()
    if suffix == ".pdf":
        import pymupdf

        with pymupdf.open(str(path)) as doc:
            return "\n".join(page.get_text() for page in doc)
    if suffix == ".docx":
        import docx

        document = docx.Document(str(path))
        parts = [p.text for p in document.paragraphs]
        parts += [cell.text for table in document.tables for row in table.rows for cell in row.cells]
        return "\n".join(parts)
    if suffix == ".xlsx":
        import openpyxl

        wb = openpyxl.load_workbook(str(path), read_only=True)
        cells = [str(v) for ws in wb.worksheets for row in ws.iter_rows(values_only=True) for v in row if v is not None]
        wb.close()
        return "\n".join(cells)
    if suffix == ".pptx":
        from pptx import Presentation

        parts = []
        for slide in Presentation(str(path)).slides:
            for shape in slide.shapes:
                if shape.has_text_frame:
                    parts.append(shape.text_frame.text)
                if getattr(shape, "has_table", False) and shape.has_table:
                    parts += [cell.text for row in shape.table.rows for cell in row.cells]
            if slide.has_notes_slide:
                parts.append(slide.notes_slide.notes_text_frame.text)
        return "\n".join(parts)
    if suffix == ".txt":
        return path.read_bytes().decode("gbk")
    return path.read_text(encoding="utf-8")


def _squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


def check_retrieval_questions(questions: Path, docs_dir: Path) -> list[str]:
    """Problems with a retrieval question file: unknown source, gold missing from its document
    (whitespace ignored on both sides), or a gold quote of the wrong length."""
    texts: dict[str, str] = {}
    problems: list[str] = []
    for line in questions.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        q = json.loads(line)
        path = docs_dir / q["source"]
        if not path.exists():
            problems.append(f"{q['id']}: no such document {q['source']!r}")
            continue
        if q["source"] not in texts:
            texts[q["source"]] = _squash(extract_text(path))
        gold = _squash(q["gold"])
        if not 8 <= len(gold) <= 30:
            problems.append(f"{q['id']}: gold {q['gold']!r} has {len(gold)} characters (want 8-30)")
        if gold not in texts[q["source"]]:
            problems.append(f"{q['id']}: gold {q['gold']!r} not found in {q['source']}")
    return problems


ROUTES = {"glossary", "fact", "rag", "refuse"}
KINDS = {"plain", "ambiguous", "english", "colloquial", "table", "followup", "false_premise", "injection",
         "near_absent", "absent",
         # the tier/condition set (tiers.jsonl): which row of a tiered or piecewise rule applies
         "tier", "boundary", "negation", "piecewise", "direction"}
FORMS = ("plain", "colloquial", "english")
"""The three wordings of one base question in a paired-forms file (paired.jsonl)."""
QUESTION_SETS = {"questions": "questions.jsonl", "tiers": "tiers.jsonl", "paired": "paired.jsonl"}
"""Question sets of a knowledge base and their files (the demo's ``questions`` set is
``knowledge/demo/eval_questions.jsonl``)."""


def kb_text(out_dir: Path) -> str:
    """Every built document's and glossary's text, squashed and case-folded (for the checks)."""
    parts = []
    for folder in ("docs", "glossary"):
        for path in sorted((Path(out_dir) / folder).glob("*")):
            if path.is_file():
                parts.append(extract_text(path))
    return _squash("\n".join(parts)).casefold()


def check_eval_questions(questions: Path, out_dir: Path | None = None) -> list[str]:
    """Problems with an evaluation question file: bad route or kind, a refuse flag that disagrees
    with the route, missing or empty expectation groups, a malformed history, and (when the built
    knowledge base is given) an expected group none of whose alternatives occurs in the documents
    (unless the line says ``"derived": true``, for answers computed from several figures) or a
    forbidden string that does occur where the question is a refusal."""
    problems: list[str] = []
    seen: set[str] = set()
    text = kb_text(out_dir) if out_dir is not None else None
    for n, line in enumerate(questions.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            q = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(f"line {n}: invalid JSON ({exc.msg})")
            continue
        qid = q.get("id", f"line{n}")
        if qid in seen:
            problems.append(f"{qid}: duplicate id")
        seen.add(qid)
        route = q.get("route")
        if route not in ROUTES:
            problems.append(f"{qid}: unknown route {route!r}")
        if q.get("refuse", route == "refuse") != (route == "refuse"):
            problems.append(f"{qid}: refuse={q.get('refuse')} but route={route}")
        expected = q.get("expected", [])
        if route != "refuse" and not expected:
            problems.append(f"{qid}: no expected groups")
        if any(not group for group in expected):
            problems.append(f"{qid}: an expected group is empty")
        if "kind" in q and q["kind"] not in KINDS:
            problems.append(f"{qid}: unknown kind {q['kind']!r} (one of {sorted(KINDS)})")
        history = q.get("history", [])
        if not isinstance(history, list) or any(not isinstance(h, dict) or h.get("role") not in ("user", "assistant")
                                                or not isinstance(h.get("content"), str) for h in history):
            problems.append(f"{qid}: history must be a list of {{role: user|assistant, content}}")
        other = q.get("other_rows", [])
        if not isinstance(other, list) or not all(isinstance(o, str) and o for o in other):
            problems.append(f"{qid}: other_rows must be a list of non-empty strings")
        if "form" in q and q["form"] not in FORMS:
            problems.append(f"{qid}: unknown form {q['form']!r} (one of {list(FORMS)})")
        if ("form" in q) != ("pair" in q):
            problems.append(f"{qid}: a paired line needs both 'pair' and 'form'")
        if q.get("kind") == "followup" and (not history or not q.get("standalone")):
            problems.append(f"{qid}: a followup needs a history and its standalone question")
        if text is not None and route != "refuse" and not q.get("derived"):
            for group in expected:
                if not any(_squash(str(a)).casefold() in text for a in group):
                    problems.append(f"{qid}: none of {group} occurs in the documents (mark derived answers)")
    return problems


def check_paired_questions(questions: Path) -> list[str]:
    """Problems with a paired-forms file beyond the per-line checks: a ``pair`` that does not have
    exactly one line of each form, or whose forms disagree on route, refusal or expected groups
    (the three wordings ask the same thing, so they share one answer).

    Example:
        >>> import tempfile
        >>> rows = [{"id": f"p1-{f[0]}", "pair": "p1", "form": f, "question": "?", "route": "fact",
        ...          "expected": [["3天"]] if f != "english" else [["3 days"]]} for f in FORMS]
        >>> with tempfile.TemporaryDirectory() as d:
        ...     path = Path(d) / "paired.jsonl"
        ...     _ = path.write_text("\\n".join(json.dumps(r) for r in rows), encoding="utf-8")
        ...     check_paired_questions(path)
        ['p1: the forms disagree on route, refuse or expected']
    """
    pairs: dict[str, list[dict[str, Any]]] = {}
    problems: list[str] = []
    for line in questions.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            q = json.loads(line)
        except json.JSONDecodeError:
            continue  # reported by check_eval_questions
        if "pair" not in q:
            problems.append(f"{q.get('id')}: a paired-forms line needs 'pair' and 'form'")
            continue
        pairs.setdefault(str(q["pair"]), []).append(q)
    for pid, rows in pairs.items():
        forms = sorted(str(r.get("form")) for r in rows)
        if forms != sorted(FORMS):
            problems.append(f"{pid}: forms {forms}, want one each of {list(FORMS)}")
        shapes = {json.dumps([r.get("route"), bool(r.get("refuse")), r.get("expected", [])], ensure_ascii=False)
                  for r in rows}
        if len(shapes) > 1:
            problems.append(f"{pid}: the forms disagree on route, refuse or expected")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build test knowledge bases from their text sources.")
    parser.add_argument("kbs", nargs="*", type=Path, help="knowledge-base folders (with sources/manifest.json)")
    parser.add_argument("--all", action="store_true", help="every knowledge base under benchmarks/kbs")
    parser.add_argument("--out", type=Path, help="output root for a single knowledge base (docs/ and glossary/ go under it)")
    parser.add_argument("--check", action="store_true", help="verify question files against the built docs")
    args = parser.parse_args(argv)
    kbs = all_kbs() if args.all else args.kbs
    if not kbs:
        parser.error("name a knowledge-base folder or pass --all")
    if args.out and len(kbs) != 1:
        parser.error("--out needs exactly one knowledge base")
    problems: list[str] = []
    for kb in kbs:
        out = args.out or output_dir(kb, load_manifest(kb))
        for path in build_kb(kb, out):
            print(f"{path.stat().st_size:>8}  {path}")
        if args.check:
            questions = out / "eval_questions.jsonl"
            if not questions.is_file():
                questions = Path(kb) / "questions.jsonl"
            if questions.is_file():
                problems += [f"{kb.name}: {p}" for p in check_eval_questions(questions, out)]
            for set_name in ("tiers", "paired"):
                extra = Path(kb) / QUESTION_SETS[set_name]
                if extra.is_file():
                    problems += [f"{kb.name}/{extra.name}: {p}" for p in check_eval_questions(extra, out)]
                    if set_name == "paired":
                        problems += [f"{kb.name}/{extra.name}: {p}" for p in check_paired_questions(extra)]
            retrieval = Path(kb) / "retrieval_questions.jsonl"
            if Path(kb).name == "demo":
                retrieval = REPO / "tests" / "data" / "retrieval_questions.jsonl"
            if retrieval.is_file():
                problems += [f"{kb.name}: {p}" for p in check_retrieval_questions(retrieval, out / "docs")]
    for problem in problems:
        print("PROBLEM", problem)
    if args.check:
        print("questions OK" if not problems else f"{len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
