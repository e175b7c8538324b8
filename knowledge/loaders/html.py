"""HTML loader (BeautifulSoup): headings h1-h6, paragraphs, list items, table rows.

Scripts, styles and page chrome (navigation, the page footer) are dropped. Whitespace is
collapsed, and removed entirely between Chinese characters, because source line breaks in HTML
mean nothing there; a space the author typed on purpose survives (:func:`collapse_html_whitespace`).
Table rows are written by :func:`knowledge.loaders.tables.table_blocks`, with a ``<th>`` or
``<thead>`` first row as the header.
"""

from __future__ import annotations

import re
from pathlib import Path

from knowledge.loaders.base import Loader, read_text_file, register_loader
from knowledge.loaders.tables import table_blocks
from knowledge.text_utils import is_cjk
from knowledge.core.types import Block

_DROP = ("script", "style", "noscript", "template", "svg", "nav", "form", "iframe", "head")
_HEADINGS = {f"h{n}": n for n in range(1, 7)}
_LEAF_BLOCKS = {"p", "pre", "dt", "dd", "caption", "figcaption", "address", "summary"}
_LISTS = {"ul", "ol", "dl"}
# Elements that break the flow of inline text without being blocks of their own.
_CONTAINERS = {"div", "section", "article", "main", "body", "html", "aside", "blockquote", "header",
               "footer", "details", "figure", "center", "fieldset", "li", "td", "th"}
_IDEOGRAPHIC_SPACE = "\u3000"
# Spaces written on purpose (&nbsp;, &ensp;, &emsp;, thin spaces): never source formatting.
_EXPLICIT_SPACES = "\u00a0\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u202f\u205f"
_TOKEN_RE = re.compile(r"\s+|\S+")


def collapse_html_whitespace(text: str) -> str:
    r"""Collapse whitespace as a browser does, but keep the separators Chinese text relies on.

    A run of source whitespace becomes one space, or nothing between two CJK characters (a line
    break in the HTML source is not a space in Chinese). A run holding the ideographic space
    U+3000 keeps those characters, as the DOCX and TXT loaders do ("第一条　为规范"); a run holding
    another explicit space (``&nbsp;``, ``&emsp;``) becomes one space, so text never glues.

    >>> collapse_html_whitespace("  出差\n 补贴  标准 \n per  day ")
    '出差补贴标准 per day'
    >>> collapse_html_whitespace("第一条\u3000为规范"), collapse_html_whitespace("第2版\u00a0\u00a0生效日期")
    ('第一条\u3000为规范', '第2版 生效日期')
    """
    tokens = _TOKEN_RE.findall(text.strip())
    out: list[str] = []
    for i, token in enumerate(tokens):
        if not token.isspace():
            out.append(token)
        elif _IDEOGRAPHIC_SPACE in token:
            out.append(_IDEOGRAPHIC_SPACE * token.count(_IDEOGRAPHIC_SPACE))
        elif any(ch in _EXPLICIT_SPACES for ch in token):
            out.append(" ")
        elif not (is_cjk(tokens[i - 1][-1]) and is_cjk(tokens[i + 1][0])):
            out.append(" ")
    return "".join(out)


def _parser() -> str:
    try:
        import lxml  # noqa: F401  (only checking that the faster parser is there)
        return "lxml"
    except ImportError:
        return "html.parser"


class HtmlLoader(Loader):
    def load(self, path: Path) -> list[Block]:
        from bs4 import BeautifulSoup  # deferred: beautifulsoup4, HTML files only

        soup = BeautifulSoup(read_text_file(path, self.warnings), _parser())
        if soup.title and soup.title.string:
            self.doc_title = collapse_html_whitespace(soup.title.string)
        for tag in soup(list(_DROP)):
            tag.decompose()
        for tag in soup("footer"):      # a page footer is chrome; an article's footer may be content
            if tag.find_parent(["article", "main"]) is None:
                tag.decompose()
        for br in soup("br"):
            br.replace_with("\n")   # a line break separates words; get_text("") would glue them
        root = soup.body or soup
        walker = _Walker()
        walker.walk(root)
        walker.flush()
        return walker.blocks


class _Walker:
    """Depth-first walk that turns block elements into blocks and gathers loose inline text."""

    def __init__(self) -> None:
        self.blocks: list[Block] = []
        self._inline: list[str] = []

    def flush(self, kind: str = "para") -> None:
        text = collapse_html_whitespace(" ".join(self._inline))
        self._inline = []
        if text:
            self.blocks.append(Block(text, kind=kind))

    def walk(self, node) -> None:
        from bs4 import NavigableString, Tag  # deferred: beautifulsoup4, HTML files only
        from bs4.element import Comment  # deferred: beautifulsoup4, HTML files only

        for child in node.children:
            if isinstance(child, Comment):
                continue
            if isinstance(child, NavigableString):
                self._inline.append(str(child))
            elif isinstance(child, Tag):
                self._element(child)

    def _element(self, tag) -> None:
        name = tag.name.lower()
        if name in _HEADINGS:
            self.flush()
            text = collapse_html_whitespace(tag.get_text())
            if text:
                self.blocks.append(Block(text, kind="heading", level=_HEADINGS[name]))
        elif name in _LEAF_BLOCKS:
            self.flush()
            self._inline.append(tag.get_text())
            self.flush()
        elif name == "table":
            self.flush()
            self._table(tag)
        elif name in _LISTS:
            self.flush()
            self._list(tag)
        elif name in _CONTAINERS:
            self.flush()
            self.walk(tag)
            self.flush()
        else:                       # inline element (span, a, b, em, ...)
            self.walk(tag)

    def _list(self, tag) -> None:
        for item in tag.find_all(["li", "dt", "dd"], recursive=False):
            nested = [c for c in item.find_all(list(_LISTS) + ["table"], recursive=False)]
            for n in nested:
                n.extract()
            self._inline.append(item.get_text())
            self.flush(kind="list")
            for n in nested:
                self._element(n)

    def _table(self, tag) -> None:
        rows, header_rows = [], []
        for row in tag.find_all("tr"):
            if row.find_parent("table") is not tag:
                continue            # rows of a nested table are read with that table
            cells = row.find_all(["td", "th"], recursive=False)
            rows.append([collapse_html_whitespace(c.get_text(" ")) for c in cells])
            header_rows.append(bool(cells) and (all(c.name == "th" for c in cells)
                                                or row.parent.name == "thead"))
        first = next((i for i, cells in enumerate(rows) if sum(1 for c in cells if c) >= 2), None)
        marked = first is not None and header_rows[first]
        self.blocks.extend(table_blocks(rows, marked=marked, title_level=None))


register_loader((".html", ".htm", ".xhtml"), HtmlLoader)
