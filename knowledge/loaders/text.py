"""Plain-text and Markdown loaders.

Both read any supported encoding (:func:`read_text_file`) and re-join hard-wrapped lines the way
the PDF loader does: directly inside Chinese text, with a space between English words.
"""

from __future__ import annotations

import re
from pathlib import Path

from knowledge.loaders.base import Loader, read_text_file, register_loader
from knowledge.loaders.tables import table_blocks
from knowledge.text_utils import classify_text, ends_paragraph, ends_sentence, join_lines, starts_new_block
from knowledge.core.types import Block

_ATX_RE = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_SETEXT_RE = re.compile(r"^(=+|-+)\s*$")
_MD_LIST_RE = re.compile(r"^\s*(?:[-*+]|\d{1,3}[.)])\s+(.*)$")
_FENCE_RE = re.compile(r"^\s*(```|~~~)")
_TABLE_SEP_RE = re.compile(r"^\s*\|?\s*:?-{2,}:?\s*(\|\s*:?-{2,}:?\s*)*\|?\s*$")
_LINK_RE = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_EMPHASIS_RE = re.compile(r"(\*\*|__|`)")
_HR_RE = re.compile(r"^\s*([-*_])(\s*\1){2,}\s*$")


def split_plain_paragraphs(text: str) -> list[str]:
    """Paragraphs of a plain-text file.

    A blank line always ends a paragraph. A line that starts an article, chapter or list item
    starts a new one, and a line ending with a full stop (``。！？.!?``) ends one; other line
    breaks are wrapping and are joined (directly in Chinese, with a space in English).

    >>> split_plain_paragraphs("第一条 出差应当\\n节约。\\n第二条 住宿费按\\n标准报销。\\n\\nA wrapped\\nline")
    ['第一条 出差应当节约。', '第二条 住宿费按标准报销。', 'A wrapped line']
    """
    paragraphs: list[list[str]] = []
    open_para = False
    for raw in text.split("\n"):
        line = raw.strip()
        if not line:
            open_para = False
            continue
        if not open_para or starts_new_block(line):
            paragraphs.append([line])
        else:
            paragraphs[-1].append(line)
        open_para = not ends_paragraph(line)
    return [join_lines(p) for p in paragraphs]


class TxtLoader(Loader):
    """Paragraphs; numbered structure (第X章, 第X条, 一、, (1)) becomes headings, articles, lists.

    A short first line without closing punctuation followed by more text is the title.
    """

    def load(self, path: Path) -> list[Block]:
        paragraphs = split_plain_paragraphs(read_text_file(path, self.warnings))
        blocks: list[Block] = []
        for i, para in enumerate(paragraphs):
            kind, level = classify_text(para)
            if i == 0 and kind == "para" and len(paragraphs) > 1 and _looks_like_title(para):
                kind, level = "heading", 1
            blocks.append(Block(para, kind=kind, level=level))
        return blocks


def _looks_like_title(text: str) -> bool:
    return len(text) <= 40 and not ends_sentence(text) and "，" not in text and ", " not in text


def clean_inline_markdown(text: str) -> str:
    """Drop inline Markdown syntax: links keep their text, images their alt text, no ``**``.

    >>> clean_inline_markdown("见 **[差旅办法](http://x/a.pdf)** 第 `3` 条")
    '见 差旅办法 第 3 条'
    """
    return _EMPHASIS_RE.sub("", _LINK_RE.sub(r"\1", text))


class MarkdownLoader(Loader):
    """ATX and setext headings, list items, tables (one record per row, the row above the
    ``|---|`` line as the header), fenced code, paragraphs."""

    def load(self, path: Path) -> list[Block]:
        return parse_markdown(read_text_file(path, self.warnings))


def parse_markdown(text: str) -> list[Block]:
    """Blocks of a Markdown document.

    >>> [(b.kind, b.level, b.text) for b in parse_markdown("# 办法\\n\\n正文第一行\\n第二行。\\n\\n- 住宿\\n- 交通")]
    [('heading', 1, '办法'), ('para', 0, '正文第一行第二行。'), ('list', 0, '住宿'), ('list', 0, '交通')]
    """
    blocks: list[Block] = []
    buffer: list[str] = []          # lines of the paragraph or list item being read
    buffer_kind = "para"
    table: list[list[str]] = []     # rows of the table being read
    table_marked = False            # its first row is followed by the |---| line
    lines = _strip_front_matter(text.split("\n"))
    i = 0

    def flush_table() -> None:
        nonlocal table, table_marked
        if table:
            blocks.extend(table_blocks(table, marked=table_marked, title_level=None))
        table, table_marked = [], False

    def flush() -> None:
        nonlocal buffer, buffer_kind
        if buffer:
            joined = clean_inline_markdown(join_lines(buffer))
            kind = buffer_kind
            if kind == "para":
                kind, _ = classify_text(joined)
                kind = kind if kind in ("article", "list") else "para"
            if joined:
                blocks.append(Block(joined, kind=kind))
        buffer, buffer_kind = [], "para"

    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if table and not stripped.startswith("|"):
            flush_table()           # any other line ends the table
        if _FENCE_RE.match(line):
            flush()
            i = _read_fence(lines, i, blocks)
            continue
        atx = _ATX_RE.match(stripped)
        if atx:
            flush()
            blocks.append(Block(clean_inline_markdown(atx.group(2)), kind="heading", level=len(atx.group(1))))
        elif buffer and buffer_kind == "para" and _SETEXT_RE.match(stripped) and len(buffer) == 1:
            level = 1 if stripped.startswith("=") else 2
            blocks.append(Block(clean_inline_markdown(buffer[0]), kind="heading", level=level))
            buffer = []
        elif not stripped or _HR_RE.match(stripped):
            flush()
        elif stripped.startswith("|"):
            flush()
            if _TABLE_SEP_RE.match(stripped):
                table_marked = table_marked or len(table) == 1
            else:
                table.append([clean_inline_markdown(c.strip()) for c in stripped.strip("|").split("|")])
        elif _MD_LIST_RE.match(line):
            flush()
            buffer, buffer_kind = [_MD_LIST_RE.match(line).group(1)], "list"
        else:
            buffer.append(stripped.lstrip("> ").strip() if stripped.startswith(">") else stripped)
        i += 1
    flush_table()
    flush()
    return blocks


def _read_fence(lines: list[str], i: int, blocks: list[Block]) -> int:
    """Add a fenced code block verbatim as one paragraph; return the index after its end."""
    fence = _FENCE_RE.match(lines[i]).group(1)
    body: list[str] = []
    i += 1
    while i < len(lines) and not lines[i].strip().startswith(fence):
        body.append(lines[i].rstrip())
        i += 1
    code = "\n".join(body).strip("\n")
    if code.strip():
        blocks.append(Block(code, kind="para"))
    return i + 1


def _strip_front_matter(lines: list[str]) -> list[str]:
    if lines and lines[0].strip() == "---":
        for j in range(1, min(len(lines), 100)):
            if lines[j].strip() in ("---", "..."):
                return lines[j + 1:]
    return lines


register_loader((".txt", ".text"), TxtLoader)
register_loader((".md", ".markdown"), MarkdownLoader)
