"""Turn the rules in chunks into fact records: one clause that states a quantity, with its subject.

A fact is what a policy question usually asks for: "单笔采购金额在3000元以上的，须签订采购协议" ->
subject ``单笔采购金额``, value ``3000元``, condition ``以上``. Facts are embedded as
``f"{subject}：{statement}"`` and searched by the fact route, so the subject names what the
rule is about (the section heading plus the clause's leading noun phrase) and the statement is the
clause as written, with offsets that re-quote it from the document.

How clauses are cut: sentences end at 。；;！？!? and line breaks (and at ". " in English); a
sentence is split further at commas only where the part after the comma holds its own quantity,
so "3000元以上的，须签订采购协议" stays one clause while "一线城市600元，二线城市450元" becomes two.
A conditional part ("工作满三年的，") stays with the rule after it. Lines of a hard-wrapped paragraph
(PDF text) are joined first; a table row as loaders write it ("职级: A类；住宿标准(元/晚): 900；...")
is one fact whose subject names the row and whose bare numbers take the unit from their header.

Each fact that states a rule carries it (``Fact.rule``, a ``knowledge.rules.RuleRow`` as a dict):
the condition it holds under, whether its value is a cap or a floor, and the whole rule when the
clause is part of a piecewise rule. Rules are read over whole paragraphs, so a clause whose
condition is in an earlier clause of its sentence carries it, and the clauses of a piecewise rule
(joined by ； or running over two sentences) are read as one rule.
"""

from __future__ import annotations

import re
from typing import Iterable

from knowledge.loaders.tables import is_record_line
from knowledge.numbers import extract_quantities, normalize_unit
from knowledge.core.types import Chunk, Fact, Quantity
from knowledge.rules import RuleRow, parse_rules
from knowledge.text_utils import HAN, HAN_RE, SENTENCE_END, is_cjk

__all__ = ["extract_facts", "find_conditions", "leading_phrase", "split_clauses"]

# --- comparison words ----------------------------------------------------------------------------
# Words that follow the quantity (3000元以上) and words that precede it (不超过3000元). Position
# matters: 以下 also means "the following" (以下情形) and 满 also means "satisfied" (满意), so they
# count only right next to a quantity. Alternations are longest-first so 不超过 is not also 超过.
_POSTFIX_CN = ["以上（含）", "以下（含）", "以上(含)", "以下(含)", "及以上", "及以下", "或以上", "或以下",
               "以上", "以下", "以内", "之内", "以外", "内", "起"]
_PREFIX_CN = ["不得超过", "不得低于", "不得少于", "不超过", "不高于", "不低于", "不少于", "不多于", "不足",
              "未满", "未超过", "超过", "超出", "高于", "低于", "少于", "多于", "达到", "满", "至少", "最多",
              "最高", "最低", "上限", "下限"]
_PREFIX_EN = ["no more than", "not more than", "no less than", "not less than", "not to exceed",
              "not exceeding", "more than", "less than", "fewer than", "greater than", "at least",
              "at most", "up to", "a maximum of", "a minimum of", "maximum of", "minimum of",
              "exceeding", "exceeds", "exceed", "above", "below", "over", "under", "within"]
_POSTFIX_EN = ["or more", "or less", "or above", "or below", "and above", "and below", "or fewer"]


def _alternation(words: list[str]) -> str:
    return "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))


_PREFIX_RE = re.compile(rf"(?P<cn>{_alternation(_PREFIX_CN)})"
                        rf"|(?<![A-Za-z])(?P<en>{_alternation(_PREFIX_EN)})(?![A-Za-z])", re.IGNORECASE)
_POSTFIX_RE = re.compile(rf"\s?(?:(?P<cn>{_alternation(_POSTFIX_CN)})"
                         rf"|(?P<en>{_alternation(_POSTFIX_EN)})(?![A-Za-z]))", re.IGNORECASE)
_GAP_BREAK_RE = re.compile(r"[，。；;,.:：\d]")


