"""Find the quantities in Chinese and English text and normalise them so they can be compared.

``3万元``, ``30000元``, ``30,000 元`` and ``三万元`` all become ``Quantity(value=30000, unit="元")``;
``百分之三十`` and ``30%`` both become ``(30, "%")``; ``3-5天`` becomes ``(3, "天", high=5)``;
``2024年3月1日`` and ``March 1, 2024`` both become ``(20240301, "date")``.

Numbers are compared as whole tokens, never as substrings: ``70`` is not found in ``170`` and
``1.5`` is not found in ``15``.

What is *not* a quantity (so an answer that carries it is not checked against the sources):

* citation markers ``[1]``, ``[1, 2]``, ``【3】``;
* list ordinals at the start of a line: ``1.`` ``2、`` ``3)`` ``(4)`` ``（一）`` ``一、`` and section
  numbers ``3.2 报销流程``;
* anything after 第 (``第十二条``, ``第3章``) and weekdays (``周一``, ``星期三``);
* identifiers where digits touch letters (``Q1``, ``GPT-3``, ``5G``, ``v1.2``, ``21st``).

The rule for Chinese numerals, which also occur inside ordinary words (一些, 一般, 统一, 万一, 十分,
千万不要): a run of Chinese numeral characters is a quantity only when it is followed by a unit
(``五天``, ``两人``, ``三万元``), follows 百分之, or is a well-formed multi-character numeral with a
place value (``五百``, ``十二``, ``一千二百五十``). A lone ``一`` before a generic classifier (一个,
一种, 一位, 一项, ...) reads as the article "a" and is skipped; ``一次性`` is skipped too.

English number words (``seven``, ``three million``) are read only when ``words=True``: the verifier
accepts them as evidence in passages but never requires an answer's "one of the ..." to be sourced.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from knowledge.core.types import Quantity

__all__ = [
    "extract_quantities",
    "normalize_unit",
    "same_quantity",
    "units_compatible",
    "parse_chinese_numeral",
]

# --- character normalisation -------------------------------------------------------------
# One character in, one character out, so offsets into the normalised text are offsets into the
# original text as well.
_FULLWIDTH = {chr(0xFF10 + i): str(i) for i in range(10)}
_FULLWIDTH.update({"％": "%", "．": ".", "～": "~", "〜": "~", "：": ":", "／": "/", "＄": "$",
                   "￥": "¥", "－": "-", "﹪": "%"})
_FULLWIDTH.update({chr(0xFF21 + i): chr(0x41 + i) for i in range(26)})
_FULLWIDTH.update({chr(0xFF41 + i): chr(0x61 + i) for i in range(26)})
_TRANSLATE = str.maketrans(_FULLWIDTH)

# --- units --------------------------------------------------------------------------------
# surface form -> canonical unit. Chinese forms match right after the number (one space allowed);
# English forms must end at a word boundary.
_CN_UNITS: dict[str, str] = {
    "元": "元", "块钱": "元", "块": "元", "圆": "元", "人民币": "元", "美元": "USD", "美金": "USD",
    "欧元": "EUR", "英镑": "GBP", "日元": "JPY", "港元": "HKD", "港币": "HKD",
    "%": "%", "个百分点": "百分点", "百分点": "百分点",
    "个工作日": "工作日", "工作日": "工作日", "个自然日": "天", "自然日": "天", "天": "天", "日": "天",
    "个小时": "小时", "小时": "小时", "钟头": "小时", "分钟": "分钟", "秒钟": "秒", "秒": "秒",
    "个星期": "周", "星期": "周", "个礼拜": "周", "礼拜": "周", "周": "周",
    "个月": "月", "月": "月", "年": "年", "周岁": "岁", "岁": "岁",
    "人次": "人次", "人": "人", "名": "人", "位": "人", "次": "次", "晚": "晚", "夜": "晚",
    "公里": "公里", "千米": "公里", "米": "米", "公斤": "公斤", "千克": "公斤", "吨": "吨",
    "平方米": "平方米", "平米": "平方米", "㎡": "平方米",
    "个": "个", "份": "份", "页": "页", "张": "张", "件": "件", "台": "台", "套": "套", "家": "家",
    "条": "条", "项": "项", "篇": "篇", "本": "本", "间": "间", "种": "种", "倍": "倍", "折": "折",
    "km": "公里", "kg": "公斤",
}
_EN_UNITS: dict[str, str] = {
    "percent": "%", "per cent": "%", "pct": "%", "percentage points": "百分点",
    "business days": "工作日", "business day": "工作日", "working days": "工作日",
    "working day": "工作日", "calendar days": "天", "days": "天", "day": "天",
    "hours": "小时", "hour": "小时", "hrs": "小时", "hr": "小时", "minutes": "分钟",
    "minute": "分钟", "mins": "分钟", "seconds": "秒", "weeks": "周", "week": "周",
    "months": "月", "month": "月", "years": "年", "year": "年", "yrs": "年",
    "people": "人", "persons": "人", "person": "人", "employees": "人", "times": "次",
    "nights": "晚", "night": "晚", "kilometers": "公里", "kilometres": "公里", "kilometer": "公里",
    "miles": "mile", "mile": "mile", "km": "公里", "kg": "公斤",
    "yuan": "元", "rmb": "元", "cny": "元", "usd": "USD", "dollars": "USD", "dollar": "USD",
    "euros": "EUR", "euro": "EUR", "eur": "EUR", "gbp": "GBP", "pounds": "GBP",
}
# a lone 一 before these reads as the article "a" (一个问题, 一位同事), not as the number one
_ARTICLE_CLASSIFIERS = set("个种项位件条名份张家套台本篇间块")
_CURRENCY_PREFIXES: dict[str, str] = {
    "US$": "USD", "HK$": "HKD", "$": "USD", "¥": "元", "€": "EUR", "£": "GBP",
    "RMB": "元", "CNY": "元", "USD": "USD", "EUR": "EUR", "GBP": "GBP", "人民币": "元",
}


def normalize_unit(unit: str) -> str:
    """Map a unit as written to its canonical name; scale words are dropped (they live in the value).

    >>> [normalize_unit(u) for u in ("块", "RMB", "万元", "days", "百分之", "％", "个月", "km", "")]
    ['元', '元', '元', '天', '%', '%', '月', '公里', '']

    Unknown units come back stripped and lower-cased (``"Widgets"`` -> ``"widgets"``).
    """
    u = unit.strip().translate(_TRANSLATE)
    if not u:
        return ""
    if u in ("百分之", "percent"):
        return "%"
    if u in _CN_UNITS:
        return _CN_UNITS[u]
    if u in _CURRENCY_PREFIXES:
        return _CURRENCY_PREFIXES[u]
    low = u.lower()
    if low in _EN_UNITS:
        return _EN_UNITS[low]
    for scale in ("万亿", "千万", "百万", "亿", "万", "千", "百"):
        if u.startswith(scale) and u[len(scale):] in _CN_UNITS:
            return _CN_UNITS[u[len(scale):]]
    return low


def units_compatible(a: str, b: str) -> bool:
    """Units agree when equal or when either is empty (a bare number fits any unit).

    >>> units_compatible("元", "元"), units_compatible("元", ""), units_compatible("元", "%")
    (True, True, False)
    """
    return a == b or not a or not b


def same_quantity(a: Quantity, b: Quantity) -> bool:
    """True when two quantities state the same amount: equal values (1e-9 relative), compatible units.

    Ranges match ranges with the same ends only.

    >>> q = extract_quantities("3万元 30,000 元 三万元 3000元")
    >>> [same_quantity(q[0], x) for x in q]
    [True, True, True, False]
    """
    if not units_compatible(a.unit, b.unit) or not _close(a.value, b.value):
        return False
    if a.high is None or b.high is None:
        return a.high is None and b.high is None
    return _close(a.high, b.high)


def _close(x: float, y: float) -> bool:
    return x == y or abs(x - y) <= 1e-9 * max(abs(x), abs(y))


# --- Chinese numerals ---------------------------------------------------------------------
_CN_DIGIT = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6,
             "七": 7, "八": 8, "九": 9}
_CN_SMALL = {"十": 10, "百": 100, "千": 1000}
_CN_BIG = {"万": 10_000, "亿": 100_000_000}
_CN_CHARS = "".join(_CN_DIGIT) + "".join(_CN_SMALL) + "".join(_CN_BIG)


def parse_chinese_numeral(s: str) -> float | None:
    """Value of a Chinese numeral, or None when ``s`` is not a well-formed one.

    >>> [parse_chinese_numeral(s) for s in ("五百", "十二", "一千二百五十", "三万五", "二〇二四")]
    [500.0, 12.0, 1250.0, 35000.0, 2024.0]
    >>> [parse_chinese_numeral(s) for s in ("万一", "千万", "一五一十")]
    [None, None, None]
    """
    if not s or any(c not in _CN_CHARS for c in s):
        return None
    if all(c in _CN_DIGIT for c in s):
        # digit by digit (二〇二四); a single digit is just itself
        return float("".join(str(_CN_DIGIT[c]) for c in s))
    total, section, digit, last_small, prev = 0, 0, None, None, ""
    for c in s:
        if c in _CN_DIGIT:
            if digit not in (None, 0):
                return None                     # two digits in a row: 一五 is not a numeral
            digit = _CN_DIGIT[c]
        elif c in _CN_SMALL:
            unit = _CN_SMALL[c]
            if digit is None:
                if c != "十" or prev not in ("", "零") and prev not in _CN_BIG:
                    return None                 # 百 / 千 need a digit before them
                digit = 1
            if last_small is not None and unit >= last_small:
                return None
            section, digit, last_small = section + digit * unit, None, unit
        else:
            unit = _CN_BIG[c]
            section += digit or 0
            if section == 0 and total == 0:
                return None                     # 万一, 千万 used as words
            total = (total + section) * unit if unit > 10_000 else total + section * unit
            section, digit, last_small = 0, None, None
        prev = c
    if digit:
        # 三万五 = 35000, 一千二 = 1200 (a trailing digit counts in the next lower place)
        if prev in _CN_DIGIT and len(s) >= 2 and s[-2] in _CN_SMALL and s[-2] != "十":
            digit *= _CN_SMALL[s[-2]] // 10
        elif len(s) >= 2 and s[-2] in _CN_BIG:
            digit *= _CN_BIG[s[-2]] // 10
        section += digit
    return float(total + section)


# --- masks: spans that are never quantities ------------------------------------------------
_CITATION_RE = re.compile(r"\[\^?\d+(?:\s*[,，、\-–]\s*\d+)*\]|【\d+】")
_ORDINAL_RE = re.compile(
    r"(?m)^[ \t]*(?:"
    r"(?P<sec>\d{1,2}(?:\.\d{1,2})+)(?=[ \t]+[^\d\s%])"      # 3.2 报销流程 (section number)
    r"|\d{1,3}(?:[.、)）](?!\d)|[ \t]*、)"                    # 1.  2、  3)
    r"|[一二三四五六七八九十]{1,3}[、.]"                         # 一、
    r")"
)
_PAREN_ORDINAL_RE = re.compile(r"[（(](?:\d{1,2}|[一二三四五六七八九十]{1,3})[)）]")   # (4) （一）
_BEFORE_SKIP_RE = re.compile(r"(?:第|No\.|#)\s*$")


def _masked_spans(t: str) -> list[tuple[int, int]]:
    """Spans that hold no quantity: citation markers, list ordinals, section numbers."""
    spans = [m.span() for m in _CITATION_RE.finditer(t)]
    spans += [m.span() for m in _PAREN_ORDINAL_RE.finditer(t)]
    for m in _ORDINAL_RE.finditer(t):
        if m.group("sec") and (_EN_UNIT_RE.match(t, m.end()) or re.match(r"\s*%", t[m.end():])):
            continue                                     # "3.5 days" is a number, not section 3.5
        # ("1.1 本规定…": a Chinese character after the space starts the heading text, even 本/年/人)
        spans.append((m.end() - len(m.group(0).lstrip()), m.end()))
    return spans


# --- dates and times ------------------------------------------------------------------------
_MONTHS = {
    "January": 1, "February": 2, "March": 3, "April": 4, "May": 5, "June": 6, "July": 7,
    "August": 8, "September": 9, "October": 10, "November": 11, "December": 12,
    "Jan": 1, "Feb": 2, "Mar": 3, "Apr": 4, "Jun": 6, "Jul": 7, "Aug": 8, "Sep": 9, "Sept": 9,
    "Oct": 10, "Nov": 11, "Dec": 12,
}
# Title case or upper case only: "may" and "march" are also ordinary English words.
_MONTH_ALT = "|".join(sorted(list(_MONTHS) + [m.upper() for m in _MONTHS], key=len, reverse=True))
_MON = rf"(?P<mon>{_MONTH_ALT})\.?"
# word edges that ignore CJK: Python's \b sees no edge in "是Jan" or "5 days内"
_L, _R = r"(?<![A-Za-z0-9])", r"(?![A-Za-z0-9])"
_CN_D = r"\d{1,4}|[〇零一二三四五六七八九十]{1,4}"
_DATE_RES = [
    re.compile(rf"(?P<y>\d{{4}}|[〇零一二三四五六七八九]{{4}})\s*年\s*(?P<m>{_CN_D})\s*月"
               rf"(?:\s*(?P<d>{_CN_D})\s*[日号])?"),
    re.compile(rf"(?<![\d年])(?P<m>{_CN_D})\s*月\s*(?P<d>{_CN_D})\s*[日号]"),
    re.compile(r"(?<![\d.])(?P<y>(?:1[6-9]|2\d)\d{2})(?P<sep>[-/.])(?P<m>\d{1,2})(?P=sep)"
               r"(?P<d>\d{1,2})(?![\d.])"),
    re.compile(r"(?<![\d./])(?P<m>\d{1,2})(?P<sl>/)(?P<d>\d{1,2})/(?P<y>(?:1[6-9]|2\d)\d{2})(?!\d)"),
    re.compile(rf"{_L}{_MON}\s+(?P<d>\d{{1,2}})(?:st|nd|rd|th)?{_R}(?:,?\s+(?P<y>(?:1[6-9]|2\d)\d{{2}}){_R})?"),
    re.compile(rf"(?<![A-Za-z0-9.])(?P<d>\d{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?{_MON}"
               rf"(?:,?\s+(?P<y>(?:1[6-9]|2\d)\d{{2}}){_R})?"),
    re.compile(rf"{_L}{_MON},?\s+(?P<y>(?:1[6-9]|2\d)\d{{2}}){_R}"),
]
_TIME_RE = re.compile(r"(?<![\d.:])(?P<h>[01]?\d|2[0-3]):(?P<mi>[0-5]\d)(?![\d:])"
                      r"(?:\s*(?P<ap>[AaPp]\.?[Mm]\.?)(?![A-Za-z]))?")


def _small_int(s: str | None) -> int:
    if not s:
        return 0
    if s.isdigit():
        return int(s)
    v = parse_chinese_numeral(s)
    return int(v) if v is not None else -1


def _date_value(m: re.Match[str]) -> int | None:
    g = m.groupdict()
    y = _small_int(g.get("y"))
    mon = _MONTHS[g["mon"].title()] if g.get("mon") else _small_int(g.get("m"))
    d = _small_int(g.get("d"))
    if g.get("d") is not None and d == 0:
        return None                                      # "March 00": not a date
    if g.get("sl") and mon > 12 >= d:
        mon, d = d, mon                                  # 29/07/2021 is day/month/year
    if not 1 <= mon <= 12 or not 0 <= d <= 31 or y < 0 or (y and not 1000 <= y <= 2999):
        return None
    if not d and not y:
        return None
    return y * 10000 + mon * 100 + d


def _find_dates(t: str, taken: list[tuple[int, int]]) -> list[Quantity]:
    found: list[Quantity] = []
    for rx in _DATE_RES:
        for m in rx.finditer(t):
            if _overlaps(m.span(), taken):
                continue
            v = _date_value(m)
            if v is not None:
                found.append(Quantity(m.group(0), float(v), "date", m.start(), m.end()))
                taken.append(m.span())
    for m in _TIME_RE.finditer(t):
        if _overlaps(m.span(), taken):
            continue
        h = int(m.group("h"))
        ap = (m.group("ap") or "").lower()[:1]
        if ap == "p" and h < 12:
            h += 12
        elif ap == "a" and h == 12:
            h = 0
        found.append(Quantity(m.group(0), float(h * 100 + int(m.group("mi"))), "time",
                              m.start(), m.end()))
        taken.append(m.span())
    return found


def _overlaps(span: tuple[int, int], taken: list[tuple[int, int]]) -> bool:
    return any(span[0] < e and s < span[1] for s, e in taken)


# --- plain numbers ----------------------------------------------------------------------------
_CORE_RE = re.compile(
    rf"(?:(?P<pct>百分之|千分之)\s?)?(?:(?P<ar>\d{{1,3}}(?:,\d{{3}})+(?:\.\d+)?|\d+(?:\.\d+)?)"
    rf"|(?P<cn>[{_CN_CHARS}]+))"
)
_EN_WORDS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen".split())}
_EN_WORDS.update({w: 10 * (i + 2) for i, w in enumerate(
    "twenty thirty forty fifty sixty seventy eighty ninety".split())})
_WORD_RE = re.compile(
    r"(?<![A-Za-z])(?P<w>(?:" + "|".join(sorted(_EN_WORDS, key=len, reverse=True)) + r")(?:-(?:"
    + "|".join(w for w, v in _EN_WORDS.items() if 0 < v < 10) + r"))?)(?![A-Za-z])", re.IGNORECASE)
_CN_SCALES = {"万亿": 1e12, "千万": 1e7, "百万": 1e6, "亿": 1e8, "万": 1e4, "千": 1e3, "百": 1e2}
_CN_SCALE_RE = re.compile(r" ?(万亿|千万|百万|亿|万|千|百)(?!分)")
_EN_SCALES = {"thousand": 1e3, "million": 1e6, "billion": 1e9, "trillion": 1e12, "bn": 1e9,
              "mln": 1e6, "mn": 1e6, "k": 1e3}
_EN_SCALE_RE = re.compile(r"\s*(thousand|million|billion|trillion|bn|mln|mn)(?![A-Za-z])|(k|K)(?![A-Za-z])",
                          re.IGNORECASE)
_CUR_SCALE_RE = re.compile(r"(M|B|m|b)(?![A-Za-z])")   # $5M, $1.2B, 1.2M
_CN_UNIT_RE = re.compile(r" ?(" + "|".join(sorted(map(re.escape, _CN_UNITS), key=len, reverse=True))
                         + r")")
_EN_UNIT_RE = re.compile(r"\s*(" + "|".join(sorted(map(re.escape, _EN_UNITS), key=len, reverse=True))
                         + r")(?![A-Za-z])", re.IGNORECASE)
_PER_RE = re.compile(r" ?(?:/|每)\s?(?:人|天|日|晚|次|月|年|小时|周|公里|km|day|night|person|hour)"
                     r"(?:/(?:人|天|日|晚|次))?")
_CUR_PREFIX_RE = re.compile(r"(?:(?<![A-Za-z])(?:US\$|HK\$|RMB|CNY|USD|EUR|GBP)|\$|¥|€|£|人民币)\s?$")
_RANGE_SEP_RE = re.compile(r"\s*(?:-|–|—|~|至|到|to)\s*")


@dataclass
class _Atom:
    start: int
    end: int
    value: float        # value with the scale applied
    unit: str
    mult: float         # the scale applied (万 -> 1e4, million -> 1e6), 1 when none
    weak: bool          # a lone Chinese numeral: kept only as the low end of a range (三至五天)


def _read_scale(t: str, pos: int, currency: bool) -> tuple[float, int]:
    """Scale word right after a number: (multiplier, end). 千米/千克 are units, not scales."""
    if t.startswith(("千米", "千克"), pos):
        return 1.0, pos
    m = _CN_SCALE_RE.match(t, pos)
    if m:
        return _CN_SCALES[m.group(1)], m.end()
    m = _EN_SCALE_RE.match(t, pos)
    if m:
        return _EN_SCALES[(m.group(1) or m.group(2)).lower()], m.end()
    m = _CUR_SCALE_RE.match(t, pos)
    if m and (currency or m.group(1) in "MB"):     # 1.2M, 7B; lower-case m/b only as in $5m
        return (1e6 if m.group(1) in "Mm" else 1e9), m.end()
    return 1.0, pos


def _read_unit(t: str, pos: int) -> tuple[str, str, int]:
    """Unit right after a number (and its scale): (canonical unit, surface, end); ("", "", pos) if none."""
    m = _CN_UNIT_RE.match(t, pos)
    if m and not (m.group(1) == "次" and t.startswith("性", m.end())):   # 一次性 = "one-off"
        return _CN_UNITS[m.group(1)], m.group(1), m.end()
    m = _EN_UNIT_RE.match(t, pos)
    if m:
        return _EN_UNITS[m.group(1).lower()], m.group(1), m.end()
    return "", "", pos


def _identifier_like(t: str, start: int, end: int) -> bool:
    """Digits that belong to a name, not a quantity: Q1, v2, GPT-3, COVID-19, 1.2.3."""
    prev = t[start - 1] if start else ""
    if prev and (prev in "._" or (prev.isascii() and prev.isalpha())):
        return True
    if prev == "-" and start >= 2 and t[start - 2].isascii() and t[start - 2].isalpha():
        return True
    return t.startswith(".", end) and t[end + 1:end + 2].isdigit()


def _atom_at(t: str, m: re.Match[str], masked: list[tuple[int, int]]) -> _Atom | None:
    core = "ar" if m.group("ar") else "cn"
    start, core_end = m.start(core), m.end()
    if _BEFORE_SKIP_RE.search(t, max(0, start - 4), start):
        return None                                      # 第3章, 第十二条, No. 1
    if core == "ar":
        if _identifier_like(t, start, core_end):
            return None
        value = float(m.group("ar").replace(",", ""))
    else:
        parsed = parse_chinese_numeral(m.group("cn"))
        if parsed is None or not _plausible_cn(t, m.group("cn"), start, core_end):
            return None
        value = parsed
    pct = m.group("pct")
    if pct:                                              # 百分之三十 = 30%, 千分之五 = 0.5%
        value = value / 10 if pct == "千分之" else value
        return _Atom(m.start(), core_end, value, "%", 1.0, False)
    cur = _CUR_PREFIX_RE.search(t, max(0, start - 5), start)
    cur_unit = _CURRENCY_PREFIXES[cur.group(0).strip()] if cur else ""
    mult, pos = _read_scale(t, core_end, bool(cur))
    unit, surface, end = _read_unit(t, pos)
    if not unit and t[end:end + 1].isascii() and t[end:end + 1].isalpha():
        return None                                      # 5G, 3D, 21st
    if t[pos:pos + 1] in _ORDINAL_SUFFIXES:
        return None                                      # 十三届, 神舟十二号, 5号线: names, not amounts
    if core == "cn" and m.group("cn") == "一" and surface in _ARTICLE_CLASSIFIERS:
        return None                                      # 一个问题: the article "a"
    unit = cur_unit or unit
    if unit:
        per = _PER_RE.match(t, end)
        end = per.end() if per else end
    a_start = cur.start() if cur else start
    if _overlaps((a_start, end), masked):
        return None
    weak = core == "cn" and not unit and mult == 1.0 and not _strong_cn(m.group("cn"))
    return _Atom(a_start, end, value * mult, unit, mult, weak)


_ORDINAL_SUFFIXES = set("届号代版级")


def _plausible_cn(t: str, run: str, start: int, end: int) -> bool:
    """Chinese numeral runs that read as words or names, not amounts, are refused."""
    if run == "零" or (run == "二" and t.startswith("次", end)):
        return False                                     # 零件, 零食; 二次开发 ("secondary")
    if start and t[start - 1] == "月":
        return False                                     # lunar days: 腊月二十七, 正月十五
    if t.startswith("大", end):
        return False                                     # 十八大, 三大产业
    if len(run) >= 2 and all(c in _CN_DIGIT for c in run):
        # digit by digit only for years (二〇二四年); 唯一一个 and 五一假期 are words
        return len(run) == 4 and t.startswith("年", end) or "〇" in run or "零" in run
    return True


def _strong_cn(s: str) -> bool:
    """A Chinese numeral that stands alone without a unit: several characters with a place value."""
    return len(s) >= 2 and any(c in _CN_SMALL or c in _CN_BIG for c in s)


def _find_atoms(t: str, taken: list[tuple[int, int]], masked: list[tuple[int, int]]) -> list[_Atom]:
    atoms: list[_Atom] = []
    pos = 0
    while (m := _CORE_RE.search(t, pos)) is not None:
        pos = m.end()
        if _overlaps(m.span(), taken):
            continue
        atom = _atom_at(t, m, masked)
        if atom is None or _overlaps((atom.start, atom.end), taken):
            continue
        atoms.append(atom)
        pos = max(pos, atom.end)
    return atoms


def _word_atoms(t: str, taken: list[tuple[int, int]]) -> list[_Atom]:
    """English number words ("seven days", "three million"): read only when asked for."""
    out = []
    for m in _WORD_RE.finditer(t):
        if _overlaps(m.span(), taken):
            continue
        value = float(sum(_EN_WORDS[p] for p in m.group("w").lower().split("-")))
        mult, pos = _read_scale(t, m.end(), False)
        unit, _, end = _read_unit(t, pos)
        out.append(_Atom(m.start(), end, value * mult, unit, mult, False))
    return out


def _as_range(t: str, a: _Atom, b: _Atom) -> tuple[float, float] | None:
    """(low, high) when ``a SEP b`` is a range (3-5天, 3至5天, 三到五天, 3 to 5 days, 1-2万元)."""
    if not _RANGE_SEP_RE.fullmatch(t, a.end, b.start):
        return None
    if a.unit and b.unit and a.unit != b.unit or (a.weak and b.weak):
        return None
    low = a.value * b.mult if a.mult == 1.0 and b.mult != 1.0 else a.value
    return (low, b.value) if low < b.value else None


def extract_quantities(text: str, words: bool = False) -> list[Quantity]:
    """All quantities in ``text``, in order of appearance, with normalised value and unit.

    >>> [(q.text, q.value, q.unit) for q in extract_quantities("预算3万元，上浮百分之三十，约1.5万")]
    [('3万元', 30000.0, '元'), ('百分之三十', 30.0, '%'), ('1.5万', 15000.0, '')]
    >>> q = extract_quantities("审批需3-5个工作日")[0]
    >>> (q.value, q.high, q.unit)
    (3.0, 5.0, '工作日')
    >>> [(q.text, q.value, q.unit) for q in extract_quantities("自2024年3月1日起施行[1]")]
    [('2024年3月1日', 20240301.0, 'date')]
    >>> [q.value for q in extract_quantities("Revenue was $1.2 billion in 2021.")]
    [1200000000.0, 2021.0]
    >>> extract_quantities("一般统一处理一些事项")
    []

    ``words=True`` also reads English number words ("seven days", "three million").
    """
    t = text.translate(_TRANSLATE)
    masked = _masked_spans(t)
    taken = list(masked)
    found = _find_dates(t, taken)
    atoms = _find_atoms(t, taken, masked)
    if words:
        atoms += _word_atoms(t, taken + [(a.start, a.end) for a in atoms])
        atoms.sort(key=lambda a: a.start)
    i = 0
    while i < len(atoms):
        a = atoms[i]
        rng = _as_range(t, a, atoms[i + 1]) if i + 1 < len(atoms) else None
        if rng is not None:
            b = atoms[i + 1]
            found.append(Quantity(text[a.start:b.end], rng[0], a.unit or b.unit, a.start, b.end, rng[1]))
            i += 2
            continue
        if not a.weak:
            found.append(Quantity(text[a.start:a.end], a.value, a.unit, a.start, a.end))
        i += 1
    found.sort(key=lambda q: q.start)
    return found
