"""PowerPoint (.pptx) loader (python-pptx): slide titles, body text, tables and speaker notes.

Every block carries its slide number as ``page``.
"""

from __future__ import annotations

from pathlib import Path

from knowledge.loaders.base import Loader, check_xml_sizes, register_loader
from knowledge.loaders.tables import table_blocks
from knowledge.text_utils import join_lines
from knowledge.core.types import Block


class PptxLoader(Loader):
    content = "zip"
    zip_member = "ppt/presentation.xml"

    def load(self, path: Path) -> list[Block]:
        from pptx import Presentation  # deferred: python-pptx, .pptx files only

        check_xml_sizes(path, self.ingest_options().max_xml_mb, "ingest.max_xml_mb")  # python-pptx parses them whole
        deck = Presentation(str(path))
        self.doc_title = deck.core_properties.title or ""
        blocks: list[Block] = []
        for number, slide in enumerate(deck.slides, start=1):
            blocks.extend(_slide_blocks(slide, number))
        return blocks


def _slide_blocks(slide, number: int) -> list[Block]:
    title_shape = slide.shapes.title
    blocks: list[Block] = []
    if title_shape is not None and title_shape.has_text_frame:
        title = join_lines(title_shape.text_frame.text.splitlines())
        if title:
            blocks.append(Block(title, kind="heading", page=number, level=1))
    title_id = title_shape.shape_id if title_shape is not None else None
    for shape in slide.shapes:
        if shape.shape_id != title_id:
            blocks.extend(_shape_blocks(shape, number))
    if slide.has_notes_slide:
        notes = slide.notes_slide.notes_text_frame
        text = join_lines(notes.text.splitlines()) if notes is not None else ""
        if text:
            blocks.append(Block(text, kind="note", page=number))
    return blocks


def _shape_blocks(shape, number: int) -> list[Block]:
    """Text of one shape: a block per paragraph, a record per table row (the header row is the
    first row when the table's "header row" style is on); groups recursed."""
    blocks: list[Block] = []
    if getattr(shape, "shapes", None) is not None:          # group shape
        for child in shape.shapes:
            blocks.extend(_shape_blocks(child, number))
    if getattr(shape, "has_table", False) and shape.has_table:
        rows = [[join_lines(cell.text.splitlines()) for cell in row.cells] for row in shape.table.rows]
        blocks.extend(table_blocks(rows, page=number, marked=shape.table.first_row, title_level=None))
    if getattr(shape, "has_text_frame", False) and shape.has_text_frame:
        for paragraph in shape.text_frame.paragraphs:
            text = join_lines(paragraph.text.splitlines())
            if text:
                kind = "list" if paragraph.level > 0 else "para"
                blocks.append(Block(text, kind=kind, page=number))
    return blocks


register_loader((".pptx",), PptxLoader)