def find_conditions(text: str, quantities: list[Quantity]) -> list[str]:
    """Comparison words attached to the quantities in ``text`` (offsets of ``quantities`` refer to it).

    >>> t = "单笔采购金额在3000元以上的，须签订采购协议"
    >>> find_conditions(t, extract_quantities(t))
    ['以上']
    >>> t = "Meals are reimbursed up to $50 per day, for trips of 3 days or more."
    >>> find_conditions(t, extract_quantities(t))
    ['up to', 'or more']
    >>> t = "以下情形最高不超过5000元"
    >>> find_conditions(t, extract_quantities(t))
    ['最高', '不超过']
    """
    found: list[tuple[int, str]] = []
    for q in quantities:
        start = max(0, q.start - 24)
        found += [(start + pos, w) for pos, w in _prefix_words(text[start:q.start])]
        m = _POSTFIX_RE.match(text, q.end)
        if m:
            found.append((m.start(), _norm_condition(m.group("cn") or m.group("en").lower())))
    out: list[str] = []
    for _, w in sorted(found):
        if w not in out:
            out.append(w)
    return out


def _prefix_words(before: str) -> list[tuple[int, str]]:
    """Prefix comparison words that end close before a quantity ("最高不超过3000元" gives both).

    Chinese words may be at most 4 characters away (超过规定的3000元), 满 must touch the number
    (满意度 is not 满), English words at most 6 (up to $50, within 30 days).
    """
    out = []
    for m in _PREFIX_RE.finditer(before):
        gap = before[m.end():]
        limit = 0 if m.group("cn") == "满" else 4 if m.group("cn") else 6
        if len(gap) <= limit and not _GAP_BREAK_RE.search(gap):
            out.append((m.start(), m.group("cn") or m.group("en").lower()))
    return out


def _norm_condition(word: str) -> str:
    return word.replace("(含)", "（含）")


# --- clauses --------------------------------------------------------------------------------------
_SENTENCE_END_RE = re.compile(rf"[{SENTENCE_END}]+|\n+|\.(?=\s|$)")
_COMMA_RE = re.compile(r"，|,(?!\d)|(?<!\d),")
_LEAD_RE = re.compile(r"[\s\-•·*]*(?:(?:\d{1,2}(?:\.\d{1,2})+(?=\s)|\d{1,3}[.、)）]|\d{1,2}(?=[ \t\u3000])"
                      r"|[（(](?:\d{1,3}|[一二三四五六七八九十]{1,3})[)）]|[一二三四五六七八九十]{1,3}[、.])\s*)?"
                      r"(?:第[一二三四五六七八九十百零\d]+[条章节款项]\s*)?")
_TRAIL = " \t\r\n\u3000，,、：:"
# a line that starts a new item: 第十二条, 1. / 1、 / （一）, bullets, 2.3 section numbers
_ITEM_START_RE = re.compile(r"\s*(?:第[一二三四五六七八九十百零\d]+[条章节款项]|\d{1,3}(?:\.\d{1,2})*[.、)）\s]"
                            r"|[（(][一二三四五六七八九十\d]{1,3}[)）]|[一二三四五六七八九十]{1,3}、|[-•·*])")
_WRAP_MIN = 20       # display columns: shorter layouts are never treated as wrapped
# a key-value record line, as spreadsheet loaders write rows: "城市类别: 一类城市；住宿标准(元/晚): 900；..."
_FIELD_RE = re.compile(r"(?P<key>[^；;:：\n]{1,24})[:：]\s*(?P<val>[^；;\n]*)")


