"""Pure text helpers shared by the loaders, the chunker, the glossary and the router.

Everything here works on plain strings, imports nothing heavy and keeps offsets meaningful:
:func:`normalize_width` never changes the length of a string, and :func:`sentence_spans`
returns offsets into the string it was given.

The character classes of Chinese text and the marks that end a sentence are defined here once:
:data:`HAN` (ideographs, a regex class body), :func:`is_cjk` (any CJK character), :data:`SENTENCE_END`
and :data:`SENTENCE_BREAK` (where a sentence ends).

>>> re.findall(f"[{HAN}]+", "AM负责，PO号"), bool(HAN_RE.search("the AM"))
(['负责', '号'], False)
>>> SENTENCE_BREAK.split("住宿每晚500元；餐费每天100元。Rate 1.5 applies. Done")
['住宿每晚500元；', '餐费每天100元。', 'Rate 1.5 applies.', ' Done']
"""

from __future__ import annotations

import re

# The one definition of the character classes of Chinese text; every module that asks "is this
# Chinese?" builds on these rather than writing its own range.
_HAN_RANGES = (
    ("\u3400", "\u4dbf"),   # extension A
    ("\u4e00", "\u9fff"),   # unified ideographs
    ("\uf900", "\ufaff"),   # compatibility ideographs
)
# CJK ideographs, kana, hangul, CJK punctuation and full-width forms. Used to decide whether a
# line break sits inside Chinese text (join directly) or between English words (join with a space).
_CJK_RANGES = (
    ("\u2e80", "\u2fff"),   # radicals
    ("\u3000", "\u303f"),   # CJK symbols and punctuation (。、「」 ideographic space)
    ("\u3040", "\u30ff"),   # hiragana, katakana
    *_HAN_RANGES,
    ("\uac00", "\ud7af"),   # hangul
    ("\ufe30", "\ufe4f"),   # CJK compatibility forms
    ("\uff00", "\uffef"),   # full-width forms (，！？：；（）)
)

# Chinese ideographs as the body of a regex character class (f"[{HAN}]+" is a run of them):
# ideographs only, no punctuation, kana or full-width forms (:func:`is_cjk` takes those too).
HAN = "".join(f"{lo}-{hi}" for lo, hi in _HAN_RANGES)
HAN_RE = re.compile(f"[{HAN}]")   # one ideograph: HAN_RE.search(text) says the text holds Chinese

SENTENCE_END = "。！？；!?;"
"""Characters that end a sentence wherever they appear (``.`` is handled separately)."""

# Where a sentence ends: right after one of SENTENCE_END, after "." before whitespace (so 1.5 and
# e.g.x stay whole), and at a line break. Zero-width except the line break, so
# SENTENCE_BREAK.split(text) keeps the end marks with their sentences (see split_sentences) and a
# match's end() is where the next sentence starts, also in a text still being streamed.
SENTENCE_BREAK = re.compile(rf"(?<=[{SENTENCE_END}])|(?<=[.])(?=\s)|\n")

_CLOSERS = "”’」』）)】》\"'"

_CN_NUM = "零〇一二三四五六七八九十百千两"
ARTICLE_RE = re.compile(rf"^第\s*[{_CN_NUM}\d]+\s*条")
CHAPTER_RE = re.compile(rf"^第\s*[{_CN_NUM}\d]+\s*[章编]")
SECTION_RE = re.compile(rf"^第\s*[{_CN_NUM}\d]+\s*节")
_CN_ENUM_RE = re.compile(rf"^[{_CN_NUM}]+\s*[、.．]")
_LIST_RE = re.compile(
    r"^(?:[•·●○■□◆◇▪▸►]\s*\S|[-*+]\s+\S"    # bullets ("-5%" is not one)
    r"|\d{1,3}[.、)）](?!\d)"                # 1.  1、  1)
    rf"|[(（]\s*[{_CN_NUM}\d]+\s*[)）]"      # (1)  （一）
    r"|[①-⑳]"                               # circled numbers
    r"|[a-zA-Z][.)]\s)"                     # a) b.
)


