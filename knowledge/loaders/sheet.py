"""Spreadsheet loaders: Excel workbooks (openpyxl) and CSV/TSV files.

Each data row becomes one ``table`` block, written by :mod:`knowledge.loaders.tables` like every
other loader's tables: ``header1: v1；header2: v2`` when the sheet has a header row, so a retrieved
row still says what its numbers mean, the cells joined by `` | `` without one, and a note under the
table ("注1：…") as a ``note`` block. Formulas are read as the values Excel cached; a workbook saved
by a program that never calculated them (openpyxl, some exporters) has no cached values, and
the loader warns instead of guessing.
"""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path
from typing import Any

from knowledge.loaders.base import Loader, check_xml_sizes, read_text_file, register_loader
from knowledge.loaders.tables import find_header_row, row_text, table_blocks
from knowledge.text_utils import join_lines
from knowledge.core.types import Block
from config.settings import get_settings

__all__ = ["format_cell", "read_xlsx_rows", "read_csv_rows", "XlsxLoader", "CsvLoader",
           "find_header_row", "row_text", "table_blocks"]   # the table helpers live in tables.py


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


def read_xlsx_rows(path: Path, max_cells: int | None = None,
                   max_xml_mb: float | None = None) -> tuple[list[tuple[str, list[list[str]]]], list[str]]:
    """Every sheet's rows as text cells, plus warnings (formulas without cached values, a
    workbook cut at the cell budget).

    Only the cells a sheet really holds are read: the dimension a workbook declares
    (``A1:XFD20000``) is ignored, each row stops at its last non-empty cell and empty rows
    after the last filled one are dropped. At most ``max_cells`` cells (padding inside a row
    and empty rows included) are read from the whole workbook (default: the
    ``ingest.max_sheet_cells`` setting); the rest is skipped with a warning. An XML part
    other than a worksheet (shared strings, styles: openpyxl loads them whole, even in
    read-only mode) larger than ``max_xml_mb`` (default ``ingest.max_xml_mb``) is refused unread.
    """
    import openpyxl  # deferred: openpyxl, .xlsx files only

    budget = limit = _cell_budget(max_cells)
    xml_mb = max_xml_mb if max_xml_mb is not None else get_settings().ingest.max_xml_mb
    check_xml_sizes(path, xml_mb, "ingest.max_xml_mb", streamed=("xl/worksheets/",))
    values_wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
    formulas_wb = openpyxl.load_workbook(path, read_only=True, data_only=False)
    sheets, warnings = [], []
    try:
        for ws_values, ws_formulas in zip(values_wb.worksheets, formulas_wb.worksheets):
            if budget <= 0:
                warnings.append(f"{path.name}: sheet {ws_values.title!r} was not read: the workbook reached "
                                f"the cell budget (ingest.max_sheet_cells={limit})")
                continue
            declared = _declared_cells(ws_values)
            rows, missing, budget, cut = _sheet_rows(ws_values, ws_formulas, budget)
            if declared > limit:
                width = max((len(r) for r in rows), default=0)
                warnings.append(f"{path.name}: sheet {ws_values.title!r} declares {declared} cells (more than "
                                f"ingest.max_sheet_cells={limit}) but holds {len(rows)} row(s) "
                                f"of at most {width} column(s); only the cells it holds were read")
            if missing:
                warnings.append(f"{path.name}: sheet {ws_values.title!r} has {missing} formula cell(s) "
                                f"without a cached value (saved without being calculated in Excel); "
                                f"they were read as empty")
            if cut:
                warnings.append(f"{path.name}: sheet {ws_values.title!r} was read only up to row {len(rows)}: "
                                f"the workbook reached the cell budget (ingest.max_sheet_cells="
                                f"{limit}); the rest was not indexed")
            sheets.append((ws_values.title, rows))
    finally:
        values_wb.close()
        formulas_wb.close()
    return sheets, warnings


def _sheet_rows(ws_values: Any, ws_formulas: Any, budget: int) -> tuple[list[list[str]], int, int, bool]:
    """``(rows, formulas without a cached value, budget left, cut short)`` of one sheet."""
    for ws in (ws_values, ws_formulas):
        if hasattr(ws, "reset_dimensions"):  # read-only sheets pad every row to the declared width
            ws.reset_dimensions()
    rows: list[list[str]] = []
    filled_rows, missing = 0, 0
    for vrow, frow in zip(ws_values.iter_rows(values_only=True), ws_formulas.iter_rows(values_only=True)):
        budget -= max(1, len(vrow))   # padding and empty rows cost too: they are what a bomb is made of
        if budget < 0:
            del rows[filled_rows:]
            return rows, missing, 0, True
        last = _last_filled(vrow)
        for v, f in zip(vrow[:last], frow[:last]):
            missing += v is None and isinstance(f, str) and f.startswith("=")
        for f in frow[last:]:   # a formula without a value past the last filled cell
            missing += isinstance(f, str) and f.startswith("=")
        rows.append([format_cell(v) for v in vrow[:last]])
        if last:
            filled_rows = len(rows)
    del rows[filled_rows:]            # empty rows under the table
    return rows, missing, budget, False


def _declared_cells(ws: Any) -> int:
    """Cells in the range a sheet declares (its ``<dimension>``); 0 when it declares none."""
    try:
        rows, cols = ws.max_row, ws.max_column
    except (AttributeError, ValueError):
        return 0
    return int(rows or 0) * int(cols or 0)


def _last_filled(row: tuple[Any, ...]) -> int:
    """Length of ``row`` without its trailing empty cells.

    >>> _last_filled(("a", None, "b", None, "")), _last_filled((None, None)), _last_filled(())
    (3, 0, 0)
    """
    n = len(row)
    while n and (row[n - 1] is None or row[n - 1] == ""):
        n -= 1
    return n


def _cell_budget(max_cells: int | None) -> int:
    if max_cells is not None:
        return int(max_cells)
    return int(get_settings().ingest.max_sheet_cells)


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
        options = self.ingest_options()
        sheets, warnings = read_xlsx_rows(path, max_cells=options.max_sheet_cells, max_xml_mb=options.max_xml_mb)
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