def split_clauses(text: str, quantities: list[Quantity]) -> list[tuple[int, int]]:
    """(start, end) spans of the clauses of ``text`` that hold at least one quantity.

    >>> t = "单笔采购金额在3000元以上的，须签订采购协议；10000元以上的，须签订正式合同。"
    >>> [t[s:e] for s, e in split_clauses(t, extract_quantities(t))]
    ['单笔采购金额在3000元以上的，须签订采购协议', '10000元以上的，须签订正式合同']

    A line break ends a clause unless it only wraps a long line (PDF text: "每人每\\n\\n天100元");
    a key-value record line ("职级: A类；住宿标准(元/晚): 900；...") is one clause.
    """
    spans: list[tuple[int, int]] = []
    for s, e in _sentences(text, quantities):
        if _is_record(text, s, e):
            spans.append((s, e))
        else:
            spans += _group_commas(text, s, e, quantities)
    out = [_trim(text, s, e, quantities) for s, e in spans]
    return [(s, e) for s, e in out if any(s <= q.start < e for q in quantities)]


def _sentences(text: str, quantities: list[Quantity]) -> list[tuple[int, int]]:
    """Sentence spans; a record line is one span, wrapped lines of a paragraph are joined."""
    out: list[tuple[int, int]] = []
    for ls, le in _paragraphs(text):
        if _is_record(text, ls, le):
            out.append((ls, le))
            continue
        pos = ls
        for m in _SENTENCE_END_RE.finditer(text, ls, le):
            if any(q.start <= m.start() < q.end for q in quantities):
                continue
            if m.group(0)[0] == "\n":
                continue                 # only soft wraps are left inside a paragraph
            ls0 = _line_start(text, m.start())
            if m.group(0) == "." and re.fullmatch(r"\s*[\d.]+", text[ls0:m.start()]):
                continue                 # "2." of a list item, not the end of a sentence
            out.append((pos, m.start()))
            pos = m.end()
        out.append((pos, le))
    return [(s, e) for s, e in out if text[s:e].strip()]


def _display_width(line: str) -> int:
    return sum(2 if ord(c) >= 0x2E80 else 1 for c in line.strip())


def _paragraphs(text: str) -> list[tuple[int, int]]:
    """Line spans, with the lines of a hard-wrapped paragraph (PDF text) joined into one span.

    A line break only wraps when the layout is wrapped: at least three lines run to (nearly) the
    same full width, the line before the break is one of them and ends mid-sentence, and the next
    line does not start a new item (第十二条, 1., （一）, a bullet).
    """
    lines = [(m.start(), m.end()) for m in re.finditer(r"[^\n]+", text) if m.group(0).strip()]
    if not lines:
        return []
    widths = [_display_width(text[s:e]) for s, e in lines]
    full = max(widths) * 0.85
    wrapped = sum(w >= full for w in widths) >= 3 and max(widths) >= 2 * _WRAP_MIN
    out = [list(lines[0])]
    for (s, e), w_prev, in zip(lines[1:], widths[:-1]):
        prev_end = out[-1][1]
        soft = (wrapped and w_prev >= full and text[prev_end - 1] not in "。；;！？!?:：.\u3000 "
                and not _ITEM_START_RE.match(text, s) and not _is_record(text, out[-1][0], prev_end))
        if soft:
            out[-1][1] = e
        else:
            out.append([s, e])
    return [(s, e) for s, e in out]


def _line_start(text: str, pos: int) -> int:
    return text.rfind("\n", 0, pos) + 1


def _is_record(text: str, start: int, end: int) -> bool:
    """A table row as loaders write them: "k: v；k: v；k: v" (or "; ") or "a | b | c | d"."""
    return is_record_line(text[start:end])


def _pieces(text: str, start: int, end: int, sep: re.Pattern[str],
            quantities: list[Quantity]) -> list[tuple[int, int]]:
    """Split text[start:end] at ``sep`` matches that do not fall inside a quantity."""
    out, pos = [], start
    for m in sep.finditer(text, start, end):
        if any(q.start <= m.start() < q.end for q in quantities):
            continue
        out.append((pos, m.start()))
        pos = m.end()
    out.append((pos, end))
    return [(s, e) for s, e in out if text[s:e].strip()]


_OPEN_END_RE = re.compile(r"(?:的|时|后|者|前)\s*$")
_OPEN_START_RE = re.compile(r"\s*(?:如果|若|凡|如|假如|(?i:if|when|where)(?![A-Za-z]))")


