"""Rules read as rules: the conditions, tiers and piecewise rules of policy text, and the quantities
a question states, so the engine can tell which row of a rule applies.

At index time :func:`parse_rules` turns a sentence into rows of (subject, condition, value,
direction)::

    已满1年不满10年的，年休假5天  ->  年休假: service in [12, 120) months -> 5天 (eq)
    试用期不得超过一个月           ->  试用期: 1个月, a cap (max)
    工龄: 1-3年；补贴(元/月): 200    ->  补贴: [12, 36] months -> 200元

A piecewise rule ("每满一年计一个月；六个月以上不满一年的，按一年计算；不满六个月的，计半个月")
becomes one rule whose rows all carry it, so :func:`compute` can apply it to one quantity.

At question time :func:`read_question` reads the quantities a question states (as points or
intervals: "满15年", "一年零八个月" = 20 months, "三个月以上不满一年" = [3, 12) months, "第11年" =
[10, 11) years) and whether it asks for a maximum or a minimum; :func:`select_rows` keeps the rows
whose condition holds and :func:`direction_conflict` tells when the question asks for a cap where
the documents set only a floor (or the reverse).

Quantities compare within one dimension only, in its base unit (durations in months, money in
its currency); every word and factor comes from the ``conditions:`` section of
``config/lexicon.yaml``. Conditions follow Chinese legal usage: 以上/以下/以内/满 include the
number, 不满/超过 exclude it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from typing import Any

from config.lexicon import conditions, lexicon
from knowledge.core.types import Fact, Quantity
from knowledge.numbers import extract_quantities, normalize_unit, parse_chinese_numeral

__all__ = ["Bound", "Computation", "QuestionReading", "RuleRow", "compute", "direction_conflict",
           "asking_part", "dimension", "parse_rules", "quantity_spans", "read_question", "rows_of_facts", "select_rows", "to_base"]

_EPS = 1e-9


# --- records ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Bound:
    """An interval of one dimension in its base unit; ``None`` is an open end (unbounded).

    >>> b = Bound(12, True, 120, False, "duration_months")      # 已满1年不满10年
    >>> b.contains(12), b.contains(119.9), b.contains(120)
    (True, True, False)
    >>> b.covers(Bound.point(60, "duration_months")), b.covers(Bound(100, True, None, False, "duration_months"))
    (True, False)
    """

    low: float | None
    low_closed: bool
    high: float | None
    high_closed: bool
    dim: str

    @classmethod
    def point(cls, x: float, dim: str) -> "Bound":
        return cls(x, True, x, True, dim)

    @property
    def is_point(self) -> bool:
        return self.low is not None and self.high is not None and abs(self.high - self.low) <= _EPS

    def contains(self, x: float) -> bool:
        """True when ``x`` (in this bound's base unit) lies inside."""
        if self.low is not None and (x < self.low - _EPS or (not self.low_closed and x <= self.low + _EPS)):
            return False
        return not (self.high is not None
                    and (x > self.high + _EPS or (not self.high_closed and x >= self.high - _EPS)))

    def covers(self, other: "Bound") -> bool:
        """True when every value of ``other`` (same dimension) lies inside this bound."""
        if other.dim != self.dim:
            return False
        if other.is_point:
            return self.contains(other.low)  # type: ignore[arg-type]
        return _low_within(self, other) and _high_within(self, other)

    def to_dict(self) -> dict[str, Any]:
        return {"low": self.low, "low_closed": self.low_closed, "high": self.high,
                "high_closed": self.high_closed, "dim": self.dim}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Bound":
        return cls(d.get("low"), bool(d.get("low_closed", True)), d.get("high"),
                   bool(d.get("high_closed", False)), str(d.get("dim", "")))

    def __str__(self) -> str:
        lo = "(-inf" if self.low is None else ("[" if self.low_closed else "(") + f"{self.low:g}"
        hi = "inf)" if self.high is None else f"{self.high:g}" + ("]" if self.high_closed else ")")
        return f"{lo}, {hi} {self.dim}"


def _low_within(outer: Bound, inner: Bound) -> bool:
    if outer.low is None:
        return True
    if inner.low is None or inner.low < outer.low - _EPS:
        return False
    return outer.low_closed or inner.low > outer.low + _EPS or not inner.low_closed


def _high_within(outer: Bound, inner: Bound) -> bool:
    if outer.high is None:
        return True
    if inner.high is None or inner.high > outer.high + _EPS:
        return False
    return outer.high_closed or inner.high < outer.high - _EPS or not inner.high_closed


@dataclass
class RuleRow:
    """One row of a rule: when ``condition`` holds, ``subject`` is ``value`` (or at most / at least it).

    ``direction`` is ``"eq"`` (the value itself), ``"max"`` (a cap: 不得超过, 最多) or ``"min"`` (a
    floor: 不得低于, 至少). ``piecewise`` is set on every row of a piecewise rule: ``{"role": "per" |
    "remainder", "rule": {...}}``, the rule as a whole, so one row is enough to :func:`compute`.
    Offsets of ``value`` refer to the text given to :func:`parse_rules`.
    """

    subject: str
    condition: Bound | None
    condition_text: str
    value: Quantity | None
    direction: str
    text: str
    piecewise: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"subject": self.subject, "condition": self.condition.to_dict() if self.condition else None,
                "condition_text": self.condition_text, "value": self.value.to_dict() if self.value else None,
                "direction": self.direction, "text": self.text, "piecewise": self.piecewise}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RuleRow":
        cond, value = d.get("condition"), d.get("value")
        return cls(subject=str(d.get("subject", "")), condition=Bound.from_dict(cond) if cond else None,
                   condition_text=str(d.get("condition_text", "")),
                   value=Quantity(**value) if value else None, direction=str(d.get("direction", "eq")),
                   text=str(d.get("text", "")), piecewise=d.get("piecewise"))


