"""PDF loader (PyMuPDF): text blocks with page numbers, lines re-joined, headings by font size."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from knowledge.errors import IngestError
from knowledge.loaders.base import Loader, register_loader
from knowledge.text_utils import classify_text, ends_sentence, join_lines, starts_new_block
from knowledge.types import Block

# Page furniture that carries no content: "3", "- 3 -", "第 3 页", "第3页 共10页", "Page 3 of 10".
_PAGE_NUMBER_RE = re.compile(
    r"^(?:[-—–\s]*\d+[-—–\s]*|第\s*\d+\s*页(?:\s*[,，/]?\s*共\s*\d+\s*页)?|page\s+\d+(?:\s+of\s+\d+)?)$",
    re.IGNORECASE,
)
_HEADING_RATIO = 1.15      # a block at least this much larger than body text is a heading
_BOLD_FLAG = 16            # PyMuPDF span flag for bold fonts


@dataclass
class _RawBlock:
    lines: list[str]
    size: float            # the largest font size in the block
    bold: bool             # every span bold
    page: int


class PdfLoader(Loader):
    """Reads a text PDF; a PDF with no text layer at all is refused (it needs OCR first)."""

    content = "pdf"

    def load(self, path: Path) -> list[Block]:
        import pymupdf

        try:
            doc = pymupdf.open(path)
        except Exception as exc:  # PyMuPDF raises FileDataError / RuntimeError for damage
            raise IngestError(path, f"corrupt PDF ({exc})") from exc
        with doc:
            if doc.needs_pass:
                raise IngestError(path, "encrypted PDF (a password is required to read it)")
            if doc.page_count == 0:
                raise IngestError(path, "PDF has no pages (corrupt?)")
            self.doc_title = (doc.metadata or {}).get("title") or ""
            raw, empty_pages = self._read_pages(doc, pymupdf)
        if not raw:
            raise IngestError(path, f"no text layer (scanned PDF?) in any of its {len(empty_pages)} "
                                    f"pages; run OCR on it first")
        if empty_pages:
            self.warn(f"{path.name}: page(s) {', '.join(map(str, empty_pages))} have no text layer "
                      f"(scanned images?) and were skipped")
        return _to_blocks(raw)

    @staticmethod
    def _read_pages(doc, pymupdf) -> tuple[list[_RawBlock], list[int]]:
        flags = pymupdf.TEXTFLAGS_DICT & ~pymupdf.TEXT_PRESERVE_IMAGES
        raw: list[_RawBlock] = []
        for number, page in enumerate(doc, start=1):
            for block in page.get_text("dict", flags=flags, sort=True)["blocks"]:
                raw.extend(_raw_blocks(block, number))
        raw = _drop_running_lines(raw, doc.page_count)
        pages_with_text = {b.page for b in raw}
        empty_pages = [n for n in range(1, doc.page_count + 1) if n not in pages_with_text]
        return raw, empty_pages


def _raw_blocks(block: dict, page: int) -> list[_RawBlock]:
    """The lines of one PyMuPDF text block, split where the font size changes (a heading set
    close above its paragraph often lands in the same block)."""
    out: list[_RawBlock] = []
    for line in block.get("lines", []):
        spans = [s for s in line.get("spans", []) if s.get("text", "").strip()]
        text = "".join(s["text"] for s in line.get("spans", [])).strip()
        if not text or not spans:
            continue
        size = max(s["size"] for s in spans)
        bold = all(s["flags"] & _BOLD_FLAG or "bold" in s.get("font", "").lower() for s in spans)
        if out and abs(out[-1].size - size) <= 0.1 * max(size, 1.0):
            out[-1].lines.append(text)
            out[-1].bold = out[-1].bold and bold
        else:
            out.append(_RawBlock([text], size, bold, page))
    return [b for b in out if not (len(b.lines) == 1 and _PAGE_NUMBER_RE.match(b.lines[0]))]


def _drop_running_lines(raw: list[_RawBlock], page_count: int) -> list[_RawBlock]:
    """Drop one-line blocks repeated on more than half of the pages (running headers/footers)."""
    if page_count < 3:
        return raw
    pages_by_text: dict[str, set[int]] = {}
    for b in raw:
        if len(b.lines) == 1 and len(b.lines[0]) <= 60:
            pages_by_text.setdefault(b.lines[0], set()).add(b.page)
    running = {t for t, pages in pages_by_text.items() if len(pages) * 2 > page_count}
    return [b for b in raw if not (len(b.lines) == 1 and b.lines[0] in running)]


def _body_size(raw: list[_RawBlock]) -> float:
    """The font size that carries the most characters: the size of running text."""
    counts: Counter[float] = Counter()
    for b in raw:
        counts[round(b.size, 1)] += sum(len(line) for line in b.lines)
    return counts.most_common(1)[0][0]


def _heading_levels(raw: list[_RawBlock], body: float) -> dict[float, int]:
    """Map each heading font size to a level: the largest size is level 1."""
    sizes = sorted({round(b.size, 1) for b in raw if b.size >= body * _HEADING_RATIO}, reverse=True)
    return {size: level for level, size in enumerate(sizes, start=1)}


def _is_heading(b: _RawBlock, body: float) -> bool:
    text = join_lines(b.lines)
    if len(b.lines) > 3 or len(text) > 80 or ends_sentence(text):
        return False
    return b.size >= body * _HEADING_RATIO or (b.bold and len(text) <= 40)


def _to_blocks(raw: list[_RawBlock]) -> list[Block]:
    body = _body_size(raw)
    levels = _heading_levels(raw, body)
    blocks: list[Block] = []
    for b in raw:
        if _is_heading(b, body):
            level = levels.get(round(b.size, 1), len(levels) + 1)
            blocks.append(Block(join_lines(b.lines), kind="heading", page=b.page, level=level))
            continue
        for para in _split_paragraphs(b.lines):
            kind, level = classify_text(para)
            blocks.append(Block(para, kind=kind, page=b.page, level=level))
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
