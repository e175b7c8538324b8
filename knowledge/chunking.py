"""Structure-respecting chunking with sentence-level overlap.

Every chunk's text is a contiguous slice of the document text:
``chunk.text == doc.text[chunk.start:chunk.end]``, so citations can always be re-quoted.

How a document is cut:

1. Blocks are grouped into *segments*. A heading ends the current segment and updates the heading
   stack (a heading pops every heading of the same or a deeper level); a numbered article
   (``第十二条 ...``) always starts a new segment, and the paragraphs and list items after it stay
   in that article's segment. Headings that precede a segment's first block are part of it, so
   heading text is never orphaned, but a chunk's ``heading_path`` is metadata, never a prefix.
2. A segment is cut into *pieces*: whole blocks (a paragraph or list item that fits in ``size``
   is never split), else its sentences (``。！？；!?;`` and ``.``), else, for a sentence longer
   than ``size``, parts cut at a comma or space near the limit. A table row (a ``table`` block,
   or any record line ``Header: value；Header: value``) is never split: it is a piece of its own
   line, and a chunk or its overlap may only begin where a row begins. A row longer than ``size``
   is the one case of a chunk longer than ``size``.
3. Pieces are packed greedily into chunks of at most ``size`` characters. When a segment needs
   several chunks, the next chunk starts with the trailing sentences (whole rows, in a table) of
   the previous one that fit in ``overlap`` characters. Chunks never overlap across segments
   (headings, articles).
4. A chunk that continues a table (it starts at a row, and the paragraph that introduces the
   table, "第十五条 住宿费在以下标准内凭发票据实报销（单位：元/人·晚）：", lies before it) carries that
   paragraph as the last entry of its ``heading_path``: the chunk text must stay a slice of
   the document, so the context travels as metadata (it is embedded with the chunk).
"""

from __future__ import annotations

import hashlib
import re
from bisect import bisect_right
from dataclasses import dataclass, field

from knowledge.core.errors import ValidationError
from knowledge.loaders.tables import is_record_line
from knowledge.text_utils import push_span, sentence_spans
from knowledge.core.types import Block, Chunk, LoadedDocument

BLOCK_SEPARATOR = "\n\n"   # must match LoadedDocument.text
_SOFT_BREAKS = "，,、：:）)》」 \t\n"
INTRO_MAX_CHARS = 120      # a table's introducing paragraph longer than this: only its last sentence


@dataclass
class Segment:
    """A run of blocks that chunks may not cross: one section body or one article."""

    heading_path: list[str]
    blocks: list[int]                 # indices into doc.blocks, in order
    n_headings: int = 0               # leading heading blocks (never used as overlap)


@dataclass
class Piece:
    """A span that is never split further; ``starts`` are the sentence starts inside it, the
    places a following chunk may begin its overlap."""

    start: int
    end: int
    starts: list[int] = field(default_factory=list)


def chunk_document(doc: LoadedDocument, size: int, overlap: int) -> list[Chunk]:
    """Cut a document into chunks of at most ``size`` characters (see the module docstring).

    ``chunk_id`` is ``f"{doc.sha256[:12]}-{i:04d}"`` (the hash of the text when the document has
    no sha256), so re-chunking the same bytes with the same settings gives the same ids.
    """
    _check_sizes(size, overlap)
    text = doc.text
    spans = block_spans(doc.blocks)
    block_starts = [start for start, _ in spans]
    prefix = (doc.sha256 or hashlib.sha256(text.encode("utf-8")).hexdigest())[:12]
    chunks: list[Chunk] = []
    for segment in build_segments(doc.blocks):
        records = [is_record_block(doc.blocks[i]) for i in segment.blocks]
        pieces = segment_pieces(text, [spans[i] for i in segment.blocks], segment.n_headings, size, records)
        for start, end in pack_pieces(pieces, size, overlap):
            intro = table_intro(doc.blocks, spans, segment, records, start)
            chunks.append(Chunk(
                chunk_id=f"{prefix}-{len(chunks):04d}",
                source=doc.source,
                text=text[start:end],
                page=_page_at(doc.blocks, block_starts, start),
                heading_path=list(segment.heading_path) + ([intro] if intro else []),
                start=start,
                end=end,
                ocr_confidence=ocr_confidence(doc.blocks, spans, start, end),
            ))
    return chunks


def is_record_block(block: Block) -> bool:
    """A table row, or a block whose every line is a record line (``k: v；k: v；k: v``).

    >>> is_record_block(Block("经理 | 600", "table")), is_record_block(Block("职级: A类；一类城市: 900；二类城市: 700"))
    (True, True)
    >>> is_record_block(Block("第十五条 住宿费在以下标准内凭发票据实报销："))
    False
    """
    if block.kind == "table":
        return True
    lines = [line for line in block.text.split("\n") if line.strip()]
    return bool(lines) and block.kind != "heading" and all(is_record_line(line) for line in lines)