@dataclass(frozen=True)
class QuestionReading:
    """What a question states and asks: its quantities (points or intervals, base units), whether it
    asks for a maximum (``"max"``) or a minimum (``"min"``), and the units it asks for.

    ``labels`` holds, for each quantity, the words right before it ("试用期3个月" -> "试用期"): a
    quantity labelled with a rule's subject states that subject's value, not the rule's condition.
    """

    quantities: tuple[Bound, ...]
    asked: str | None = None
    asked_units: frozenset[str] = frozenset()
    labels: tuple[str, ...] = ()

    def in_dim(self, dim: str) -> list[Bound]:
        return [b for b in self.quantities if b.dim == dim]

    def stated(self, dim: str, subject: str = "") -> list[Bound]:
        """The quantities in ``dim`` that are not labelled with ``subject`` (so may meet its condition)."""
        labels = self.labels or ("",) * len(self.quantities)
        return [b for b, label in zip(self.quantities, labels)
                if b.dim == dim and not (subject and label and subject in label)]


@dataclass
class Computation:
    """The result of applying a piecewise rule to one quantity, with the rows it used."""

    value: float
    unit: str
    rows: list[RuleRow]
    steps: list[str]


# --- the lexicon, compiled --------------------------------------------------------------------------
@dataclass(frozen=True)
class _Words:
    dims: dict[str, tuple[str, float]]
    prefix: dict[str, tuple[str, bool]]
    prefix_re: re.Pattern[str]
    postfix: dict[str, tuple[str, bool]]
    postfix_re: re.Pattern[str]
    question_point: frozenset[str]
    more_re: re.Pattern[str]
    calendar_day_re: re.Pattern[str]
    calendar_year: tuple[str, float]
    header_unit_split: re.Pattern[str]
    asked_max_re: re.Pattern[str]
    asked_min_re: re.Pattern[str]
    antecedent_end: tuple[str, ...]
    antecedent_start_re: re.Pattern[str]
    clause_break_re: re.Pattern[str]
    comma_re: re.Pattern[str]
    join_re: re.Pattern[str]
    range_to_re: re.Pattern[str]
    half_re: re.Pattern[str]
    half_not_after: str
    half_units: dict[str, str]
    ordinal_re: re.Pattern[str]
    article_re: re.Pattern[str]
    per_re: re.Pattern[str]
    per_full: frozenset[str]
    counts_as_re: re.Pattern[str]


def _alt(words: list[str]) -> str:
    """Longest-first alternation; English words only at word edges."""
    out = []
    for w in sorted({str(w) for w in words}, key=len, reverse=True):
        e = re.escape(w)
        if w[:1].isascii() and w[:1].isalpha():
            e = r"(?<![A-Za-z])" + e
        if w[-1:].isascii() and w[-1:].isalpha():
            e += r"(?![A-Za-z])"
        out.append(e)
    return "|".join(out)


def _sided(section: dict[str, list[str]]) -> dict[str, tuple[str, bool]]:
    """``{"low_closed": [...], ...}`` -> word (lower case) -> (side, closed)."""
    out: dict[str, tuple[str, bool]] = {}
    for key, words in section.items():
        side, closed = key.split("_")
        out.update({_norm(str(w)).lower(): (side, closed == "closed") for w in words})
    return out


_NUM = r"\d+(?:\.\d+)?|[零〇一二两三四五六七八九十百千]+"


@lru_cache(maxsize=1)
def _words() -> _Words:
    c = conditions()
    flags = re.IGNORECASE
    prefix, postfix = _sided(c["prefix"]), _sided(c["postfix"])
    units = _alt(list(c["half_units"]))
    half, cls = re.escape(c["half"]), re.escape(c["half_classifier"])
    half_re = (rf"(?P<n1>{_NUM})\s?(?P<u1>{units}){half}|(?P<n2>{_NUM})?\s?{cls}?{half}\s?(?P<u2>{units})"
               rf"|(?P<en>{_alt(c['half_en'])})\s+(?P<u3>{units})")
    return _Words(
        dims={str(u): (str(d), float(Fraction(str(f)))) for u, (d, f) in c["dimensions"].items()},
        prefix=prefix, prefix_re=re.compile(_alt(list(prefix)), flags),
        postfix=postfix, postfix_re=re.compile(rf"\s?(?:{_alt(list(postfix))})", flags),
        question_point=frozenset(_norm(str(w)).lower() for w in c["question_point"]),
        more_re=re.compile(rf"(?:{_alt(c['question_more'])})(?![{''.join(c['question_more_not_before'])}])",
                           flags),
        calendar_year=(str(c["calendar_year"]["unit"]), float(c["calendar_year"]["from"])),
        header_unit_split=re.compile(c["header_unit_split"]),
        calendar_day_re=re.compile(c["calendar_day"]),
        asked_max_re=re.compile(_alt(c["asked_max"]), flags),
        asked_min_re=re.compile(_alt(c["asked_min"]), flags),
        antecedent_end=tuple(c["antecedent_end"]),
        antecedent_start_re=re.compile(rf"\s*(?:{_alt(c['antecedent_start'])})", flags),
        clause_break_re=re.compile(c["clause_break"]),
        comma_re=re.compile(c["comma"]),
        range_to_re=re.compile(rf"\s*(?:{_alt(c['range_to'])})\s*", flags),
        join_re=re.compile(rf"\s*(?:{_alt(c['compound_join'])})?\s*", flags),
        half_re=re.compile(half_re, flags),
        half_not_after="".join(c["half_not_after"]),
        half_units={str(k).lower(): str(v) for k, v in c["half_units"].items()},
        ordinal_re=re.compile(rf"{re.escape(c['ordinal'])}\s?(?P<n>{_NUM})\s?(?P<u>{units})", flags),
        article_re=re.compile(rf"^{re.escape(c['ordinal'])}\s?(?:{_NUM})\s?\S\s*"),
        per_re=re.compile(_alt(c["per_full"] + c["per_plain"]), flags),
        per_full=frozenset(str(x).lower() for x in c["per_full"]),
        counts_as_re=re.compile(_alt(c["counts_as"]), flags),
    )


