"""Glossary import and lookup.

A company glossary is usually a spreadsheet with a title row or two, blank rows, then a header
``序号 | 缩略语 | 英文全称 | 中文解释`` and one row per meaning; an abbreviation with two meanings
(PM = 产品经理 / 项目经理) has two rows. :func:`import_glossary` reads that, plain 2- or 3-column
CSV files, and JSON mappings, and reports every row it skipped with the reason.
:class:`Glossary` looks terms up (exact, then full-width-normalised and case-insensitive) and
meanings back to terms (:meth:`Glossary.search_meaning`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from knowledge.core.errors import GlossaryError, IngestError
from knowledge.core.files import atomic_write_json
from knowledge.text_utils import is_cjk, normalize_width
from knowledge.core.types import GlossaryEntry, Meaning, SkippedRow
from knowledge.loaders.base import read_text_file
from knowledge.loaders.sheet import read_xlsx_rows, read_csv_rows
from knowledge.loaders.tables import is_note_text

__all__ = ["Glossary", "GlossaryImport", "import_glossary", "normalize_width", "normalize_term",
           "split_meanings", "detect_header", "looks_like_glossary"]

FORMAT_NAME = "kb-glossary"
_HEADER_SCAN_ROWS = 30
_ROLE_NAMES = {
    "index": {"序号", "编号", "no", "#", "index", "id", "number", "sn"},
    "term": {"缩略语", "缩写", "缩略词", "英文缩写", "简称", "术语", "词条", "abbreviation", "abbr",
             "acronym", "term", "shortform"},
    "english": {"英文全称", "英文全名", "全称", "英文", "英文名称", "fullname", "fullform", "longform",
                "expansion", "english", "englishname", "definitionen"},
    "chinese": {"中文解释", "中文", "中文名称", "中文全称", "中文含义", "中文释义", "中文意思", "chinese",
                "chinesename", "chinesemeaning", "中文说明"},
    "meaning": {"解释", "含义", "释义", "意思", "说明", "定义", "meaning", "description",
                "definition", "explanation"},
}
_SPLIT_RE = re.compile(r"\s*[/／;；]\s*")
_HEADER_JUNK_RE = re.compile(r"[\s._:：*()（）\-]+")


@dataclass
class GlossaryImport:
    """What :func:`import_glossary` read: entries, and the rows it skipped with reasons."""

    entries: list[GlossaryEntry]
    skipped: list[SkippedRow] = field(default_factory=list)


# ---------------------------------------------------------------- pure helpers

def normalize_term(term: Any) -> str:
    """A term as the glossary keys it: half-width, trimmed, inner whitespace collapsed.

    >>> normalize_term("  ＰＭ "), normalize_term("Wi  Fi")
    ('PM', 'Wi Fi')
    """
    return " ".join(normalize_width(str(term or "")).split())


def _fold(text: str) -> str:
    return normalize_term(text).casefold()


def _header_key(cell: str) -> str:
    return _HEADER_JUNK_RE.sub("", normalize_width(cell).casefold())


def detect_header(rows: list[list[str]]) -> tuple[int, dict[str, int]] | None:
    """Find the header row: ``(row index, {role: column})`` or None.

    A header names a term column and at least one meaning column (English long form, Chinese
    explanation or a generic meaning); title rows and blank rows above it are ignored.

    >>> detect_header([["公司缩略语表"], [], ["序号", "缩略语", "英文全称", "中文解释"]])
    (2, {'index': 0, 'term': 1, 'english': 2, 'chinese': 3})
    >>> detect_header([["No.", "Abbreviation", "Full Name", "Chinese"]])[1]
    {'index': 0, 'term': 1, 'english': 2, 'chinese': 3}
    >>> detect_header([["PM", "Product Manager"]]) is None
    True
    """
    for i, row in enumerate(rows[:_HEADER_SCAN_ROWS]):
        mapping: dict[str, int] = {}
        for col, cell in enumerate(row):
            key = _header_key(cell or "")
            for role, names in _ROLE_NAMES.items():
                if key in names and role not in mapping:
                    mapping[role] = col
        if "term" in mapping and mapping.keys() & {"english", "chinese", "meaning"}:
            return i, mapping
    return None


def plain_columns(rows: list[list[str]]) -> dict[str, int]:
    """Column roles for a glossary without a header: ``[index,] term, meaning`` or
    ``[index,] term, english, chinese``. A first column of numbers is an index.

    >>> plain_columns([["1", "PM", "Product Manager", "产品经理"], ["2", "AM", "Account Manager", "客户经理"]])
    {'index': 0, 'term': 1, 'english': 2, 'chinese': 3}
    >>> plain_columns([["PM", "产品经理"]])
    {'term': 0, 'meaning': 1}
    """
    width = max((len(r) for r in rows), default=0)
    used = [c for c in range(width) if any(c < len(r) and r[c] for r in rows)]
    mapping: dict[str, int] = {}
    if len(used) >= 3:
        first = [r[used[0]] for r in rows if used[0] < len(r) and r[used[0]]]
        if first and sum(v.isdigit() for v in first) * 10 >= len(first) * 9:
            mapping["index"] = used.pop(0)
    roles = ["term", "meaning"] if len(used) <= 2 else ["term", "english", "chinese"]
    mapping.update(zip(roles, used))
    return mapping


def split_meanings(english: str, chinese: str, description: str = "") -> list[Meaning]:
    """Meanings of one row. The cells are not split, except when the English and Chinese cells
    both split by ``/ ／ ; ；`` into the same number of parts, which are then paired. A
    ``description`` goes with every meaning of the row.

    >>> [(m.english, m.chinese) for m in split_meanings("Product Manager/Project Manager", "产品经理/项目经理")]
    [('Product Manager', '产品经理'), ('Project Manager', '项目经理')]
    >>> split_meanings("Product Manager; Project Manager", "产品经理")
    [Meaning(english='Product Manager; Project Manager', chinese='产品经理', description='')]
    """
    english, chinese = normalize_term(english), " ".join(str(chinese or "").split())
    description = " ".join(str(description or "").split())
    if not english and not chinese:
        return []
    en_parts, zh_parts = _SPLIT_RE.split(english), _SPLIT_RE.split(chinese)
    if (english and chinese and len(en_parts) == len(zh_parts) > 1
            and all(en_parts) and all(zh_parts)):
        return [Meaning(english=e, chinese=z, description=description) for e, z in zip(en_parts, zh_parts)]
    return [Meaning(english=english, chinese=chinese, description=description)]


def _has_cjk(text: str) -> bool:
    return any(is_cjk(ch) for ch in text)


def _meaning_key(m: Meaning) -> tuple[str, str]:
    return _fold(m.english), _fold(m.chinese)


def _row_meanings(row: list[str], mapping: dict[str, int]) -> list[Meaning]:
    """A row's meanings. A generic meaning column (解释, 说明, Description, Meaning) fills the
    Chinese explanation only with Chinese text and the English long form only with English
    text; when that field already has its own column, the text is kept as the description."""
    def cell(role: str) -> str:
        col = mapping.get(role)
        return str(row[col]).strip() if col is not None and col < len(row) and row[col] else ""

    english, chinese, generic = cell("english"), cell("chinese"), cell("meaning")
    description = ""
    if generic:
        if _has_cjk(generic) and not chinese:
            chinese = generic
        elif not _has_cjk(generic) and not english:
            english = generic
        else:
            description = generic
    return split_meanings(english, chinese, description)


_FOOTNOTE_MIN_CHARS = 25     # longer than any term (see _MAX_TERM_CHARS)


def is_footnote(cells: list[str], after_blank: bool) -> bool:
    """A row under the glossary that is a footnote, not an entry: one filled cell that opens
    like a note ("注：本表…", "Note: …"), or a sentence-long one after a blank row.

    >>> is_footnote(["注：同一缩略语在不同场景中含义可能不同", "", ""], after_blank=True)
    True
    >>> is_footnote(["Maintained by Engineering Enablement and People Operations."], after_blank=True)
    True
    >>> is_footnote(["", "TBD", ""], after_blank=True), is_footnote(["", "PM", "产品经理"], after_blank=False)
    (False, False)
    """

    filled = [str(c).strip() for c in cells if c is not None and str(c).strip()]
    if len(filled) != 1:
        return False
    return is_note_text(filled[0]) or (after_blank and len(filled[0]) >= _FOOTNOTE_MIN_CHARS)


# ---------------------------------------------------------------- import

class _Collector:
    """Gathers rows into entries (one per term, meanings in file order) and skipped rows."""

    def __init__(self, source: str):
        self.source = source
        self.entries: dict[str, GlossaryEntry] = {}
        self.first_row: dict[tuple[str, tuple[str, str]], int] = {}
        self.skipped: list[SkippedRow] = []

    def add(self, row: int, term: str, meanings: list[Meaning], where: str = "", preview: str = "") -> None:
        term = normalize_term(term)
        if not term:
            shown = f" (row holds: {preview[:40]}{'…' if len(preview) > 40 else ''})" if preview else ""
            self.skipped.append(SkippedRow(row, f"{where}blank term{shown}"))
            return
        if not meanings:
            self.skipped.append(SkippedRow(row, f"{where}no meaning for {term!r}"))
            return
        entry = self.entries.setdefault(term, GlossaryEntry(term=term, meanings=[], source=self.source))
        fresh = []
        for m in meanings:
            key = (term, _meaning_key(m))
            if key not in self.first_row:
                self.first_row[key] = row
                fresh.append(m)
        if not fresh:
            first = self.first_row[(term, _meaning_key(meanings[0]))]
            reason = f"{where}duplicate meaning of {term!r} (same as row {first})"
            self.skipped.append(SkippedRow(row, reason))
            return
        entry.meanings.extend(fresh)
        entry.rows.append(row)

    def result(self) -> GlossaryImport:
        return GlossaryImport(entries=list(self.entries.values()), skipped=self.skipped)


def import_glossary(path: Path, max_cells: int | None = None, max_xml_mb: float | None = None) -> GlossaryImport:
    """Read a glossary file (.xlsx/.xlsm, .csv/.tsv/.txt, .json).

    Raises :class:`GlossaryError` naming the file when it cannot be read or holds no entry.
    A workbook is read within ``max_cells`` / ``max_xml_mb`` (:func:`read_xlsx_rows`; default
    the ``ingest`` settings).
    """
    path = Path(path)
    if not path.is_file():
        raise GlossaryError(f"{path}: glossary file not found")
    ext = path.suffix.lower()
    try:
        if ext == ".json":
            result = _import_json(path)
        elif ext in (".xlsx", ".xlsm"):
            result = _import_workbook(path, max_cells, max_xml_mb)
        elif ext in (".csv", ".tsv", ".txt"):
            result = _import_csv(path)
        elif ext == ".xls":
            raise GlossaryError(f"{path}: legacy .xls workbooks are not supported; save it as .xlsx")
        else:
            raise GlossaryError(f"{path}: unsupported glossary file type {ext!r} "
                                f"(use .xlsx, .csv or .json)")
    except GlossaryError:
        raise
    except (OSError, ValueError, KeyError, TypeError, IngestError) as exc:
        raise GlossaryError(f"{path}: cannot read glossary ({type(exc).__name__}: {exc})") from exc
    except Exception as exc:  # openpyxl/zipfile raise their own types for damaged workbooks
        raise GlossaryError(f"{path}: corrupt or unreadable glossary ({type(exc).__name__}: {exc})") from exc
    if not result.entries:
        reasons = "; ".join(f"row {s.row}: {s.reason}" for s in result.skipped[:5])
        raise GlossaryError(f"{path}: no glossary entries found" + (f" ({reasons})" if reasons else ""))
    return result


GLOSSARY_SHEET_EXTENSIONS = (".xlsx", ".xlsm", ".csv", ".tsv")
_MIN_DETECTED_ENTRIES = 3
_MAX_TERM_CHARS = 24


def looks_like_glossary(path: Path, max_cells: int | None = None, max_xml_mb: float | None = None) -> bool:
    r"""Whether a spreadsheet or CSV among the documents is an abbreviation list.

    It is when one of its sheets has a glossary header (:func:`detect_header`: a term column
    such as 缩略语/Abbreviation and a meaning column), at least three entries import from it,
    and its terms are short (abbreviations, not sentences): a table of expense limits or a
    price list never qualifies, since none of its columns is named like a term column.

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "terms.csv").write_text("缩写,英文全称,中文含义\nSKU,Stock Keeping Unit,库存单位\n"
    ...                                  "ETA,Estimated Time of Arrival,预计到达时间\nPOD,Proof of Delivery,签收回单\n",
    ...                                  encoding="utf-8")
    >>> _ = (d / "limits.csv").write_text("城市,标准(元)\n北京,600\n上海,600\n杭州,450\n", encoding="utf-8")
    >>> looks_like_glossary(d / "terms.csv"), looks_like_glossary(d / "limits.csv")
    (True, False)
    """
    path = Path(path)
    if path.suffix.lower() not in GLOSSARY_SHEET_EXTENSIONS or not path.is_file():
        return False
    try:
        if path.suffix.lower() in (".csv", ".tsv"):
            tables = [read_csv_rows(path)]
        else:
            tables = [rows for _, rows in read_xlsx_rows(path, max_cells, max_xml_mb)[0]]
    except Exception:  # noqa: BLE001 - unreadable here: let the document loader report it
        return False
    for rows in tables:
        found = detect_header(rows)
        if found is None:
            continue
        collector = _Collector(path.name)
        _import_rows(collector, rows)
        entries = collector.result().entries
        short = [e for e in entries if len(e.term) <= _MAX_TERM_CHARS]
        if len(entries) >= _MIN_DETECTED_ENTRIES and len(short) >= 0.9 * len(entries):
            return True
    return False


def glossary_entries(path: str, max_cells: int, max_xml_mb: float) -> int:
    """How many entries ``path`` imports as a glossary (:class:`GlossaryError` when none).

    The reading half of a glossary upload, run by the API in a limited child process
    (:func:`knowledge.bounded.call_bounded`), so a hostile workbook never holds the server.
    """
    return len(import_glossary(Path(path), max_cells, max_xml_mb).entries)


def detected_glossary_entries(path: str, max_cells: int, max_xml_mb: float) -> int:
    """Entries of ``path`` when it :func:`looks_like_glossary`, else 0 (a child-process target
    like :func:`glossary_entries`, for documents uploaded that may be abbreviation lists)."""
    if not looks_like_glossary(Path(path), max_cells, max_xml_mb):
        return 0
    return len(import_glossary(Path(path), max_cells, max_xml_mb).entries)


def _import_rows(collector: _Collector, rows: list[list[str]], where: str = "") -> bool:
    """Add a table's rows; returns False when the table has neither a header nor usable rows."""
    found = detect_header(rows)
    if found is not None:
        start, mapping = found[0] + 1, found[1]
    else:
        start, mapping = 0, plain_columns(rows)
    if "term" not in mapping:
        return False
    after_blank = False
    for i in range(start, len(rows)):
        row = rows[i]
        if not any(str(c).strip() for c in row if c is not None):
            after_blank = True
            continue
        if is_footnote(row, after_blank):
            continue                # "注：本表…" under the table: not an entry, nothing to warn about
        after_blank = False
        term_col = mapping["term"]
        term = row[term_col] if term_col < len(row) else ""
        preview = " ".join(str(c).strip() for c in row if c is not None and str(c).strip())
        collector.add(i + 1, term, _row_meanings(row, mapping), where, preview)
    return True