def is_cjk(ch: str) -> bool:
    """True for a CJK ideograph, kana, hangul, CJK punctuation or a full-width form.

    >>> is_cjk("中"), is_cjk("，"), is_cjk("a"), is_cjk("1")
    (True, True, False, False)
    """
    return any(lo <= ch <= hi for lo, hi in _CJK_RANGES)


def normalize_width(text: str) -> str:
    """Map full-width ASCII forms (U+FF01..U+FF5E) and the ideographic space to half width.

    The mapping is one character to one character, so offsets found in the normalised string
    are valid in the original.

    >>> normalize_width("ＡＭ负责ＰＭ１２３　ok")
    'AM负责PM123 ok'
    """
    out = []
    for ch in text:
        code = ord(ch)
        if 0xFF01 <= code <= 0xFF5E:
            out.append(chr(code - 0xFEE0))
        elif code == 0x3000:
            out.append(" ")
        else:
            out.append(ch)
    return "".join(out)


def join_pair(left: str, right: str) -> str:
    """Join two lines of one paragraph that a line break separated.

    Chinese (or any CJK) on either side of the break: join directly, because Chinese has no
    spaces between words. English: join with one space, except a word hyphenated across the
    break (``docu-`` + ``ment``), which is re-joined without the hyphen.

    >>> join_pair("出差人员乘坐火车时，可以", "报销二等座")
    '出差人员乘坐火车时，可以报销二等座'
    >>> join_pair("an Eng-", "lish sentence")
    'an English sentence'
    >>> join_pair("broken", "across")
    'broken across'
    """
    left, right = left.rstrip(), right.lstrip()
    if not left or not right:
        return left + right
    if (len(left) >= 2 and left[-1] == "-" and left[-2].isalpha() and not is_cjk(left[-2])
            and right[0].islower()):
        return left[:-1] + right
    if is_cjk(left[-1]) or is_cjk(right[0]):
        return left + right
    return left + " " + right


def join_lines(lines: list[str]) -> str:
    """Join the lines of one paragraph with :func:`join_pair`.

    >>> join_lines(["第一条 出差人员乘坐火车时，可以", "报销二等座的票价，超过部分由个人", "承担。"])
    '第一条 出差人员乘坐火车时，可以报销二等座的票价，超过部分由个人承担。'
    """
    text = ""
    for line in lines:
        text = join_pair(text, line) if text else line.strip()
    return text


def collapse_whitespace(text: str) -> str:
    """Collapse every whitespace run to one space, or to nothing between two CJK characters.

    Used for HTML, where source line breaks are not meaningful but a space written between
    Chinese and English words is.

    >>> collapse_whitespace("  出差\\n 补贴  标准 \\n per  day ")
    '出差补贴标准 per day'
    """
    parts = text.split()
    out = parts[0] if parts else ""
    for part in parts[1:]:
        out += part if is_cjk(out[-1]) and is_cjk(part[0]) else " " + part
    return out


def split_sentences(text: str) -> list[str]:
    """The sentences of ``text`` (cut at :data:`SENTENCE_BREAK`), stripped, end marks kept; pieces
    without a letter or digit (a stray mark) are dropped.

    >>> split_sentences("住宿每晚500元；餐费每天100元。Taxis are fine. Rate 1.5 applies\\n。")
    ['住宿每晚500元；', '餐费每天100元。', 'Taxis are fine.', 'Rate 1.5 applies']
    """
    pieces = (p.strip() for p in SENTENCE_BREAK.split(text))
    return [p for p in pieces if p and any(ch.isalnum() for ch in p)]


def cut_sentences(text: str) -> list[str]:
    """``text`` cut after each :data:`SENTENCE_BREAK`; the pieces join back to ``text`` (a line break
    stays with the sentence before it).

    >>> cut_sentences("第一条。第二条；三")
    ['第一条。', '第二条；', '三']
    >>> cut_sentences("一。二！three. four\\n五")
    ['一。', '二！', 'three.', ' four\\n', '五']
    """
    pieces, start = [], 0
    for m in SENTENCE_BREAK.finditer(text):
        if start < m.end() < len(text):
            pieces.append(text[start:m.end()])
            start = m.end()
    pieces.append(text[start:])
    return [p for p in pieces if p]