_PARENS = str.maketrans({"(": "（", ")": "）"})


def _norm(text: str) -> str:
    """Half-width parentheses as full-width ones (same length, so offsets hold)."""
    return text.translate(_PARENS)


def to_base(q: Quantity) -> tuple[str, float, float | None]:
    """(dimension, value, high) of a quantity in its dimension's base unit.

    >>> to_base(Quantity("2年", 2, "年")), to_base(Quantity("3-5天", 3, "天", high=6))
    (('duration_months', 24.0, None), ('duration_months', 0.1, 0.2))
    >>> to_base(Quantity("3人", 3, "人")), to_base(Quantity("200", 200, ""))
    (('count_people', 3.0, None), ('number', 200.0, None))
    """
    dim, f = _words().dims.get(q.unit, (q.unit or "number", 1.0))
    return dim, q.value * f, None if q.high is None else q.high * f


# --- quantities -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Q:
    """A quantity with where it stands, and a bound fixed by its form (第11年) if any."""

    q: Quantity
    fixed: Bound | None = None

    @property
    def start(self) -> int:
        return self.q.start

    @property
    def end(self) -> int:
        return self.q.end


def _number(s: str | None) -> float | None:
    if not s:
        return None
    s = s.strip()
    return float(s) if re.fullmatch(r"\d+(?:\.\d+)?", s) else parse_chinese_numeral(s)


def _halves(text: str) -> list[Quantity]:
    """Quantities written with 半: 半年 (0.5年), 一年半 (1.5年), 三个半月 (3.5月), half a year."""
    w, out = _words(), []
    for m in w.half_re.finditer(_norm(text)):
        lone = not (m.group("n1") or m.group("n2") or m.group("en"))
        if lone and m.start() and text[m.start() - 1] in w.half_not_after:
            continue                                     # 上半年: the first half of the year
        unit = w.half_units[(m.group("u1") or m.group("u2") or m.group("u3")).lower()]
        n = _number(m.group("n1") or m.group("n2")) or 0.0
        out.append(Quantity(text[m.start():m.end()], n + 0.5, unit, m.start(), m.end()))
    return out


def _ordinals(text: str) -> list[_Q]:
    """第N年 (the Nth year): more than N-1 full units and less than N, i.e. [N-1, N)."""
    w, out = _words(), []
    for m in w.ordinal_re.finditer(text):
        n = _number(m.group("n"))
        if n is None or n < 1:
            continue
        q = Quantity(m.group(0), n, w.half_units[m.group("u").lower()], m.start(), m.end())
        dim, v, _ = to_base(q)
        out.append(_Q(q, Bound(v - v / n, True, v, False, dim)))
    return out


def _replace_overlapping(qs: list[_Q], new: list[_Q]) -> list[_Q]:
    kept = [q for q in qs if not any(q.start < n.end and n.start < q.end for n in new)]
    return sorted(kept + new, key=lambda q: q.start)


def _compounds(text: str, qs: list[_Q]) -> list[_Q]:
    """一年零八个月 -> 20个月: adjacent durations of falling units joined by nothing or a join word."""
    w, out = _words(), []
    for q in qs:
        prev = out[-1] if out else None
        if prev is not None and prev.fixed is None and q.fixed is None and _joins(text, prev.q, q.q):
            total = prev.q.value * w.dims[prev.q.unit][1] / w.dims[q.q.unit][1] + q.q.value
            out[-1] = _Q(Quantity(text[prev.start:q.end], total, q.q.unit, prev.start, q.end))
        else:
            out.append(q)
    return out


def _joins(text: str, a: Quantity, b: Quantity) -> bool:
    dims = _words().dims
    if a.high is not None or b.high is not None or a.unit not in dims or b.unit not in dims:
        return False
    (da, fa), (db, fb) = dims[a.unit], dims[b.unit]
    return da == db and fa > fb and bool(_words().join_re.fullmatch(text, a.end, b.start))


def _calendar(q: Quantity) -> bool:
    """A date, a clock time or a calendar year ("2020年"): a point in time, not an amount."""
    unit, since = _words().calendar_year
    return q.unit in ("date", "time") or (q.unit == unit and q.high is None and q.value >= since)


def _quantities(text: str, question: bool) -> list[_Q]:
    """The quantities of ``text`` in order: numbers, 半 forms, 第N年 (questions), compounds."""
    w = _words()
    qs = [_Q(q) for q in extract_quantities(text, words=question) if not _calendar(q)]
    days = [m.span() for m in w.calendar_day_re.finditer(text)]
    qs = [q for q in qs if not any(q.start < e and s < q.end for s, e in days)]
    qs = _replace_overlapping(qs, [_Q(q) for q in _halves(text)])
    if question:
        qs = _replace_overlapping(qs, _ordinals(text))
    return _compounds(text, qs)


