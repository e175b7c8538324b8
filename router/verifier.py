"""Check that every number in a generated answer comes from the passages it was given.

A number in the answer is *supported* when

1. the same quantity appears in a passage (``3万元`` = ``30,000 元`` = ``三万元``; ``30%`` = ``百分之三十``;
   a range's ends count: ``3-5天`` supports ``5天``; English number words in passages count:
   "seven touchdowns" supports "7"); or
2. it is a date whose stated parts a passage date states too (``June 2020`` is supported by
   ``June 11, 2020``, not the other way round; a passage's ``October 19`` supports
   ``October 19, 2021`` only when 2021 also appears in that passage); or a year that appears
   in a passage, alone or inside a date; or
3. it follows by one step of arithmetic from passage numbers:

   * numbers the answer itself mentions (and that are supported) may be added, subtracted,
     multiplied or divided with each other or with any passage number ("机票1200元加住宿600元，
     共1800元"; "600元 is 20% of 3000元");
   * the answer's amounts of one unit added up, alone or times a count ("伙食补助100元、交通补助
     60元，3天合计480元");
   * within one passage, without the answer naming the operands, only the two derivations that
     policy answers make all the time, on amounts of money, landing within 0.5% of the answer's
     number: a percentage uplift/discount/share (600元 and 30% give 780元, 420元 or 180元) and
     rate times count (200元/天 and 3天 give 600元). Sums and
     differences of arbitrary passage numbers are *not* accepted unanchored: with a handful of
     numbers in a passage almost any small value is some difference, and "二线城市150元" (600 - 450)
     is exactly the mix-up this check exists to catch.

   A derived value matches when it rounds to the answer's number at the precision the answer
   wrote it (780 for "780元", 33.3 for "33.3%"). An answer number preceded by 约/大约/about/around/
   approximately may round a passage number the same way (within 10%); without such a word a
   rounding within 1% is accepted ("$6.04 billion" for "$6,036 million").

Numbers that appear only in the question are not evidence: repeating "出差5天" from the question
does not make "5天" a fact of the knowledge base. Citation markers ``[1]`` and list ordinals are not
numbers (see :mod:`knowledge.numbers`).

Status: ``not_applicable`` when the answer states no number, ``verified`` when every number is
supported, ``flagged`` otherwise (the router may regenerate and then report ``corrected``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from knowledge.core.errors import ValidationError
from knowledge.numbers import extract_quantities, same_quantity, units_compatible
from knowledge.core.types import Quantity

__all__ = ["NumberCheck", "Verification", "Verifier", "unsupported_text", "verify_batch", "verify_file"]

STATUSES = ("verified", "flagged", "not_applicable", "corrected")

# units that count things: multiplying a rate by one of them keeps the rate's unit (200元 × 3天 = 600元)
_COUNT_UNITS = {"天", "工作日", "晚", "人", "人次", "次", "月", "年", "周", "小时", "分钟", "个", "份", "张",
                "件", "台", "套", "家", "条", "项", "篇", "本", "间", "公里", "公斤", "平方米", "mile", "页", "种",
                "倍"}
_MONEY_UNITS = {"元", "USD", "EUR", "GBP", "JPY", "HKD"}
_APPROX_RE = re.compile(r"(?:约|大约|大概|近|将近|接近|approximately|approx\.|about|around|roughly|nearly|almost|~)\s*$",
                        re.IGNORECASE)
_MAX_OPERANDS = 40      # per passage: bounds the pair search on number-heavy passages (tables)


# --- records ------------------------------------------------------------------------------------
@dataclass
class NumberCheck:
    """One number of the answer and whether the passages support it.

    ``evidence`` is the id of the passage that supports it (for derived numbers, the passage of the
    derivation); ``detail`` says how: the derivation ("600元 × (1 + 30%)") or, for an unsupported
    number, "only in the question" when the question is where it came from.
    """

    text: str
    value: float
    unit: str
    supported: bool
    evidence: str | None = None
    detail: str | None = None
    high: float | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"text": self.text, "value": _num(self.value), "unit": self.unit,
                             "supported": self.supported, "evidence": self.evidence}
        if self.high is not None:
            d["high"] = _num(self.high)
        if self.detail:
            d["detail"] = self.detail
        return d


@dataclass
class Verification:
    status: str                                   # verified | flagged | not_applicable | corrected
    numbers: list[NumberCheck] = field(default_factory=list)

    @property
    def unsupported(self) -> list[NumberCheck]:
        return [n for n in self.numbers if not n.supported]

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "numbers": [n.to_dict() for n in self.numbers]}


def _num(v: float) -> float | int:
    return int(v) if float(v).is_integer() and abs(v) < 2**53 else v


# --- evidence ---------------------------------------------------------------------------------------
@dataclass
class _Passage:
    pid: str
    quantities: list[Quantity]          # direct evidence, range ends included
    operands: list[Quantity]            # arithmetic operands (no dates, no times)
    dates: list[tuple[int, int, int]]   # (year, month, day), 0 = not stated
    years: set[int]


def _passage(pid: str, text: str) -> _Passage:
    found = extract_quantities(text, words=True)
    quantities: list[Quantity] = []
    for q in found:
        quantities.append(q)
        if q.high is not None:   # a range's ends are evidence on their own (3-5天 -> 3天, 5天)
            quantities += [Quantity(q.text, q.value, q.unit, q.start, q.end),
                           Quantity(q.text, q.high, q.unit, q.start, q.end)]
    dates = [_date_parts(q.value) for q in found if q.unit == "date"]
    years = {y for y, _, _ in dates if y} | {int(q.value) for q in quantities if _is_year(q)}
    operands = [q for q in quantities if q.unit not in ("date", "time") and q.high is None]
    return _Passage(pid, quantities, operands[:_MAX_OPERANDS], dates, years)


def _date_parts(value: float) -> tuple[int, int, int]:
    y, md = divmod(int(value), 10000)
    m, d = divmod(md, 100)
    return y, m, d


def _is_year(q: Quantity) -> bool:
    return q.unit in ("", "年") and q.high is None and q.value.is_integer() and 1000 <= q.value <= 2999


def _normalise_passages(passages: Sequence[Any]) -> list[tuple[str, str]]:
    """Passages as (id, text); plain strings get ids "1", "2", ... matching citation markers [n]."""
    out = []
    for i, p in enumerate(passages, 1):
        if isinstance(p, str):
            out.append((str(i), p))
        elif isinstance(p, dict) and isinstance(p.get("text"), str):
            out.append((str(p.get("id", i)), p["text"]))
        elif isinstance(p, (tuple, list)) and len(p) == 2 and isinstance(p[1], str):
            out.append((str(p[0]), p[1]))
        else:
            raise ValidationError(f"passage {i} must be a string, an (id, text) pair or "
                                  f"{{'id', 'text'}}, got {p!r:.80}")
    return out


# --- support rules -------------------------------------------------------------------------------------
def _direct(q: Quantity, passages: list[_Passage]) -> str | None:
    for p in passages:
        if any(same_quantity(q, e) for e in p.quantities):
            return p.pid
    return None


def _date_support(q: Quantity, passages: list[_Passage]) -> str | None:
    y, m, d = _date_parts(q.value)
    for p in passages:
        for ey, em, ed in p.dates:
            if m != em or (d and d != ed):
                continue
            if not y or y == ey or (not ey and y in p.years):
                return p.pid
    return None


def _year_support(q: Quantity, passages: list[_Passage]) -> str | None:
    if not _is_year(q):
        return None
    return next((p.pid for p in passages if int(q.value) in p.years), None)


def _tolerance(q: Quantity) -> float:
    """Half a unit in the last place the answer wrote: "780元" 0.5, "33.3%" 0.05, "$1.39 billion" 5e6."""
    m = re.search(r"\d+(?:,\d{3})*(?:\.(\d+))?", q.text)
    if not m:
        return 0.5
    core = float(m.group(0).replace(",", ""))
    scale = q.value / core if core else 1.0
    decimals = len(m.group(1) or "")
    return max(0.5 * 10 ** -decimals * abs(scale), 1e-9 * abs(q.value))


def _rounded(q: Quantity, answer: str, passages: list[_Passage]) -> str | None:
    """A passage number that rounds to q at the precision q is written with.

    Within 1% without a hedge ("$6.04 billion" for $6,036 million, "780元" for 780.30元); with
    约/about/approximately before it, within 10% ("约1.5万元" for 14,800元).
    """
    if q.high is not None or _is_year(q):
        return None
    hedged = bool(_APPROX_RE.search(answer[max(0, q.start - 14):q.start])
                  or answer.startswith("左右", q.end))
    limit = (0.10 if hedged else 0.01) * abs(q.value)
    tol = min(_tolerance(q), limit)
    for p in passages:
        if any(units_compatible(q.unit, e.unit) and abs(e.value - q.value) <= tol for e in p.operands):
            return p.pid
    return None


def _fmt(q: Quantity) -> str:
    return q.text.strip()


def _pair_results(a: Quantity, b: Quantity, named: int) -> Iterator[tuple[float, str, str]]:
    """(value, unit, how) for one step of arithmetic on a and b.

    ``named`` counts the operands the answer itself mentions (0, 1 or 2). With none, only a
    percentage of an amount and rate × count; sums, differences and ratios need at least one and
    units that agree (a bare passage number is too common to add to an amount), and both when the
    numbers are bare; multiplying by a bare number needs both named too.
    """
    if not named and a.unit not in _MONEY_UNITS:
        return                   # unnamed: only amounts of money (600元 × (1 + 30%), 200元 × 3天)
    if b.unit == "%" and a.unit != "%":
        p = b.value / 100
        yield a.value * (1 + p), a.unit, f"{_fmt(a)} × (1 + {_fmt(b)})"
        yield a.value * (1 - p), a.unit, f"{_fmt(a)} × (1 − {_fmt(b)})"
        yield a.value * p, a.unit, f"{_fmt(a)} × {_fmt(b)}"
    if a.unit and b.unit != a.unit and b.unit in _COUNT_UNITS and a.unit not in _COUNT_UNITS | {"%"}:
        yield a.value * b.value, a.unit, f"{_fmt(a)} × {_fmt(b)}"
    if not named:
        return
    if a.unit == b.unit and (a.unit or named == 2):       # bare numbers: both must be named
        yield a.value + b.value, a.unit, f"{_fmt(a)} + {_fmt(b)}"
        yield a.value - b.value, a.unit, f"{_fmt(a)} − {_fmt(b)}"
        if b.value:
            yield a.value / b.value, "", f"{_fmt(a)} ÷ {_fmt(b)}"
            yield a.value / b.value * 100, "%", f"{_fmt(a)} ÷ {_fmt(b)}"
            yield (a.value - b.value) / b.value * 100, "%", f"({_fmt(a)} − {_fmt(b)}) ÷ {_fmt(b)}"
    if b.value and b.unit in _COUNT_UNITS and a.unit not in _COUNT_UNITS | {"%"}:
        yield a.value / b.value, a.unit, f"{_fmt(a)} ÷ {_fmt(b)}"
    if named == 2 and (not a.unit or not b.unit):
        yield a.value * b.value, a.unit or b.unit, f"{_fmt(a)} × {_fmt(b)}"
        if b.value and not b.unit:
            yield a.value / b.value, a.unit, f"{_fmt(a)} ÷ {_fmt(b)}"


def _summed(q: Quantity, tol: float, anchors: list[tuple[str, Quantity]],
            operands: list[tuple[str, Quantity]]) -> tuple[str, str] | None:
    """The answer's amounts of q's unit added up, alone or times a count.

    "伙食补助100元、交通补助60元，3天合计480元" is (100元 + 60元) × 3天; "1200元+600元+300元=2100元".
    """
    same = [(pid, a) for pid, a in anchors if q.unit and a.unit == q.unit]
    if len(same) < 2:
        return None
    total = sum(a.value for _, a in same)
    terms = " + ".join(_fmt(a) for _, a in same)
    if len(same) >= 3 and abs(total - q.value) <= tol:
        return same[0][0], terms
    for pid, c in operands:
        if c.unit in _COUNT_UNITS and c.unit != q.unit and abs(total * c.value - q.value) <= tol:
            return pid, f"({terms}) × {_fmt(c)}"
    return None


def _derived(q: Quantity, anchors: list[tuple[str, Quantity]],
             passages: list[_Passage]) -> tuple[str, str] | None:
    """(passage id, derivation) when q follows by one arithmetic step; see the module docstring.

    ``anchors`` are the answer's other supported numbers with the id of the passage behind each.
    """
    if q.high is not None or q.unit in ("date", "time"):
        return None
    tol = _tolerance(q)
    # unnamed operands must land on the answer's number almost exactly: a coarse "4万亿" would
    # otherwise match any product within half a trillion
    strict = max(min(tol, 0.005 * abs(q.value)), 1e-9 * abs(q.value))

    def hit(a: Quantity, b: Quantity, named: int) -> str | None:
        if same_quantity(a, b):
            return None          # a number with itself gives only 0, 1, 2x: never evidence
        for value, unit, how in _pair_results(a, b, named):
            if abs(value - q.value) > (tol if named else strict):
                continue
            if units_compatible(unit, q.unit) if named else (unit == q.unit and unit):
                return how
        return None

    anchor_ids = {id(x) for _, x in anchors}
    operands = anchors + [(p.pid, e) for p in passages for e in p.operands]
    for (pid, a), (_, b) in product(operands, anchors):
        named = 1 + (id(a) in anchor_ids)
        how = a is not b and (hit(a, b, named) or hit(b, a, named))
        if how:
            return pid, how
    found = _summed(q, tol, anchors, operands)
    if found:
        return found
    for p in passages:
        for a, b in product(p.operands, p.operands):
            how = a is not b and hit(a, b, 0)
            if how:
                return p.pid, how
    return None


# --- the verifier ------------------------------------------------------------------------------------
class Verifier:
    """Checks the numbers of an answer against the passages it was generated from.

    >>> v = Verifier().check("标准为600元，旺季上浮30%，即780元[1]。", ["住宿标准每晚600元，旺季可上浮30%。"])
    >>> v.status, [(n.text, n.supported) for n in v.numbers]
    ('verified', [('600元', True), ('30%', True), ('780元', True)])
    >>> Verifier().check("上限为170元。", ["上限为70元。"]).status
    'flagged'
    """

    def __init__(self, derive: bool = True):
        self.derive = derive

    def check(self, answer: str, passages: Sequence[str] | Sequence[tuple[str, str]],
              question: str = "") -> Verification:
        claims = extract_quantities(answer)
        if not claims:
            return Verification("not_applicable", [])
        evidence = [_passage(pid, text) for pid, text in _normalise_passages(passages)]
        checks = [self._check_one(q, answer, evidence) for q in claims]
        anchors = [(c.evidence or "", q) for q, c in zip(claims, checks)
                   if c.supported and q.unit not in ("date", "time") and q.high is None]
        if self.derive:
            for q, c in zip(claims, checks):
                if not c.supported:
                    found = _derived(q, anchors, evidence)
                    if found:
                        c.supported, c.evidence, c.detail = True, found[0], found[1]
        asked = extract_quantities(question) if question else []
        for q, c in zip(claims, checks):
            if not c.supported and any(same_quantity(q, x) for x in asked):
                c.detail = "only in the question"
        status = "verified" if all(c.supported for c in checks) else "flagged"
        return Verification(status, checks)

    def _check_one(self, q: Quantity, answer: str, evidence: list[_Passage]) -> NumberCheck:
        if q.unit == "date":
            pid = _date_support(q, evidence)
        else:
            pid = _direct(q, evidence) or _year_support(q, evidence)
        detail = None
        if pid is None and q.unit not in ("date", "time"):
            pid = _rounded(q, answer, evidence)
            detail = "rounded" if pid else None
        return NumberCheck(q.text, q.value, q.unit, pid is not None, pid, detail, q.high)


def unsupported_text(verification: Verification, lang: str = "zh") -> str:
    """Feedback for regeneration naming the numbers the passages do not support ("" when none).

    >>> v = Verifier().check("每晚780元，共5天。", ["住宿标准每晚600元。"], question="出差5天住宿多少钱？")
    >>> print(unsupported_text(v))
    以下数字在资料中找不到依据：780元；5天（只出现在问题中）。请只使用资料中的数字，或说明资料中没有相关数字。
    """
    bad = verification.unsupported
    if not bad:
        return ""
    q_note = "（只出现在问题中）" if lang == "zh" else " (only in the question)"
    items = [n.text + (q_note if n.detail == "only in the question" else "") for n in bad]
    if lang == "zh":
        return f"以下数字在资料中找不到依据：{'；'.join(items)}。请只使用资料中的数字，或说明资料中没有相关数字。"
    return (f"These numbers are not supported by the passages: {'; '.join(items)}. "
            "Use only numbers stated in the passages, or say that the passages do not give them.")


# --- batch ---------------------------------------------------------------------------------------------
def _batch_record(item: Any, verifier: Verifier) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise ValidationError(f"expected a JSON object, got {type(item).__name__}")
    missing = [k for k in ("id", "answer", "passages") if k not in item]
    if missing:
        raise ValidationError(f"missing field(s): {', '.join(missing)}")
    if not isinstance(item["answer"], str):
        raise ValidationError(f"answer must be a string, got {type(item['answer']).__name__}")
    if not isinstance(item["passages"], list):
        raise ValidationError(f"passages must be a list, got {type(item['passages']).__name__}")
    question = item.get("question", "")
    if not isinstance(question, str):
        raise ValidationError(f"question must be a string, got {type(question).__name__}")
    v = verifier.check(item["answer"], _normalise_passages(item["passages"]), question)
    return {"id": item["id"], "status": v.status,
            "numbers": [{"text": n.text, "value": _num(n.value), "unit": n.unit, "supported": n.supported}
                        for n in v.numbers]}


def verify_batch(items: Iterable[dict[str, Any] | str], verifier: Verifier | None = None) -> Iterator[dict]:
    """One output record per input item, in order; a bad item gives an error record, never an exception.

    Items are dicts or raw JSONL lines ``{"id", "answer", "passages": [...], "question"?}``; output is
    ``{"id", "status", "numbers": [{"text", "value", "unit", "supported"}]}`` or, for a bad item,
    ``{"id", "line", "status": "error", "error": "...", "numbers": []}``.

    >>> out = list(verify_batch([{"id": "a", "answer": "共600元", "passages": ["合计600元"]}, '{"id": "b"}']))
    >>> [(r["id"], r["status"]) for r in out]
    [('a', 'verified'), ('b', 'error')]
    >>> out[1]["error"]
    'line 2: missing field(s): answer, passages'
    """
    verifier = verifier or Verifier()
    for n, item in enumerate(items, 1):
        if isinstance(item, str) and not item.strip():
            continue                                     # blank JSONL line
        rid = item.get("id") if isinstance(item, dict) else None
        try:
            if isinstance(item, str):
                try:
                    item = json.loads(item)
                except json.JSONDecodeError as e:
                    raise ValidationError(f"invalid JSON: {e.msg} at column {e.colno}") from None
                rid = item.get("id") if isinstance(item, dict) else None
            yield _batch_record(item, verifier)
        except ValidationError as e:
            yield {"id": rid, "line": n, "status": "error", "error": f"line {n}: {e}", "numbers": []}


def verify_file(in_path: Path, out_path: Path, verifier: Verifier | None = None) -> dict[str, int]:
    """Run :func:`verify_batch` over a JSONL file; returns counts by status (including "error")."""
    counts: dict[str, int] = {}
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with open(in_path, encoding="utf-8") as src, open(out_path, "w", encoding="utf-8") as dst:
        for rec in verify_batch(src, verifier):
            counts[rec["status"]] = counts.get(rec["status"], 0) + 1
            dst.write(json.dumps(rec, ensure_ascii=False) + "\n")
    return counts