def _import_workbook(path: Path, max_cells: int | None = None, max_xml_mb: float | None = None) -> GlossaryImport:

    sheets, _ = read_xlsx_rows(path, max_cells, max_xml_mb)
    collector = _Collector(path.name)
    with_header = [(name, rows) for name, rows in sheets if detect_header(rows) is not None]
    # Several sheets with a header (A-M, N-Z) are all read; otherwise the first sheet with data.
    chosen = with_header or [next(((n, r) for n, r in sheets if any(any(x) for x in r)), ("", []))]
    for name, rows in chosen:
        _import_rows(collector, rows, where=f"sheet {name!r}: " if len(chosen) > 1 else "")
    return collector.result()


def _import_csv(path: Path) -> GlossaryImport:

    collector = _Collector(path.name)
    _import_rows(collector, read_csv_rows(path))
    return collector.result()


def _import_json(path: Path) -> GlossaryImport:

    data = json.loads(read_text_file(path))
    collector = _Collector(path.name)
    if isinstance(data, dict) and isinstance(data.get("entries"), list):
        data = data["entries"]          # the format Glossary.to_json writes
    if isinstance(data, list):
        for n, item in enumerate(data, start=1):
            if not isinstance(item, dict):
                collector.skipped.append(SkippedRow(n, f"expected an object, got {type(item).__name__}"))
                continue
            meanings = [_json_meaning(m) for m in item.get("meanings", [])]
            if not meanings and (item.get("english") or item.get("chinese")):
                meanings = split_meanings(item.get("english", ""), item.get("chinese", ""),
                                          item.get("description", ""))
            collector.add(n, item.get("term", ""), [m for m in meanings if m.english or m.chinese])
    elif isinstance(data, dict):
        for n, (term, value) in enumerate(data.items(), start=1):
            values = value if isinstance(value, list) else [value]
            meanings = [_json_meaning(v) for v in values if v]
            collector.add(n, term, [m for m in meanings if m.english or m.chinese])
    else:
        raise GlossaryError(f"{path}: JSON glossary must be an object {{\"ABBR\": [\"long form\", ...]}}, "
                            f"got {type(data).__name__}")
    return collector.result()