# --- comparison words -----------------------------------------------------------------------------
def _prefix_words(norm: str, lo: int, q: _Q) -> list[tuple[str, int]]:
    """The comparison words that end close before ``q`` (after ``lo``), in order: (word, its start).

    A one-character word must touch the number (满意 is not 满); longer Chinese words may stand a
    few characters off (不得低于正常工资的150%), English ones a few spaces and a currency sign.
    """
    found = []
    for m in _words().prefix_re.finditer(norm, lo, q.start):
        word = m.group(0)
        gap = norm[m.end():q.start]
        limit = 6 if word.isascii() else (0 if len(word) == 1 else 6 if len(word) == 2 else 10)
        if len(gap) <= limit and not re.search(r"[\d，,。；;:：]", gap):
            found.append((word.lower(), m.start()))
    return found


def _prefix_word(norm: str, lo: int, q: _Q) -> tuple[str, int] | None:
    """The comparison word nearest before ``q``: (word, its start)."""
    found = _prefix_words(norm, lo, q)
    return found[-1] if found else None


def _postfix_word(norm: str, q: _Q) -> str | None:
    m = _words().postfix_re.match(norm, q.end)
    return m.group(0).strip().lower() if m else None


def _bound(norm: str, lo: int, q: _Q, question: bool) -> tuple[Bound, str | None]:
    """The bound a quantity states and the side its comparison word limits ("low", "high", None)."""
    w = _words()
    dim, v, high = to_base(q.q)
    if q.fixed is not None:
        return q.fixed, None
    pre = _prefix_word(norm, lo, q)
    if high is not None:                                 # 超过5米至15米 = (5, 15]
        side, closed = w.prefix.get(pre[0], ("", True)) if pre else ("", True)
        return Bound(v, closed if side == "low" else True, high, True, dim), None
    if question and w.more_re.match(norm, q.end):
        return Bound(v, False, v + v / q.q.value if q.q.value else v, False, dim), None
    post = _postfix_word(norm, q)
    sided = w.prefix[pre[0]] if pre else w.postfix[post] if post else None
    if sided is None and _range_to(norm, lo, q):
        sided = ("high", True)                           # 5000元以上至20000元: the high end
    if sided is None:
        return Bound.point(v, dim), None
    side, closed = sided
    if side == "low":
        return Bound(v, closed, None, False, dim), side
    return Bound(None, False, v, closed, dim), side


def _range_to(norm: str, lo: int, q: _Q) -> bool:
    """Only a range word ("至", "to") stands between the previous quantity (and its postfix) and ``q``."""
    m = _words().postfix_re.match(norm, lo)
    gap_start = m.end() if m and lo else lo
    return bool(lo) and bool(_words().range_to_re.fullmatch(norm, gap_start, q.start))


def _merge(bounds: list[Bound]) -> list[Bound]:
    """A low-only bound followed by a high-only bound of the same dimension is one interval."""
    out: list[Bound] = []
    for b in bounds:
        p = out[-1] if out else None
        if (p is not None and p.high is None and p.low is not None and b.low is None and b.high is not None
                and p.dim == b.dim and p.low <= b.high):
            out[-1] = Bound(p.low, p.low_closed, b.high, b.high_closed, b.dim)
        else:
            out.append(b)
    return out


# --- parsing rules ---------------------------------------------------------------------------------
_FIELD_RE = re.compile(r"(?P<key>[^；;:：|\n]{1,24})[:：]\s*(?P<val>[^；;\n]*)")
_HEADER_UNIT_RE = re.compile(r"[（(]([^()（）]{1,10})[)）]")
_TRIM = " \t\r\n\u3000，,、：:。；;"


def parse_rules(sentence: str, subject: str = "") -> list[RuleRow]:
    """The rows of the rules a sentence states (one per value), with the condition each holds under.

    >>> rows = parse_rules("已满1年不满10年的，年休假5天；已满10年不满20年的，年休假10天；已满20年的，年休假15天")
    >>> [(r.subject, str(r.condition), r.value.text) for r in rows]     # doctest: +NORMALIZE_WHITESPACE
    [('年休假', '[12, 120) duration_months', '5天'), ('年休假', '[120, 240) duration_months', '10天'),
     ('年休假', '[240, inf) duration_months', '15天')]
    >>> [(r.subject, r.direction, r.value.text) for r in parse_rules("月工资不得低于2000元")]
    [('月工资', 'min', '2000元')]

    ``subject`` is used for rows whose clause names none (a table row, "不得超过二个月").
    """
    qs = _quantities(sentence, question=False)
    if _is_record(sentence):
        return _record_rows(sentence, qs, subject)
    segments = _segments(sentence, qs)
    rows, used = _piecewise(sentence, segments, qs, subject)
    last = subject
    for i, seg in enumerate(segments):
        if i in used:
            continue
        for row in _segment_rows(sentence, seg, qs, last):
            rows.append(row)
            last = row.subject or last
    rows.sort(key=lambda r: r.value.start if r.value else 0)
    return rows


def _split(text: str, start: int, end: int, sep: re.Pattern[str], qs: list[_Q]) -> list[tuple[int, int]]:
    """Spans of text[start:end] between ``sep`` matches that fall outside every quantity."""
    out, pos = [], start
    for m in sep.finditer(text, start, end):
        if not any(q.start <= m.start() < q.end for q in qs):
            out.append((pos, m.start()))
            pos = m.end()
    out.append((pos, end))
    return [(s, e) for s, e in out if text[s:e].strip(_TRIM)]


def _segments(text: str, qs: list[_Q]) -> list[tuple[int, int]]:
    return _split(text, 0, len(text), _words().clause_break_re, qs)


