"""Spreadsheet loaders: Excel workbooks (openpyxl) and CSV/TSV files.

Each data row becomes one ``table`` block. When the sheet has a header row the row reads
``header1: v1；header2: v2`` so a retrieved row still says what its numbers mean; without one
the cells are joined by `` | ``. Formulas are read as the values Excel cached; a workbook saved
by a program that never calculated them (openpyxl, some exporters) has no cached values, and
the loader warns instead of guessing.
"""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path
from typing import Any

from knowledge.loaders.base import Loader, read_text_file, register_loader
from knowledge.text_utils import join_lines
from knowledge.types import Block

Row = list[Any]
_HEADER_SCAN_ROWS = 20


def format_cell(value: Any) -> str:
    """A cell value as text: whole floats without ``.0``, dates without midnight, strings stripped.

    >>> format_cell(600.0), format_cell(0.15), format_cell(dt.datetime(2024, 3, 1)), format_cell(None)
    ('600', '0.15', '2024-03-01', '')
    """
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else format(value, ".15g")
    if isinstance(value, dt.datetime):
        return value.date().isoformat() if value.time() == dt.time() else value.isoformat(sep=" ")
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    return join_lines(str(value).splitlines())


def find_header_row(rows: list[list[str]]) -> int | None:
    """Index of the header row, or None when the table has none.

    Rows with fewer than two filled cells before it are title rows or blanks. The first row with
    two or more cells is the candidate; like :meth:`csv.Sniffer.has_header` each column votes:
    numbers below a text cell vote twice for a header, values of one fixed length vote once
    when the candidate's cell has another length. There are no votes against: Chinese labels are
    often as long as their values. An all-text table without such evidence gets no header (its
    rows are then joined with `` | ``, losing nothing).

    >>> find_header_row([["2024 差旅标准"], [], ["级别", "住宿费"], ["经理", "600"], ["员工", "400"]])
    2
    >>> find_header_row([["经理", "600"], ["员工", "400"]]) is None
    True
    >>> find_header_row([["PM", "产品经理"], ["AM", "客户经理"], ["CFO", "首席财务官"]]) is None
    True
    """
    for i, row in enumerate(rows[:_HEADER_SCAN_ROWS]):
        cells = [c for c in row if c]
        if len(cells) < 2:
            continue
        if any(_looks_numeric(c) for c in cells) or len(set(cells)) != len(cells):
            return None
        data = [r for r in rows[i + 1:i + 1 + _HEADER_SCAN_ROWS] if any(r)]
        return i if data and _header_votes(row, data) > 0 else None
    return None


def _header_votes(header: list[str], data: list[list[str]]) -> int:
    votes = 0
    for col, name in enumerate(header):
        values = [r[col] for r in data if col < len(r) and r[col]]
        if not name or not values:
            continue
        if sum(_looks_numeric(v) for v in values) * 2 > len(values):
            votes += 2          # text above numbers is the strongest sign of a header
        elif len({len(v) for v in values}) == 1 and len(name) != len(values[0]):
            votes += 1
    return votes


def _looks_numeric(text: str) -> bool:
    try:
        float(text.replace(",", "").rstrip("%"))
        return True
    except ValueError:
        return False


def row_text(cells: list[str], header: list[str] | None) -> str:
    """One row as text, pairing values with their header names.

    >>> row_text(["经理", "600", ""], ["级别", "住宿费", "备注"])
    '级别: 经理；住宿费: 600'
    >>> row_text(["经理", "", "600"], None)
    '经理 |  | 600'
    """
    if header is None:
        while cells and not cells[-1]:
            cells = cells[:-1]
        return " | ".join(cells)
    pairs = []
    for i, value in enumerate(cells):
        if not value:
            continue
        name = header[i] if i < len(header) and header[i] else ""
        pairs.append(f"{name}: {value}" if name else value)
    return "；".join(pairs)


def table_blocks(rows: list[list[str]], page: int | None) -> list[Block]:
    """Blocks for one table: title rows before the header as headings, then one block per row."""
    header_at = find_header_row(rows)
    header = rows[header_at] if header_at is not None else None
    blocks: list[Block] = []
    for i, cells in enumerate(rows):
        if not any(cells) or i == header_at:
            continue
        if header_at is not None and i < header_at:
            blocks.append(Block(" ".join(c for c in cells if c), kind="heading", page=page, level=2))
            continue
        blocks.append(Block(row_text(cells, header), kind="table", page=page))
    return blocks


def read_xlsx_rows(path: Path) -> tuple[list[tuple[str, list[list[str]]]], list[str]]:
    """Every sheet's rows as text cells, plus warnings about formulas without cached values."""
    import openpyxl

    values_wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
    formulas_wb = openpyxl.load_workbook(path, read_only=True, data_only=False)
    sheets, warnings = [], []
    try:
        for ws_values, ws_formulas in zip(values_wb.worksheets, formulas_wb.worksheets):
            rows, missing = [], 0
            for vrow, frow in zip(ws_values.iter_rows(values_only=True),
                                  ws_formulas.iter_rows(values_only=True)):
                for v, f in zip(vrow, frow):
                    missing += v is None and isinstance(f, str) and f.startswith("=")
                rows.append([format_cell(v) for v in vrow])
            if missing:
                warnings.append(f"{path.name}: sheet {ws_values.title!r} has {missing} formula cell(s) "
                                f"without a cached value (saved without being calculated in Excel); "
                                f"they were read as empty")
            sheets.append((ws_values.title, rows))
    finally:
        values_wb.close()
        formulas_wb.close()
    return sheets, warnings


def read_csv_rows(path: Path, warnings: list[str] | None = None) -> list[list[str]]:
    """Rows of a CSV/TSV file in any supported encoding, with the delimiter sniffed."""
    text = read_text_file(path, warnings)
    if path.suffix.lower() == ".tsv":
        delimiter = "\t"
    else:
        try:
            delimiter = csv.Sniffer().sniff(text[:4096], delimiters=",\t;|").delimiter
        except csv.Error:
            delimiter = ","
    return [[format_cell(c) for c in row] for row in csv.reader(text.splitlines(), delimiter=delimiter)]


class XlsxLoader(Loader):
    """Every sheet of a workbook; the sheet name is a level-1 heading and ``page`` its 1-based index."""

    content = "zip"
    zip_member = "xl/workbook.xml"

    def load(self, path: Path) -> list[Block]:
        sheets, warnings = read_xlsx_rows(path)
        for message in warnings:
            self.warn(message)
        blocks: list[Block] = []
        for number, (name, rows) in enumerate(sheets, start=1):
            body = table_blocks(rows, page=number)
            if body:
                blocks.append(Block(name, kind="heading", page=number, level=1))
                blocks.extend(body)
        return blocks

    def title(self, path: Path, blocks: list[Block]) -> str:
        return self.doc_title or path.stem


class CsvLoader(Loader):
    content = "text"

    def load(self, path: Path) -> list[Block]:
        return table_blocks(read_csv_rows(path, self.warnings), page=None)

    def title(self, path: Path, blocks: list[Block]) -> str:
        return path.stem


register_loader((".xlsx", ".xlsm"), XlsxLoader)
register_loader((".csv", ".tsv"), CsvLoader)