def _group_commas(text: str, start: int, end: int, quantities: list[Quantity]) -> list[tuple[int, int]]:
    """Join comma parts so that each group holds its own quantity; parts without one join a neighbour.

    A conditional part ("员工工作满三年的，", "If the amount exceeds $5,000,") always takes the next
    part with it, so the condition and the rule it qualifies stay one fact.
    """
    groups: list[list] = []   # [start, end, has_quantity, open]
    for s, e in _pieces(text, start, end, _COMMA_RE, quantities):
        has_q = any(s <= q.start < e for q in quantities)
        is_open = bool(_OPEN_END_RE.search(text, s, e) or _OPEN_START_RE.match(text, s, e))
        if groups and (groups[-1][3] or not (has_q and groups[-1][2])):
            g = groups[-1]
            g[1], g[2], g[3] = e, g[2] or has_q, is_open and not has_q
        else:
            groups.append([s, e, has_q, is_open])
    return [(g[0], g[1]) for g in groups]


def _trim(text: str, s: int, e: int, quantities: list[Quantity]) -> tuple[int, int]:
    """Drop surrounding punctuation and a leading list marker / article number (unless it is a number)."""
    while s < e and text[s] in _TRAIL:
        s += 1
    lead = _LEAD_RE.match(text, s, e)
    if lead and s < lead.end() < e and not any(s <= q.start < lead.end() for q in quantities):
        s = lead.end()
    while e > s and text[e - 1] in _TRAIL:
        e -= 1
    return s, e


# --- subjects ---------------------------------------------------------------------------------------
# Tokens that end the leading noun phrase of a Chinese rule (verbs, prepositions, modals,
# comparison words). jieba keeps words like 许可证 whole, so 可 inside a word never cuts.
_CN_STOP = set(
    "为 是 在 须 需 需要 应 应当 应该 必须 可 可以 能 不得 不能 不 按 按照 依照 依据 根据 每 每人 每晚 每天 每日 "
    "每次 每月 每年 每周 达到 满 超过 低于 高于 以上 以下 由 将 给予 享受 最高 最多 最低 至少 不超过 一律 原则上 "
    "如下 实行 执行 采用 参照 凭 经 限于 均 累计 合计 共计 共 约 给 "
    "于 自 从 起 到 至 前 后 内 时 期间 要 请 并 且 及 和 或 与 同 也 都 就 即 则 所".split())
_CN_CONNECTORS = ("对于", "凡是", "如果", "若是", "其中", "另外", "此外", "同时", "并且", "但是", "对", "凡",
                  "如", "若", "但", "且", "则", "而", "另")
_EN_STOP = set(
    "is are was were be been may must shall should can will cannot can't has have had get gets receive "
    "receives require requires required need needs at up to within over above below under more less than "
    "per for of in on from by with exceeding exceed exceeds no not only costs cost pay pays paid "
    "reimbursed reimburse entitled allowed limited capped".split())
_EN_LEAD = {"if", "when", "where", "for", "all", "any", "each", "every", "the", "a", "an", "and", "but"}
_WORD_RE = re.compile(r"[A-Za-z][A-Za-z'\-]*")
_HEADING_NUM_RE = re.compile(r"^\s*(?:第[一二三四五六七八九十百零\d]+[章节条款部分篇]\s*|[一二三四五六七八九十]+[、.]\s*"
                             r"|[（(][一二三四五六七八九十\d]+[)）]\s*|\d+(?:\.\d+)*[.、]?\s+)")


def leading_phrase(clause: str) -> str:
    """The noun phrase a rule clause starts with: text before its first verb, number or comparison.

    >>> leading_phrase("单笔采购金额在3000元以上的，须签订采购协议")
    '单笔采购金额'
    >>> leading_phrase("住宿费报销标准为每晚600元")
    '住宿费报销标准'
    >>> leading_phrase("10000元以上的，须签订正式合同")
    ''
    >>> leading_phrase("Hotel rooms are capped at $200 per night")
    'Hotel rooms'
    """
    if HAN_RE.search(clause[:12]):
        return _cn_phrase(clause)
    return _en_phrase(clause)


