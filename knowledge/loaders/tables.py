"""Table rows as records: the one writer every loader uses for tables.

A row reads ``Header: value；Header: value`` (``; `` between fields of an English table) so a
retrieved row still says what each value means; :mod:`knowledge.facts` and the answer composer
read that form. Empty cells are left out. A table without a recognisable header (one row only,
or a first row that looks like data) keeps its cells in place, joined by `` | ``. A row with a
single filled cell under a wider table ("注1：…", "Note: …") is a note paragraph, not a record.

Spreadsheets give no sign of which row is the header, so :func:`find_header_row` weighs the
evidence; Word, HTML, Markdown and PowerPoint mark it (bold or repeated header row, ``<th>``,
the ``|---|`` line, the header-row style) and pass ``marked=True``.
"""

from __future__ import annotations

import re

from knowledge.core.types import Block
from knowledge.text_utils import HAN_RE, ends_paragraph

HEADER_SCAN_ROWS = 20
CHINESE_SEPARATOR = "；"
ENGLISH_SEPARATOR = "; "

# A note or footnote under a table: 注：/ 注1：/ 备注：/ 说明：/ Note: / Notes: / * / ※
_NOTE_RE = re.compile(
    r"^\s*(?:[*＊※†]"
    r"|(?:注|备注|附注|说明|注意|特别说明)\s*[0-9０-９①-⑳一二三四五六七八九十]*\s*[:：]"
    r"|(?:notes?|n\.\s?b\.|remarks?)\s*\d*\s*[:：.])",
    re.IGNORECASE,
)
_LATIN_WORD_RE = re.compile(r"[A-Za-z]+")
_RECORD_FIELD_RE = re.compile(r"(?P<key>[^；;:：\n]{1,24})[:：]\s*(?P<val>[^；;\n]*)")


def looks_numeric(text: str) -> bool:
    """A number as a spreadsheet cell holds it: ``600``, ``1,200``, ``0.15``, ``30%``.

    >>> looks_numeric("1,200"), looks_numeric("30%"), looks_numeric("600元")
    (True, True, False)
    """
    try:
        float(text.replace(",", "").rstrip("%"))
        return True
    except ValueError:
        return False


def find_header_row(rows: list[list[str]], marked: bool = False) -> int | None:
    """Index of the header row, or None when the table has none.

    Rows with fewer than two filled cells before it are title rows or blanks; the first row with
    two or more cells is the candidate. It is no header when it looks like data (a number, the
    same text twice) or when no data row follows it. A candidate the format ``marked`` as a header
    is then taken; otherwise, like :meth:`csv.Sniffer.has_header`, each column votes: numbers
    below a text cell vote twice, values of one fixed length (when the candidate's cell has
    another length) or values that mostly hold digits below a cell without any vote once. There
    are no votes against: Chinese labels are often as long as their values. An all-text table
    without such evidence gets no header (its rows are then joined with `` | ``, losing nothing).

    >>> find_header_row([["2024 差旅标准"], [], ["级别", "住宿费"], ["经理", "600"], ["员工", "400"]])
    2
    >>> find_header_row([["经理", "600"], ["员工", "400"]]) is None
    True
    >>> find_header_row([["PM", "产品经理"], ["AM", "客户经理"], ["CFO", "首席财务官"]]) is None
    True
    >>> find_header_row([["记录名称", "完成时限"], ["入院记录", "入院后24小时内"], ["手术记录", "术后24小时内"]])
    0
    >>> find_header_row([["事项", "联系谁"], ["请假", "HRBP"]], marked=True)
    0
    >>> find_header_row([["事项", "联系谁"]], marked=True) is None
    True
    """
    for i, row in enumerate(rows[:HEADER_SCAN_ROWS]):
        cells = [c for c in row if c]
        if len(cells) < 2:
            continue
        if any(looks_numeric(c) for c in cells) or len(set(cells)) != len(cells):
            return None
        data = [r for r in rows[i + 1:i + 1 + HEADER_SCAN_ROWS] if sum(1 for c in r if c) >= 2]
        if not data:
            return None
        return i if marked or _header_votes(row, data) > 0 else None
    return None


def _has_digit(text: str) -> bool:
    return any(ch.isdigit() for ch in text)


def _header_votes(header: list[str], data: list[list[str]]) -> int:
    votes = 0
    for col, name in enumerate(header):
        values = [r[col] for r in data if col < len(r) and r[col]]
        if not name or not values:
            continue
        if sum(looks_numeric(v) for v in values) * 2 > len(values):
            votes += 2          # text above numbers is the strongest sign of a header
        elif len({len(v) for v in values}) == 1 and len(name) != len(values[0]):
            votes += 1
        elif not _has_digit(name) and sum(_has_digit(v) for v in values) * 2 > len(values):
            votes += 1          # "完成时限" above "入院后24小时内", "术后24小时内"
    return votes


def is_chinese(text: str) -> bool:
    """Whether text reads as Chinese: at least as many ideographs as Latin words.

    >>> is_chinese("客户经理（AM）、FAE"), is_chinese("Hotel cap: USD 300"), is_chinese("")
    (True, False, False)
    """
    ideographs = len(HAN_RE.findall(text))
    return ideographs > 0 and ideographs >= len(_LATIN_WORD_RE.findall(text))