def table_intro(blocks: list[Block], spans: list[tuple[int, int]], segment: Segment,
                records: list[bool], start: int) -> str:
    """The paragraph introducing the table a chunk starting at ``start`` continues, or "".

    The chunk continues a table when its first block is a row; the introduction is the body
    block just above the table's first row (not a heading: headings are in the path already),
    when the chunk does not hold it. A long one gives its last sentence, the one that leads
    into the table.
    """
    first = next((k for k, i in enumerate(segment.blocks) if spans[i][0] <= start < spans[i][1] + 1), None)
    if first is None or not records[first]:
        return ""
    k = first
    while k > 0 and records[k - 1]:
        k -= 1                       # back to the table's first row
    if k == 0 or k - 1 < segment.n_headings:
        return ""
    i = segment.blocks[k - 1]
    if spans[i][0] >= start or blocks[i].kind == "heading":
        return ""
    text = blocks[i].text.strip()
    if len(text) > INTRO_MAX_CHARS:
        text = last_sentence(text)
    return text if 0 < len(text) <= INTRO_MAX_CHARS else ""


_FULL_STOP_RE = re.compile(r"[。！？!?]+[”’」』）)】》\"']*|\.(?=\s)")


def last_sentence(text: str) -> str:
    """The last full sentence of ``text`` (ended by a full stop, not by ``；`` or ``,``).

    >>> last_sentence("第十四条 采购应当比价。审批矩阵如下表所示：")
    '审批矩阵如下表所示：'
    >>> last_sentence("Data is public; if unsure, treat it as internal. The classes are:")
    'The classes are:'
    """
    text = text.strip()
    ends = [m.end() for m in _FULL_STOP_RE.finditer(text) if m.end() < len(text)]
    return text[ends[-1]:].strip() if ends else text


def ocr_confidence(blocks: list[Block], spans: list[tuple[int, int]], start: int, end: int) -> float | None:
    """Mean OCR confidence of the OCR'd text in ``[start, end)``, weighted by characters
    (None when no OCR'd block overlaps it).

    >>> bs = [Block("甲乙", ocr_confidence=0.9), Block("丙丁戊己", ocr_confidence=0.6), Block("文字层")]
    >>> ocr_confidence(bs, block_spans(bs), 0, 10), ocr_confidence(bs, block_spans(bs), 12, 15)
    (0.7, None)
    """
    total = weight = 0.0
    for block, (b_start, b_end) in zip(blocks, spans):
        if block.ocr_confidence is None:
            continue
        overlap = min(end, b_end) - max(start, b_start)
        if overlap > 0:
            total += block.ocr_confidence * overlap
            weight += overlap
    return round(total / weight, 4) if weight else None


def _check_sizes(size: int, overlap: int) -> None:
    if not isinstance(size, int) or size < 1:
        raise ValidationError(f"chunk size must be a positive number of characters, got {size!r}")
    if not isinstance(overlap, int) or overlap < 0 or overlap >= size:
        raise ValidationError(f"chunk overlap must be between 0 and size-1 ({size - 1}), got {overlap!r}")


def block_spans(blocks: list[Block]) -> list[tuple[int, int]]:
    """Offsets of each block's text in ``LoadedDocument.text`` (blocks joined by a blank line).

    >>> block_spans([Block("总则"), Block("第一条 目的。")])
    [(0, 2), (4, 11)]
    """
    spans, pos = [], 0
    for block in blocks:
        spans.append((pos, pos + len(block.text)))
        pos += len(block.text) + len(BLOCK_SEPARATOR)
    return spans


def build_segments(blocks: list[Block]) -> list[Segment]:
    """Group blocks into segments and give each its heading path.

    >>> blocks = [Block("办法", "heading", level=1), Block("第一章 总则", "heading", level=2),
    ...           Block("第一条 目的。", "article"), Block("（一）节约。", "list"),
    ...           Block("第二条 范围。", "article"), Block("第二章 标准", "heading", level=2),
    ...           Block("住宿费500元。")]
    >>> [(s.heading_path, s.blocks) for s in build_segments(blocks)]
    [(['办法', '第一章 总则'], [0, 1, 2, 3]), (['办法', '第一章 总则'], [4]), (['办法', '第二章 标准'], [5, 6])]
    """
    segments: list[Segment] = []
    stack: list[tuple[int, str]] = []
    pending: list[int] = []
    current: Segment | None = None
    for i, block in enumerate(blocks):
        if block.kind == "heading":
            current = None
            level = max(1, block.level or 1)
            while stack and stack[-1][0] >= level:
                stack.pop()
            stack.append((level, block.text))
            pending.append(i)
            continue
        if current is None or block.kind == "article":
            current = Segment([t for _, t in stack], pending + [i], n_headings=len(pending))
            segments.append(current)
            pending = []
        else:
            current.blocks.append(i)
    if pending:   # headings at the very end with nothing under them still get indexed
        segments.append(Segment([t for _, t in stack], pending, n_headings=len(pending)))
    return segments