def _inside(qs: list[_Q], span: tuple[int, int]) -> list[_Q]:
    return [q for q in qs if span[0] <= q.start < span[1]]


def _is_antecedent(norm: str, span: tuple[int, int]) -> bool:
    w = _words()
    part = norm[span[0]:span[1]].strip(_TRIM)
    return part.endswith(w.antecedent_end) or bool(w.antecedent_start_re.match(part))


def _segment_rows(text: str, seg: tuple[int, int], qs: list[_Q], subject: str) -> list[RuleRow]:
    """Rows of one clause: the quantities of its condition parts bound the values of the others."""
    norm = _norm(text)
    parts = _split(text, seg[0], seg[1], _words().comma_re, qs)
    ante = [p for p in parts if _is_antecedent(norm, p) and _inside(qs, p)] or _bounded_lead(norm, parts, qs)
    cons = [p for p in parts if p not in ante]
    cond_qs = [q for p in ante for q in _inside(qs, p)]
    cond_text = "，".join(text[s:e].strip(_TRIM) for s, e in ante)
    rows = []
    for part in cons:
        values = _inside(qs, part)
        local_cond, local_text = cond_qs, cond_text
        if not ante:
            local_cond, values = _leading_conditions(norm, part, values)
            local_text = text[part[0]:_after(norm, local_cond[-1])] if local_cond else ""
        condition = _condition(norm, local_cond)
        for q in values:
            rows.append(_row(text, norm, part, q, condition, local_text.strip(_TRIM), subject,
                             text[seg[0]:seg[1]].strip(_TRIM), local_cond))
            subject = rows[-1].subject or subject
    return rows


def _bounded_lead(norm: str, parts: list[tuple[int, int]], qs: list[_Q]) -> list[tuple[int, int]]:
    """Comma parts that only bound quantities ("合同期限3年以上的固定期限合同和无固定期限合同") and
    are followed by a part stating a value: conditions, though no 的/时 ends them.

    >>> t = "合同期限3年以上的固定期限合同和无固定期限合同，试用期不超过6个月"
    >>> [(str(r.condition), r.value.text, r.direction) for r in parse_rules(t)]
    [('[36, inf) duration_months', '6个月', 'max')]
    """
    out = []
    for i, p in enumerate(parts[:-1]):
        inside = _inside(qs, p)
        if inside and all(_bound(norm, p[0], q, False)[1] for q in inside) and \
                any(_inside(qs, later) for later in parts[i + 1:]):
            out.append(p)
    return out


def _after(norm: str, q: _Q) -> int:
    m = _words().postfix_re.match(norm, q.end)
    return m.end() if m else q.end


def _leading_conditions(norm: str, part: tuple[int, int], qs: list[_Q]) -> tuple[list[_Q], list[_Q]]:
    """Without a condition part, bounded quantities before the last one are its condition when a
    condition ending follows them ("满1年不满10年的5天") or the last one has no comparison word of
    its own ("staff with at least 5 years of service get 15 days"); "不得低于…的80%或者不得低于…的80%"
    is two floors."""
    if len(qs) < 2:
        return [], qs
    lead, last = qs[:-1], qs[-1]
    if not all(q.q.high is not None or _bound(norm, part[0], q, False)[1] for q in lead):
        return [], qs
    ends = norm[_after(norm, lead[-1]):last.start].strip().startswith(_words().antecedent_end)
    if ends or _bound(norm, lead[-1].end, last, False)[1] is None:
        return lead, [last]
    return [], qs


def _condition(norm: str, cond_qs: list[_Q]) -> Bound | None:
    bounds, lo = [], 0
    for q in cond_qs:
        bounds.append(_bound(norm, lo, q, False)[0])
        lo = q.end
    merged = _merge(bounds)
    return merged[0] if merged else None


def _row(text: str, norm: str, part: tuple[int, int], q: _Q, condition: Bound | None, cond_text: str,
         subject: str, clause: str, cond_qs: list[_Q]) -> RuleRow:
    lo = max([part[0]] + [_after(norm, c) for c in cond_qs if c.end <= q.start])
    _, side = _bound(norm, lo, q, False)
    first = _words().prefix_re.search(norm, lo, q.start)      # the subject ends at any comparison word
    own = _subject_of(text, lo, first.start() if first else q.start)
    return RuleRow(subject=own or subject, condition=condition, condition_text=cond_text, value=q.q,
                   direction={"low": "min", "high": "max"}.get(side or "", "eq"), text=clause)


def _subject_of(text: str, start: int, stop: int) -> str:
    """What a value is about: the words before it, less opening condition words and linking words."""
    w = _words()
    s = w.article_re.sub("", text[start:stop].strip(_TRIM)).strip(_TRIM)     # 第四十七条
    m = w.antecedent_start_re.match(s)
    s = s[m.end():] if m else s
    m = w.counts_as_re.search(s, 2)
    s = s[:m.start()] if m else s            # 经济补偿按…年限 -> 经济补偿
    trims = [str(t) for t in conditions().get("subject_trim", [])]
    changed = True
    while changed:
        changed = False
        for t in sorted(trims, key=len, reverse=True):
            if s.endswith(t) and len(s) > len(t) or s == t:
                s, changed = s[:len(s) - len(t)].strip(_TRIM), True
    s = s.strip(_TRIM + "|()（）[]【】")
    return "" if re.search(r"\d", s) or len(s) > 20 or not re.search(r"[^\W\d_]", s) else s


# --- table rows ----------------------------------------------------------------------------------------
_CELL_RE = re.compile(r"[^|\n]+")