def record_separator(cells: list[str]) -> str:
    """``"；"`` between the fields of a Chinese table's records, ``"; "`` in an English one.

    >>> record_separator(["级别", "住宿费", "经理", "600"]), record_separator(["Tier", "Hotel cap", "Tier 1"])
    ('；', '; ')
    """
    return CHINESE_SEPARATOR if is_chinese(" ".join(c for c in cells if c)) else ENGLISH_SEPARATOR


def row_text(cells: list[str], header: list[str] | None, sep: str | None = None) -> str:
    """One row as text: ``Header: value`` fields joined by ``sep`` (by default
    :func:`record_separator` of the header and the row), or positional cells without a header.

    >>> row_text(["经理", "600", ""], ["级别", "住宿费", "备注"])
    '级别: 经理；住宿费: 600'
    >>> row_text(["Tier 1", "USD 300"], ["Tier", "Hotel cap per night"])
    'Tier: Tier 1; Hotel cap per night: USD 300'
    >>> row_text(["经理", "", "600"], None)
    '经理 |  | 600'
    """
    if header is None:
        while cells and not cells[-1]:
            cells = cells[:-1]
        return " | ".join(cells)
    if sep is None:
        sep = record_separator(list(header) + list(cells))
    pairs = []
    for i, value in enumerate(cells):
        if not value:
            continue
        name = header[i] if i < len(header) and header[i] else ""
        pairs.append(f"{name}: {value}" if name else value)
    return sep.join(pairs)


def is_note_text(text: str) -> bool:
    """Whether a cell opens a note or footnote: ``注：``, ``注1：``, ``说明：``, ``Note:``, ``*``.

    >>> is_note_text("注1：保养到期前7天提醒"), is_note_text("Note: rates exclude tax"), is_note_text("说明书")
    (True, True, False)
    """
    return bool(_NOTE_RE.match(text))


def table_blocks(rows: list[list[str]], page: int | None = None, marked: bool = False,
                 title_level: int | None = 2) -> list[Block]:
    """Blocks for one table: one ``table`` block per row, notes under it as ``note`` blocks.

    Single-cell rows before the header are the table's title: headings of ``title_level`` (a
    sheet title under the sheet name), or paragraphs when ``title_level`` is None (a caption
    row inside a document, which must not replace the section heading). A row that repeats
    the header is dropped. A row with one filled cell in a table of two or more columns is a
    note when it opens like one (:func:`is_note_text`), reads as a sentence, or comes after a
    blank row or another note.

    >>> rows = [["车型", "保养周期"], ["4.2米", "每5000公里"], [], ["注1：到期前7天提醒。", ""]]
    >>> [(b.kind, b.text) for b in table_blocks(rows)]
    [('table', '车型: 4.2米；保养周期: 每5000公里'), ('note', '注1：到期前7天提醒。')]
    """
    header_at = find_header_row(rows, marked)
    header = rows[header_at] if header_at is not None else None
    width = max((sum(1 for c in r if c) for r in rows), default=0)
    sep = record_separator([c for r in rows for c in r])
    blocks: list[Block] = []
    seen_row = body_ended = False   # a blank row or a note ends the rows of the table proper
    for i, cells in enumerate(rows):
        filled = [c for c in cells if c]
        if not filled:
            body_ended = body_ended or seen_row
            continue
        if i == header_at:
            continue
        if header_at is not None and i < header_at:
            title = " ".join(filled)
            blocks.append(Block(title, kind="heading", page=page, level=title_level) if title_level
                          else Block(title, kind="para", page=page))
            continue
        if header is not None and _same_cells(cells, header):
            continue            # a header row repeated (a table continued on the next page)
        if width >= 2 and len(filled) == 1 and (body_ended or _reads_as_note(filled[0])):
            blocks.append(Block(filled[0], kind="note", page=page))
            body_ended = True
            continue
        blocks.append(Block(row_text(cells, header, sep), kind="table", page=page))
        seen_row = True
    return blocks


def _same_cells(a: list[str], b: list[str]) -> bool:
    return [c for c in a if c] == [c for c in b if c]


def _reads_as_note(text: str) -> bool:
    return is_note_text(text) or ends_paragraph(text)


def is_record_line(line: str) -> bool:
    """A table row as :func:`row_text` writes it: four or more `` | `` cells, or three or more
    ``key: value`` fields separated by ``；`` or ``;``.

    >>> is_record_line("职级: A类；一类城市: 900；二类城市: 700"), is_record_line("a | b | c | d")
    (True, True)
    >>> is_record_line("Tier: Tier 1; Hotel cap: USD 300; Per diem: USD 85"), is_record_line("住宿费：每晚600元。")
    (True, False)
    """
    if "\n" in line:
        return False
    if line.count("|") >= 3:
        return True
    return len(_RECORD_FIELD_RE.findall(line)) >= 3 and line.count("；") + line.count(";") >= 2