def _cn_phrase(clause: str) -> str:
    import jieba  # lazy: loading the dictionary takes a second

    jieba.setLogLevel(60)
    text = clause.strip()
    for c in _CN_CONNECTORS:
        if text.startswith(c) and len(text) > len(c):
            text = text[len(c):]
            break
    out: list[str] = []
    for tok in jieba.lcut(text):
        if tok in _CN_STOP or not re.search(rf"[{HAN}A-Za-z]", tok) or extract_quantities(tok):
            break
        out.append(tok)
    phrase = "".join(out).strip()
    phrase = re.sub(r"[为是在的]+$", "", phrase)   # jieba sometimes glues 为 to the noun (年假为)
    return phrase if len(phrase) <= 20 else ""


def _en_phrase(clause: str) -> str:
    words = _WORD_RE.findall(clause.split(",")[0]) if clause[:1].isalpha() else []
    while words and words[0].lower() in _EN_LEAD:
        words.pop(0)
    out: list[str] = []
    for w in words:
        if w.lower() in _EN_STOP:
            break
        out.append(w)
    return " ".join(out[:8])


_INTRO_ENDS = ("：", ":", "。", ".")


def _heading(path: list[str]) -> str:
    """The innermost heading, numbering removed. A path entry ending like a statement (``：:。.``)
    is the paragraph introducing a table, which the chunker adds to a chunk continuing the table:
    not a heading, so the rows keep the subject the rows before them got from the section heading.
    (Slide titles may end with ``！？``; they stay headings.)"""
    for h in reversed(path):
        if h.rstrip().endswith(_INTRO_ENDS):
            continue
        cleaned = _HEADING_NUM_RE.sub("", h).strip()
        if cleaned:
            return cleaned
    return ""


def _subject(heading: str, phrase: str) -> str:
    if not phrase or phrase in heading:
        return heading or phrase
    if not heading or heading in phrase:
        return phrase
    return f"{heading} / {phrase}"


# --- facts -----------------------------------------------------------------------------------------
_HEADER_UNIT_RE = re.compile(r"[(（]([^()（）]{1,10})[)）]\s*[:：]\s*$")
_KNOWN_UNITS = {normalize_unit(u) for u in ("元", "天", "小时", "人", "次", "晚", "%", "公里", "月", "年", "周",
                                            "USD", "工作日", "个", "份", "公斤", "分钟")}


def _with_header_unit(text: str, q: Quantity) -> Quantity:
    """A bare number under a header that names the unit takes it: "住宿标准(元/晚): 900" -> 900元."""
    if q.unit:
        return q
    m = _HEADER_UNIT_RE.search(text, max(0, q.start - 16), q.start)
    unit = normalize_unit(re.split(r"[/·每]", m.group(1))[0]) if m else ""
    return Quantity(q.text, q.value, unit, q.start, q.end, q.high) if unit in _KNOWN_UNITS else q


def _record_subject(clause: str) -> str:
    """Row identifiers of a record line: up to three short fields without numbers or lists ("一类城市 A类")."""
    keys = [m.group("val").strip() for m in _FIELD_RE.finditer(clause)]
    keys = [k for k in keys if k and len(k) <= 10 and not re.search(r"[\d、,，]", k)]
    return " ".join(keys[:3])


def _unwrap(span: str) -> str:
    """The clause with wrapped line breaks removed (joined directly between CJK, by a space otherwise)."""
    def join(m: re.Match[str]) -> str:
        a, b = span[m.start() - 1:m.start()], span[m.end():m.end() + 1]
        return "" if is_cjk(a) or is_cjk(b) else " "
    return re.sub(r"\s*\n\s*", join, span)



def _is_fact_value(q: Quantity) -> bool:
    return q.unit not in ("", "time", "页")