@dataclass(frozen=True)
class _Field:
    key: str                    # the column header ("" in a "| a | b |" row)
    start: int                  # where the value starts
    end: int
    text: str                   # the field as written


def _is_record(text: str) -> bool:
    """A table row as loaders write it: two or more ``key: value`` fields separated by ；/;, or a
    ``| a | b | c |`` row."""
    t = text.strip()
    if "\n" in t:
        return False
    if t.count("|") >= 3:
        return True
    pieces = [p.strip() for p in re.split(r"[；;]", t) if p.strip()]
    return len(pieces) >= 2 and all(_FIELD_RE.fullmatch(p) for p in pieces)


def _fields(text: str) -> list[_Field]:
    if text.count("|") >= 3:
        return [_Field("", m.start(), m.end(), m.group(0).strip()) for m in _CELL_RE.finditer(text)
                if m.group(0).strip()]
    return [_Field(m.group("key"), m.start("val"), m.end("val"), m.group(0).strip())
            for m in _FIELD_RE.finditer(text)]


def _record_rows(text: str, qs: list[_Q], subject: str) -> list[RuleRow]:
    """A band or threshold column is the condition of the row's other numeric columns."""
    norm = _norm(text)
    fields = [(f, [_with_header_unit(f.key, q) for q in _inside(qs, (f.start, f.end))]) for f in _fields(text)]
    cond = next(((f, fq) for f, fq in fields
                 if any(q.q.high is not None or _bound(norm, f.start, q, False)[1] for q in fq)), None)
    condition = _condition(norm, cond[1]) if cond else None
    rows = []
    for f, fqs in fields:
        if cond is not None and f is cond[0]:
            continue
        key = _HEADER_UNIT_RE.sub("", f.key).strip() or subject
        for q in fqs:
            _, side = _bound(norm, f.start, q, False)
            rows.append(RuleRow(key, condition, cond[0].text if cond else "", q.q,
                                {"low": "min", "high": "max"}.get(side or "", "eq"), text.strip(_TRIM)))
    return rows


def _with_header_unit(key: str, q: _Q) -> _Q:
    """A bare number under a header that names the unit takes it: "补贴(元/月): 200" -> 200元."""
    m = _HEADER_UNIT_RE.search(key)
    if q.q.unit or not m:
        return q
    unit = normalize_unit(_words().header_unit_split.split(m.group(1))[0])
    if unit not in _words().dims:
        return q
    return _Q(Quantity(q.q.text, q.q.value, unit, q.q.start, q.q.end, q.q.high), q.fixed)


# --- piecewise rules ---------------------------------------------------------------------------------
def _per_step(norm: str, seg: tuple[int, int], qs: list[_Q]) -> tuple[int, bool, _Q, _Q] | None:
    """(where the per word starts, whether it says "full", step, rate) of "每满一年计一个月"."""
    inside = _inside(qs, seg)
    for i, q in enumerate(inside[:-1]):
        found = [m for m in _words().per_re.finditer(norm, seg[0], q.start) if not norm[m.end():q.start].strip()]
        if found:
            return found[-1].start(), found[-1].group(0).lower() in _words().per_full, q, inside[i + 1]
    return None


def _piecewise(text: str, segments: list[tuple[int, int]], qs: list[_Q],
               subject: str) -> tuple[list[RuleRow], set[int]]:
    """The rows of a piecewise rule in the text (all sharing the rule), and the segments it took."""
    norm = _norm(text)
    for i, seg in enumerate(segments):
        found = _per_step(norm, seg, qs)
        if found is None:
            continue
        per_start, full, step_q, rate_q = found
        dim, step, _ = to_base(step_q.q)
        used, parts, rows = {i}, [], []
        for j in range(i + 1, len(segments)):
            rem = _remainder(text, segments[j], qs, dim, step, subject)
            if rem is None:
                break
            used.add(j)
            parts.append(rem[0])
            rows.append(rem[1])
        if not (full or parts):
            continue                                     # a frequency (每3年复审1次), not a piecewise rule
        per_text = text[seg[0]:seg[1]].strip(_TRIM)
        own = _subject_of(text, seg[0], per_start) or subject
        rule = {"text": text[seg[0]:segments[max(used)][1]].strip(_TRIM), "dim": dim, "step": step,
                "rate": rate_q.q.value, "unit": rate_q.q.unit,
                "parts": [{"role": "per", "text": per_text}] + parts}
        side = _bound(norm, step_q.end, rate_q, False)[1]
        per_row = RuleRow(own, None, text[per_start:step_q.end], rate_q.q,
                          {"low": "min", "high": "max"}.get(side or "", "eq"), per_text)
        for r in [per_row] + rows:
            r.subject = own
            r.piecewise = {"role": "per" if r is per_row else "remainder", "rule": rule}
        return [per_row] + rows, used
    return [], set()


def _remainder(text: str, seg: tuple[int, int], qs: list[_Q], dim: str, step: float,
               subject: str) -> tuple[dict[str, Any], RuleRow] | None:
    """A clause bounding what is left over after the full steps ("不满六个月的，计半个月")."""
    rows = _segment_rows(text, seg, qs, subject)
    if len(rows) != 1 or rows[0].condition is None or rows[0].value is None:
        return None
    row, cond = rows[0], rows[0].condition
    if cond.dim != dim or cond.high is None or cond.high > step + _EPS:
        return None
    counts = _counts_as(_norm(text), seg, row.value)
    part = {"role": "remainder", "text": row.text, "condition": cond.to_dict(),
            "counts_as": to_base(row.value)[1] if counts else None,
            "value": None if counts else row.value.value, "unit": row.value.unit}
    return part, row