def ends_sentence(text: str) -> bool:
    """True when ``text`` ends with sentence-final punctuation (closing quotes ignored).

    >>> ends_sentence("可以报销。"), ends_sentence("Done.”"), ends_sentence("总则")
    (True, True, False)
    """
    stripped = text.rstrip().rstrip(_CLOSERS)
    return bool(stripped) and (stripped[-1] in SENTENCE_END or stripped[-1] in ".：:")


def ends_paragraph(text: str) -> bool:
    """True when ``text`` ends with a full stop (``。！？!?.``), the only safe sign that a line
    break also ends a paragraph; ``；`` and ``：`` often end a line in the middle of one.

    >>> ends_paragraph("超过部分由个人承担。"), ends_paragraph("（含酒水）；"), ends_paragraph("如下：")
    (True, False, False)
    """
    stripped = text.rstrip().rstrip(_CLOSERS)
    return bool(stripped) and stripped[-1] in "。！？!?."


def sentence_spans(text: str, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """Split ``text[start:end]`` into sentences; return ``(start, end)`` offsets into ``text``.

    A sentence ends after ``。！？；!?;`` (wherever they appear) or after ``.`` followed by
    whitespace or the end (so ``1.5`` and ``e.g.x`` stay whole); closing quotes and brackets
    after the mark belong to the sentence. Spans exclude surrounding whitespace and line breaks.

    >>> t = "住宿费500元。超过部分自理！The rate is 1.5 times. Done"
    >>> [t[s:e] for s, e in sentence_spans(t)]
    ['住宿费500元。', '超过部分自理！', 'The rate is 1.5 times.', 'Done']
    """
    end = len(text) if end is None else end
    spans: list[tuple[int, int]] = []
    i = s = start
    while i < end:
        ch = text[i]
        cut = ch in SENTENCE_END or (ch == "." and (i + 1 >= end or text[i + 1].isspace()))
        if ch == "\n" and i + 1 < end and text[i + 1] == "\n":
            push_span(text, s, i, spans)   # a blank line always ends a sentence
            s = i + 2
            i += 2
            continue
        i += 1
        if cut:
            while i < end and text[i] in _CLOSERS:
                i += 1
            push_span(text, s, i, spans)
            s = i
    push_span(text, s, end, spans)
    return spans


def push_span(text: str, s: int, e: int, spans: list[tuple[int, int]]) -> None:
    """Append ``text[s:e]`` without its surrounding whitespace to ``spans`` (nothing when blank)."""
    while s < e and text[s].isspace():
        s += 1
    while e > s and text[e - 1].isspace():
        e -= 1
    if e > s:
        spans.append((s, e))


def classify_text(text: str) -> tuple[str, int]:
    """Guess a block kind from how its text starts: ``(kind, heading level)``.

    Chinese regulations number their structure in the text itself: ``第X章`` (chapter),
    ``第X节`` (section), ``第X条`` (article), ``一、`` (numbered section), bullets and ``(1)``.
    Short chapter/section/``一、`` lines are headings (levels 2, 3, 4; level 1 is left for the
    document title); long ones are ordinary paragraphs or list items.

    >>> classify_text("第十二条 出差人员乘坐火车可以报销二等座。")
    ('article', 0)
    >>> classify_text("第一章 总则"), classify_text("一、报销标准"), classify_text("（1）住宿费")
    (('heading', 2), ('heading', 4), ('list', 0))
    >>> classify_text("出差人员应当节约。")
    ('para', 0)
    """
    t = text.strip()
    short = len(t) <= 40 and not ends_sentence(t)
    if ARTICLE_RE.match(t):
        return "article", 0
    if CHAPTER_RE.match(t) and short:
        return "heading", 2
    if SECTION_RE.match(t) and short:
        return "heading", 3
    if _CN_ENUM_RE.match(t):
        return ("heading", 4) if short and len(t) <= 30 else ("list", 0)
    if _LIST_RE.match(t):
        return "list", 0
    return "para", 0


def starts_new_block(line: str) -> bool:
    """True when a line begins its own block (article, chapter, list item) rather than continuing
    the paragraph above it.

    >>> starts_new_block("第三条 住宿费按标准报销。"), starts_new_block("报销二等座的票价")
    (True, False)
    """
    return classify_text(line)[0] != "para"