def _json_meaning(value: Any) -> Meaning:
    """A JSON meaning: a string (Chinese or English by its script) or
    {"english", "chinese"[, "description"]}."""
    if isinstance(value, dict):
        return Meaning(english=normalize_term(value.get("english", "")),
                       chinese=" ".join(str(value.get("chinese", "") or "").split()),
                       description=" ".join(str(value.get("description", "") or "").split()))
    text = " ".join(str(value).split())
    return Meaning(chinese=text) if _has_cjk(text) else Meaning(english=text)


# ---------------------------------------------------------------- lookup

class Glossary:
    """Terms and their meanings, looked up by term or by meaning.

    >>> g = Glossary([GlossaryEntry("PM", [Meaning("Product Manager", "产品经理")]),
    ...               GlossaryEntry("PM", [Meaning("Project Manager", "项目经理")])])
    >>> len(g), [m.chinese for m in g.get("ｐｍ").meanings]
    (1, ['产品经理', '项目经理'])
    >>> [(e.term, m.chinese) for e, m in g.search_meaning("项目经理负责")]
    [('PM', '项目经理')]
    """

    def __init__(self, entries: Iterable[GlossaryEntry] = ()):
        self.entries: dict[str, GlossaryEntry] = {}
        self._folded: dict[str, str] = {}
        for entry in entries:
            self._add(entry)

    def _add(self, entry: GlossaryEntry) -> None:
        term = normalize_term(entry.term)
        if not term:
            return
        existing = self.entries.get(term)
        if existing is None:
            existing = GlossaryEntry(term=term, meanings=[], source=entry.source, rows=[])
            self.entries[term] = existing
            self._folded.setdefault(term.casefold(), term)
        known = {_meaning_key(m): m for m in existing.meanings}
        for m in entry.meanings:
            same = known.get(_meaning_key(m))
            if same is None:
                known[_meaning_key(m)] = copy = Meaning(english=m.english, chinese=m.chinese,
                                                        description=m.description)
                existing.meanings.append(copy)
            elif not same.description and m.description:
                same.description = m.description
        if entry.source == existing.source:
            existing.rows.extend(r for r in entry.rows if r not in existing.rows)

    def get(self, term: str) -> GlossaryEntry | None:
        """Exact term first, then full-width-normalised, then case-insensitive."""
        if term in self.entries:
            return self.entries[term]
        norm = normalize_term(term)
        if norm in self.entries:
            return self.entries[norm]
        key = self._folded.get(norm.casefold())
        return self.entries.get(key) if key is not None else None

    def __contains__(self, term: object) -> bool:
        return isinstance(term, str) and self.get(term) is not None

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[GlossaryEntry]:
        return iter(self.entries.values())

    def merge(self, other: "Glossary | Iterable[GlossaryEntry]") -> "Glossary":
        """Add another glossary's entries in place (new meanings appended); returns ``self``."""
        for entry in other:
            self._add(entry)
        return self

    def search_meaning(self, text: str) -> list[tuple[GlossaryEntry, Meaning]]:
        """Reverse lookup: meanings whose Chinese explanation or English long form relates to
        ``text``, best first: equal to it, then found inside it (longer first; English on word
        boundaries, at least 2 CJK or 4 Latin characters), then containing it (shorter first).
        Comparison is full-width-normalised and case-insensitive.
        """
        query = _fold(text)
        if not query:
            return []
        scored: dict[tuple[str, int], tuple[tuple[int, int], GlossaryEntry, Meaning]] = {}
        for entry in self:
            for i, meaning in enumerate(entry.meanings):
                for form in (meaning.chinese, meaning.english):
                    rank = _relation(_fold(form), query)
                    key = (entry.term, i)
                    if rank is not None and (key not in scored or rank < scored[key][0]):
                        scored[key] = (rank, entry, meaning)
        return [(entry, meaning) for _, entry, meaning in sorted(scored.values(), key=lambda x: x[0])]

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT_NAME, "version": 1, "entries": [e.to_dict() for e in self]}

    def to_json(self, path: Path) -> None:
        """Write the glossary as JSON (atomically: a temp file, then a rename)."""
        atomic_write_json(path, self.to_dict())

    @classmethod
    def from_json(cls, path: Path) -> "Glossary":
        """Read what :meth:`to_json` wrote (JSON mappings ``{"ABBR": [...]}`` work too)."""
        path = Path(path)
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise GlossaryError(f"{path}: cannot read glossary JSON ({exc})") from exc
        if isinstance(data, dict) and data.get("format") == FORMAT_NAME:
            return cls(GlossaryEntry.from_dict(e) for e in data.get("entries", []))
        return cls(import_glossary(path).entries)


def _relation(form: str, query: str) -> tuple[int, int] | None:
    """Sort key of how a meaning form relates to the query, or None when it does not."""
    if not form:
        return None
    if form == query:
        return (0, 0)
    if _found_inside(form, query):
        return (1, -len(form))
    if len(query) >= 2 and query in form:
        return (2, len(form))
    return None


def _found_inside(form: str, text: str) -> bool:
    if _has_cjk(form):
        return len(form) >= 2 and form in text
    if len(form) < 4:
        return False
    return re.search(rf"(?<![0-9a-z]){re.escape(form)}(?![0-9a-z])", text) is not None