def _counts_as(norm: str, seg: tuple[int, int], value: Quantity) -> bool:
    return any(len(norm[m.end():value.start].strip()) == 0
               for m in _words().counts_as_re.finditer(norm, seg[0], value.start))


def compute(rows: list[RuleRow], reading: QuestionReading) -> Computation | None:
    """Apply a piecewise rule among ``rows`` to the question's quantity (a point in the rule's dimension).

    >>> rule = parse_rules("每满一年计一个月；六个月以上不满一年的，按一年计算；不满六个月的，计半个月")
    >>> c = compute(rule, read_question("工作了一年零八个月，能拿几个月？"))
    >>> c.value, c.unit, [r.piecewise["role"] for r in c.rows]
    (2.0, '月', ['per', 'remainder'])
    >>> compute(rule, read_question("5年3个月")).value
    5.5
    """
    row = next((r for r in rows if r.piecewise), None)
    if row is None or row.piecewise is None:
        return None
    rule = row.piecewise["rule"]
    points = [b.low for b in reading.stated(rule["dim"], row.subject) if b.is_point and b.low is not None]
    if not points:
        return None
    x, step, rate = points[0], float(rule["step"]), float(rule["rate"])
    n = math.floor(x / step + _EPS)
    rest = x - n * step
    total = n * rate
    used = [_part_row(row, rule, rule["parts"][0])]
    steps = [f"{x:g} = {n} x {step:g} + {rest:g} ({rule['dim']})", f"{n} x {rate:g}{rule['unit']}"]
    for part in rule["parts"][1:]:
        if rest > _EPS and Bound.from_dict(part["condition"]).contains(rest):
            add = _remainder_value(part, rule)
            total += add
            used.append(_part_row(row, rule, part))
            steps.append(f"{rest:g} in {Bound.from_dict(part['condition'])}: + {add:g}{rule['unit']}")
            break
    return Computation(total, rule["unit"], used, steps)


def _remainder_value(part: dict[str, Any], rule: dict[str, Any]) -> float:
    if part.get("counts_as") is not None:
        return float(rule["rate"]) * float(part["counts_as"]) / float(rule["step"])
    dims = _words().dims
    f_part = dims.get(part["unit"], ("", 1.0))[1]
    f_rate = dims.get(rule["unit"], ("", 1.0))[1]
    return float(part["value"]) * f_part / f_rate


def _part_row(row: RuleRow, rule: dict[str, Any], part: dict[str, Any]) -> RuleRow:
    cond = part.get("condition")
    return RuleRow(row.subject, Bound.from_dict(cond) if cond else None, "", None, "eq", part["text"],
                   {"role": part["role"], "rule": rule})


# --- questions ----------------------------------------------------------------------------------------
def read_question(question: str) -> QuestionReading:
    """The quantities a question states (points or intervals), what it asks for, and its units.

    >>> r = read_question("工作了一年零八个月，经济补偿最多几个月？")
    >>> [str(b) for b in r.quantities], r.asked
    (['[20, 20] duration_months'], 'max')
    >>> [str(b) for b in read_question("合同期三个月以上不满一年，试用期最少多久").quantities]
    ['[3, 12) duration_months']
    >>> [str(b) for b in read_question("第11年有几天年假").quantities]
    ['[120, 132) duration_months']
    """
    norm = _norm(question)
    qs = _quantities(question, question=True)
    bounds, labels = _question_bounds(norm, qs)
    return QuestionReading(tuple(bounds), _asked(norm, qs), _asked_units(question), tuple(labels))


def _asked_units(question: str) -> frozenset[str]:
    return frozenset(u for p, us in lexicon().asked_units if p.search(question) for u in us)


def _question_bounds(norm: str, qs: list[_Q]) -> tuple[list[Bound], list[str]]:
    """Bounds as a rule reads them, merged ("满一年不满十年" = [12, 120)), a low bound left alone whose
    word only says where the asker is ("满15年") as a point; and the label of each."""
    bounds, points, labels, lo = [], [], [], 0
    for q in qs:
        bounds.append(_bound(norm, lo, q, True)[0])
        pre = _prefix_word(norm, lo, q)
        points.append(bool(pre and pre[0] in _words().question_point))
        labels.append(_label(norm, lo, pre[1] if pre else q.start))
        lo = q.end
    out: list[Bound] = []
    out_labels: list[str] = []
    i = 0
    while i < len(bounds):
        out_labels.append(labels[i])
        if i + 1 < len(bounds) and len(_merge(bounds[i:i + 2])) == 1:
            out.append(_merge(bounds[i:i + 2])[0])       # 满一年 + 不满十年
            i += 2
            continue
        b = bounds[i]
        out.append(Bound.point(b.low, b.dim) if points[i] and b.low is not None and b.high is None else b)
        i += 1
    return out, out_labels


def _label(norm: str, lo: int, stop: int) -> str:
    """The words right before a question's quantity, back to the previous one or a punctuation mark."""
    before = re.split(r"[，,。；;：:？?！!\s]", norm[lo:stop])[-1]
    return before[-8:]


def _asked(norm: str, qs: list[_Q]) -> str | None:
    """"max" or "min" when the question asks for one; a word that bounds a stated quantity does not ask."""
    w, hits = _words(), []
    for kind, rx in (("max", w.asked_max_re), ("min", w.asked_min_re)):
        for m in rx.finditer(norm):
            if not any(_prefix_word(norm, m.start(), q) and _prefix_word(norm, m.start(), q)[1] == m.start()
                       for q in qs if q.start >= m.end()):
                hits.append((m.start(), kind))
    return min(hits)[1] if hits else None


