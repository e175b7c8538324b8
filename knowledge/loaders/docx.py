"""Word (.docx) loader (python-docx): headings from styles, paragraphs, list items, table rows.

Table rows are written by :func:`knowledge.loaders.tables.table_blocks` (``Header: value；…``);
a first row set in bold or marked "repeat as header row" is taken as the header.
"""

from __future__ import annotations

import re
from pathlib import Path

from knowledge.loaders.base import Loader, check_xml_sizes, register_loader
from knowledge.loaders.tables import table_blocks
from knowledge.text_utils import join_lines
from knowledge.core.types import Block

_HEADING_STYLE_RE = re.compile(r"^(?:heading|标题)\s*(\d)$", re.IGNORECASE)
_TITLE_STYLES = {"title", "标题", "subtitle", "副标题"}


def heading_level(style_name: str) -> int:
    """Heading level from a Word style name; 0 when the style is not a heading.

    >>> heading_level("Heading 2"), heading_level("标题 1"), heading_level("Title"), heading_level("Normal")
    (2, 1, 1, 0)
    """
    name = (style_name or "").strip()
    match = _HEADING_STYLE_RE.match(name)
    if match:
        return max(1, int(match.group(1)))
    return 1 if name.lower() in _TITLE_STYLES else 0


class DocxLoader(Loader):
    """Reads body paragraphs and tables in document order (headers and footers are skipped)."""

    content = "zip"
    zip_member = "word/document.xml"

    def load(self, path: Path) -> list[Block]:
        import docx  # deferred: python-docx, .docx files only
        from docx.table import Table  # deferred: python-docx, .docx files only

        check_xml_sizes(path, self.ingest_options().max_xml_mb, "ingest.max_xml_mb")  # python-docx parses them whole
        document = docx.Document(str(path))
        self.doc_title = document.core_properties.title or ""
        blocks: list[Block] = []
        for item in document.iter_inner_content():
            if isinstance(item, Table):
                blocks.extend(_table_blocks(item))
            else:
                block = _paragraph_block(item)
                if block is not None:
                    blocks.append(block)
        return blocks


def _paragraph_block(paragraph) -> Block | None:
    text = join_lines(paragraph.text.splitlines())
    if not text:
        return None
    style = paragraph.style.name if paragraph.style is not None else ""
    level = heading_level(style) or _outline_level(paragraph)
    if level:
        return Block(text, kind="heading", level=level)
    if "list" in style.lower() or _has_numbering(paragraph):
        return Block(text, kind="list")
    return Block(text, kind="para")


def _outline_level(paragraph) -> int:
    """Level from a direct outline level (w:outlineLvl, 0-based; 9 means body text)."""
    from docx.oxml.ns import qn  # deferred: python-docx, .docx files only

    ppr = paragraph._p.pPr
    node = ppr.find(qn("w:outlineLvl")) if ppr is not None else None
    if node is None:
        return 0
    value = int(node.get(qn("w:val"), "9"))
    return value + 1 if value < 9 else 0


def _has_numbering(paragraph) -> bool:
    ppr = paragraph._p.pPr
    return ppr is not None and ppr.numPr is not None


def _table_blocks(table) -> list[Block]:
    """The table's rows as records (merged cells counted once); the header is the first row with
    two or more cells when Word marks it (:func:`_is_header_row`)."""
    rows, cell_objects = [], []
    for row in table.rows:
        seen, cells = set(), []
        for cell in row.cells:
            if id(cell._tc) in seen:   # python-docx repeats a merged cell once per grid column
                continue
            seen.add(id(cell._tc))
            cells.append(cell)
        rows.append([join_lines(cell.text.splitlines()) for cell in cells])
        cell_objects.append((row, cells))
    first = next((i for i, texts in enumerate(rows) if sum(1 for t in texts if t) >= 2), None)
    marked = first is not None and _is_header_row(*cell_objects[first])
    return table_blocks(rows, marked=marked, title_level=None)


def _is_header_row(row, cells) -> bool:
    """Word's "repeat as header row" flag, or every run of text in the row set in bold."""
    from docx.oxml.ns import qn  # deferred: python-docx, .docx files only

    tr_pr = row._tr.trPr
    if tr_pr is not None and tr_pr.find(qn("w:tblHeader")) is not None:
        return True
    runs = [run for cell in cells for p in cell.paragraphs for run in p.runs if run.text.strip()]
    return bool(runs) and all(run.bold for run in runs)


register_loader((".docx",), DocxLoader)