def segment_pieces(text: str, spans: list[tuple[int, int]], n_headings: int, size: int,
                   records: list[bool] | None = None) -> list[Piece]:
    """Pieces of one segment: whole blocks when they fit, else sentences, else parts of a sentence.

    A block marked in ``records`` (a table row) is cut only between its lines, never inside one,
    and only its line starts may begin an overlap.

    >>> t = "标题\\n\\n甲。乙。丙。"
    >>> [(t[p.start:p.end], p.starts) for p in segment_pieces(t, [(0, 2), (4, 10)], 1, 8)]
    [('标题', []), ('甲。乙。丙。', [4, 6, 8])]
    >>> [t[p.start:p.end] for p in segment_pieces(t, [(0, 2), (4, 10)], 1, 4)]
    ['标题', '甲。', '乙。', '丙。']
    """
    pieces: list[Piece] = []
    for k, (start, end) in enumerate(spans):
        body = k >= n_headings
        if not text[start:end].strip():
            continue                # an empty block (possible in hand-built documents)
        if records is not None and records[k]:
            lines = line_spans(text, start, end)
            if end - start <= size:
                pieces.append(Piece(start, end, [s for s, _ in lines] if body else []))
            else:
                pieces.extend(Piece(s, e, [s] if body else []) for s, e in lines)
            continue
        if end - start <= size:
            starts = [s for s, _ in sentence_spans(text, start, end)] if body else []
            pieces.append(Piece(start, end, starts))
            continue
        for s_start, s_end in sentence_spans(text, start, end):
            for p_start, p_end in split_long(text, s_start, s_end, size):
                pieces.append(Piece(p_start, p_end, [p_start] if body else []))
    return pieces


def line_spans(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """``(start, end)`` of each non-blank line of ``text[start:end]``, surrounding spaces excluded.

    >>> t = "a: 1；b: 2\\n c: 3；d: 4 "
    >>> [t[s:e] for s, e in line_spans(t, 0, len(t))]
    ['a: 1；b: 2', 'c: 3；d: 4']
    """
    spans: list[tuple[int, int]] = []
    pos = start
    while pos < end:
        stop = text.find("\n", pos, end)
        stop = end if stop < 0 else stop
        push_span(text, pos, stop, spans)
        pos = stop + 1
    return spans


def split_long(text: str, start: int, end: int, size: int) -> list[tuple[int, int]]:
    """Cut ``text[start:end]`` into spans of at most ``size``, preferring to cut after a comma,
    colon or space in the second half of each window.

    >>> t = "第一部分内容，第二部分内容，第三部分"
    >>> [t[s:e] for s, e in split_long(t, 0, len(t), 8)]
    ['第一部分内容，', '第二部分内容，', '第三部分']
    """
    spans: list[tuple[int, int]] = []
    while end - start > size:
        window_end = start + size
        cut = window_end
        for j in range(window_end - 1, start + size // 2 - 1, -1):
            if text[j] in _SOFT_BREAKS:
                cut = j + 1
                break
        piece_end = cut
        while piece_end > start and text[piece_end - 1].isspace():
            piece_end -= 1
        spans.append((start, piece_end if piece_end > start else cut))
        start = cut
        while start < end and text[start].isspace():
            start += 1
    if end > start:
        spans.append((start, end))
    return spans


def pack_pieces(pieces: list[Piece], size: int, overlap: int) -> list[tuple[int, int]]:
    """Greedily pack one segment's pieces into ``(start, end)`` chunks of at most ``size``.

    A new chunk begins at the earliest sentence start of the previous chunk whose tail
    (``prev_end - start``) fits in ``overlap`` and still leaves the new chunk within ``size``.

    >>> t = "甲甲。乙乙。丙丙。丁丁。"
    >>> pieces = [Piece(i, i + 3, [i]) for i in range(0, 12, 3)]
    >>> [t[s:e] for s, e in pack_pieces(pieces, 6, 3)]
    ['甲甲。乙乙。', '乙乙。丙丙。', '丙丙。丁丁。']
    >>> [t[s:e] for s, e in pack_pieces(pieces, 6, 0)]
    ['甲甲。乙乙。', '丙丙。丁丁。']
    """
    chunks: list[tuple[int, int]] = []
    cur_start: int | None = None
    cur_end = 0
    starts: list[int] = []            # sentence starts inside the current chunk
    for piece in pieces:
        if cur_start is None:
            cur_start, cur_end, starts = piece.start, piece.end, list(piece.starts)
            continue
        if piece.end - cur_start <= size:
            cur_end = piece.end
            starts.extend(piece.starts)
            continue
        chunks.append((cur_start, cur_end))
        new_start = piece.start
        if overlap:
            for s in starts:
                if s > cur_start and cur_end - s <= overlap and piece.end - s <= size:
                    new_start = s
                    break
        starts = [s for s in starts if new_start <= s < piece.start] + list(piece.starts)
        cur_start, cur_end = new_start, piece.end
    if cur_start is not None:
        chunks.append((cur_start, cur_end))
    return chunks


def _page_at(blocks: list[Block], block_starts: list[int], offset: int) -> int | None:
    """Page of the block that contains ``offset`` (the chunk's first block)."""
    index = bisect_right(block_starts, offset) - 1
    return blocks[max(index, 0)].page if blocks else None