def dimension(unit: str) -> str:
    """The dimension a unit measures (天 and 月 are both durations, 元 money).

    >>> dimension("天") == dimension("月"), dimension("元") == dimension("月")
    (True, False)
    """
    return _words().dims.get(unit, (unit or "number", 1.0))[0]


def asking_part(question: str) -> str:
    """The part of a question that asks, without the comma parts that only set its condition
    (those ending like an antecedent: 的, 时, 者, 后).

    >>> asking_part("合同期限三个月以上不满一年的，试用期最多多长？")
    '试用期最多多长？'
    >>> asking_part("试用期最长多久？")
    '试用期最长多久？'
    """
    norm = _norm(question)
    w = _words()
    parts, start = [], 0
    for m in w.comma_re.finditer(norm):
        parts.append((start, m.start()))
        start = m.end()
    parts.append((start, len(norm)))
    keep = [question[a:b] for a, b in parts if not norm[a:b].strip(_TRIM).endswith(w.antecedent_end)]
    return "，".join(k for k in keep if k.strip()) or question


def quantity_spans(question: str) -> list[tuple[int, int]]:
    """Where a question states its quantities, each with the comparison word bound to it and the
    words that join a compound ("一年零八个月"): the parts that set a condition, not the topic, so
    word-overlap measures leave them out (刚满 is not a sibling of 不满).

    >>> q = "怀孕刚满4个月流产，产假几天？"
    >>> [q[a:b] for a, b in quantity_spans(q)]
    ['满4个月']
    >>> q = "在本院工作了一年零八个月，经济补偿按几个月算？"
    >>> [q[a:b] for a, b in quantity_spans(q)]
    ['一年零八个月']
    """
    norm = _norm(question)
    spans: list[tuple[int, int]] = []
    lo = 0
    for q in _quantities(question, question=True):
        pre = _prefix_word(norm, lo, q)
        start = pre[1] if pre else q.start
        post = _postfix_word(norm, q)
        end = q.end + len(post) if post and norm[q.end:q.end + len(post)].lower() == post else q.end
        if spans and start >= spans[-1][1] and not norm[spans[-1][1]:start].strip(
                "".join(_words_join()) + " "):
            spans[-1] = (spans[-1][0], end)            # 一年 + 零 + 八个月: one span
        else:
            spans.append((start, end))
        lo = q.end
    return spans


def _words_join() -> list[str]:
    return [w for w in conditions().get("compound_join", []) if len(w) == 1]


def select_rows(rows: list[RuleRow], reading: QuestionReading) -> list[RuleRow]:
    """The rows whose condition holds for the question's quantities (its whole interval, if one).

    >>> rows = parse_rules("已满1年不满10年的，年休假5天；已满10年不满20年的，年休假10天；已满20年的，年休假15天")
    >>> [r.value.text for r in select_rows(rows, read_question("工作满15年，年假几天？"))]
    ['10天']
    >>> [r.value.text for r in select_rows(rows, read_question("I have 10 years of service"))]
    ['10天']
    >>> select_rows(rows, read_question("年假几天？"))
    []

    Rows of a piecewise rule are left to :func:`compute`. Where two table bands share an edge
    ("1-3年", "3-5年") and the question sits on it, the band that starts there is kept.
    """
    out = []
    for r in rows:
        if r.condition is None or r.piecewise:
            continue
        if any(r.condition.covers(b) for b in reading.stated(r.condition.dim, r.subject)):
            out.append(r)
    return _band_edges(out, reading)


def _band_edges(rows: list[RuleRow], reading: QuestionReading) -> list[RuleRow]:
    def ends_at_point(r: RuleRow) -> bool:
        c = r.condition
        return c is not None and c.high is not None and any(
            b.is_point and abs(b.low - c.high) <= _EPS and any(  # type: ignore[operator]
                o.condition is not None and o.condition.low is not None and o.subject == r.subject
                and abs(o.condition.low - b.low) <= _EPS for o in rows if o is not r)  # type: ignore[operator]
            for b in reading.in_dim(c.dim))
    return [r for r in rows if not ends_at_point(r)]


def direction_conflict(reading: QuestionReading, rows: list[RuleRow]) -> bool:
    """True when the question asks for a maximum and the rows state only a floor (or the reverse).

    >>> rows = parse_rules("加班费不得低于工资的150%")
    >>> direction_conflict(read_question("加班费最高是多少？"), rows)
    True
    >>> direction_conflict(read_question("加班费最低是多少？"), rows), direction_conflict(read_question("加班费是多少？"), rows)
    (False, False)
    """
    if reading.asked not in ("max", "min"):
        return False
    dirs = {r.direction for r in rows if r.value is not None}
    opposite = "min" if reading.asked == "max" else "max"
    return opposite in dirs and reading.asked not in dirs and "eq" not in dirs


def rows_of_facts(facts: list[Fact]) -> list[RuleRow]:
    """The rule rows that facts carry (``Fact.rule``); a table-row fact gives one row per value column.

    >>> f = Fact("f0", "工龄: 1-3年；交通补贴(元/月): 200；通讯补贴(元/月): 100", "", [], [], "a.xlsx", "c0",
    ...          rule={"subject": "交通补贴", "condition": None, "value": None, "direction": "eq"})
    >>> [(r.subject, r.value.text) for r in rows_of_facts([f])]
    [('交通补贴', '200'), ('通讯补贴', '100')]
    """
    rows: list[RuleRow] = []
    for f in facts:
        if not f.rule:
            continue
        if _is_record(f.statement):
            rows += parse_rules(f.statement, f.subject)
        else:
            rows.append(RuleRow.from_dict(f.rule))
    return rows
