"""Turn the rules in chunks into fact records: one clause that states a quantity, with its subject.

A fact is what a policy question usually asks for: "单笔采购金额在3000元以上的，须签订采购协议" ->
subject ``单笔采购金额``, value ``3000元``, condition ``以上``. Facts are embedded as
``f"{subject}：{statement}"`` and searched by the fact route, so the subject names what the
rule is about (the section heading plus the clause's leading noun phrase) and the statement is the
clause exactly as written, with offsets that re-quote it from the document.

How clauses are cut: sentences end at 。；;！？!? and line breaks (and at ". " in English); a
sentence is split further at commas only where the part after the comma holds its own quantity,
so "3000元以上的，须签订采购协议" stays one clause while "一线城市600元，二线城市450元" becomes two.
"""

from __future__ import annotations

import re
from typing import Iterable

from knowledge.numbers import extract_quantities
from knowledge.types import Chunk, Fact, Quantity

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


_PREFIX_RE = re.compile(rf"(?P<cn>{_alternation(_PREFIX_CN)})|\b(?P<en>{_alternation(_PREFIX_EN)})\b",
                        re.IGNORECASE)
_POSTFIX_RE = re.compile(rf"\s?(?:(?P<cn>{_alternation(_POSTFIX_CN)})|(?P<en>{_alternation(_POSTFIX_EN)})\b)",
                         re.IGNORECASE)
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
_SENTENCE_END_RE = re.compile(r"[。；;！？!?\n]+|\.(?=\s|$)")
_COMMA_RE = re.compile(r"，|,(?!\d)|(?<!\d),")
_LEAD_RE = re.compile(r"[\s\-•·*]*(?:[（(]?(?:\d{1,3}|[一二三四五六七八九十]{1,3})[)）.、]\s*)?"
                      r"(?:第[一二三四五六七八九十百零\d]+[条章节款项]\s*)?")
_TRAIL = " \t\r\n，,、：:"


def split_clauses(text: str, quantities: list[Quantity]) -> list[tuple[int, int]]:
    """(start, end) spans of the clauses of ``text`` that hold at least one quantity.

    >>> t = "单笔采购金额在3000元以上的，须签订采购协议；10000元以上的，须签订正式合同。"
    >>> [t[s:e] for s, e in split_clauses(t, extract_quantities(t))]
    ['单笔采购金额在3000元以上的，须签订采购协议', '10000元以上的，须签订正式合同']
    """
    spans: list[tuple[int, int]] = []
    for s, e in _pieces(text, 0, len(text), _SENTENCE_END_RE, quantities):
        spans += _group_commas(text, s, e, quantities)
    return [_trim(text, s, e) for s, e in spans if any(s <= q.start < e for q in quantities)]


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
_OPEN_START_RE = re.compile(r"\s*(?:如果|若|凡|如|假如|(?i:if|when|where)\b)")


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


def _trim(text: str, s: int, e: int) -> tuple[int, int]:
    while s < e and text[s] in _TRAIL:
        s += 1
    lead = _LEAD_RE.match(text, s, e)
    if lead and lead.end() < e:
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
    if re.search(r"[\u4e00-\u9fff]", clause[:12]):
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
        if tok in _CN_STOP or not re.search(r"[\u4e00-\u9fffA-Za-z]", tok) or extract_quantities(tok):
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


def _heading(path: list[str]) -> str:
    for h in reversed(path):
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
def _is_fact_value(q: Quantity) -> bool:
    return q.unit not in ("", "time")


def _chunk_facts(chunk: Chunk) -> Iterable[Fact]:
    text = chunk.text
    quantities = extract_quantities(text)
    heading = _heading(chunk.heading_path)
    phrase = ""
    j = 0
    for s, e in split_clauses(text, quantities):
        clause = text[s:e]
        qs = [q for q in quantities if s <= q.start and q.end <= e]
        local = [Quantity(q.text, q.value, q.unit, q.start - s, q.end - s, q.high) for q in qs]
        conditions = find_conditions(clause, local)
        values = [q for q in qs if _is_fact_value(q) or conditions]
        # a clause that starts with its number ("10000元以上的，...") continues the previous rule
        phrase = leading_phrase(clause) or phrase
        if not values:
            continue
        yield Fact(
            fact_id=f"{chunk.chunk_id}-f{j}",
            statement=clause,
            subject=_subject(heading, phrase),
            values=[Quantity(q.text, q.value, q.unit, chunk.start + q.start, chunk.start + q.end, q.high)
                    for q in values],
            conditions=conditions,
            source=chunk.source,
            chunk_id=chunk.chunk_id,
            page=chunk.page,
            start=chunk.start + s,
            end=chunk.start + e,
        )
        j += 1


def extract_facts(chunks: list[Chunk]) -> list[Fact]:
    """Facts (money limits, durations, counts, percentages, dates) stated in ``chunks``.

    Offsets are document offsets: ``doc.text[f.start:f.end] == f.statement``, and each value's
    ``start``/``end`` points at its number in the document text too.

    >>> c = Chunk("abc-0001", "采购.md", "单笔采购金额在3000元以上的，须签订采购协议；10000元以上的，须签订正式合同。",
    ...           heading_path=["第三章 采购管理"], start=100)
    >>> [(f.subject, [q.value for q in f.values], f.conditions) for f in extract_facts([c])]
    [('采购管理 / 单笔采购金额', [3000.0], ['以上']), ('采购管理 / 单笔采购金额', [10000.0], ['以上'])]
    """
    facts: list[Fact] = []
    for chunk in chunks:
        facts.extend(_chunk_facts(chunk))
    return facts