def _rule_rows(text: str, quantities: list[Quantity]) -> list[RuleRow]:
    """The rule rows of ``text``, value offsets into ``text``, read paragraph by paragraph (a piecewise
    rule may run over several sentences; a condition binds the values of its own clause only).

    >>> t = "工作已满1年不满10年的，年休假5天，病假3天。"
    >>> [(r.value.text, t[r.value.start:r.value.end], str(r.condition)) for r in _rule_rows(t, extract_quantities(t))]
    [('5天', '5天', '[12, 120) duration_months'), ('3天', '3天', '[12, 120) duration_months')]
    """
    rows: list[RuleRow] = []
    for s, e in _paragraphs(text):
        if not any(s <= q.start < e for q in quantities):
            continue
        for row in parse_rules(text[s:e].replace("\n", " ")):
            if row.value is not None:
                v = row.value
                row.value = Quantity(v.text, v.value, v.unit, v.start + s, v.end + s, v.high)
                rows.append(row)
    return rows


def _rule_of(rows: list[RuleRow], start: int, end: int, offset: int) -> dict | None:
    """The rule a clause states: its first row with a condition, a cap or floor, or a piecewise rule."""
    for row in rows:
        v = row.value
        if v is None or not start <= v.start < end:
            continue
        if row.condition is not None or row.direction != "eq" or row.piecewise:
            d = row.to_dict()
            d["value"].update(start=v.start + offset, end=v.end + offset)
            return d
    return None


def _chunk_facts(chunk: Chunk) -> Iterable[Fact]:
    text = chunk.text
    quantities = [_with_header_unit(text, q) for q in extract_quantities(text)]
    rules = _rule_rows(text, quantities)
    heading = _heading(chunk.heading_path)
    phrase = ""
    j = 0
    for s, e in split_clauses(text, quantities):
        clause = text[s:e]
        qs = [q for q in quantities if s <= q.start and q.end <= e]
        local = [Quantity(q.text, q.value, q.unit, q.start - s, q.end - s, q.high) for q in qs]
        conditions = find_conditions(clause, local)
        values = [q for q in qs if _is_fact_value(q) or (conditions and q.unit != "页")]
        # a clause that starts with its number ("10000元以上的，...") continues the previous rule
        record = _is_record(text, s, e)
        phrase = (_record_subject(clause) if record else leading_phrase(clause)) or phrase
        if not values:
            continue
        yield Fact(
            fact_id=f"{chunk.chunk_id}-f{j}",
            statement=_unwrap(clause),
            subject=_subject(heading, phrase),
            values=[Quantity(q.text, q.value, q.unit, chunk.start + q.start, chunk.start + q.end, q.high)
                    for q in values],
            conditions=conditions,
            source=chunk.source,
            chunk_id=chunk.chunk_id,
            page=chunk.page,
            start=chunk.start + s,
            end=chunk.start + e,
            rule=_rule_of(rules, s, e, chunk.start),
        )
        j += 1


def extract_facts(chunks: list[Chunk]) -> list[Fact]:
    """Facts (money limits, durations, counts, percentages, dates) stated in ``chunks``.

    Offsets are document offsets: ``doc.text[f.start:f.end]`` is the clause (``f.statement`` is
    that span with wrapped line breaks removed), and each value's ``start``/``end`` points at its
    number in the document text too.

    >>> c = Chunk("abc-0001", "采购.md", "单笔采购金额在3000元以上的，须签订采购协议；10000元以上的，须签订正式合同。",
    ...           heading_path=["第三章 采购管理"], start=100)
    >>> [(f.subject, [q.value for q in f.values], f.conditions) for f in extract_facts([c])]
    [('采购管理 / 单笔采购金额', [3000.0], ['以上']), ('采购管理 / 单笔采购金额', [10000.0], ['以上'])]
    """
    facts: list[Fact] = []
    for chunk in chunks:
        facts.extend(_chunk_facts(chunk))
    return facts
