"""The metrics of an assistant evaluation, each a pure function over answers and records.

Text matching (numbers compared as quantities, so ``3000元`` matches ``3,000元`` and ``三千元``,
never ``13000元``), refusals, route accuracy and the confusion matrix, latency summaries, and the
numbers of the knowledge base an answer may state. :mod:`api.evaluation.assistant` runs the
questions and applies these.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter, defaultdict
from typing import Any, Iterable, Sequence

from knowledge.core.numeric import percentile
from knowledge.core.types import Quantity
from knowledge.numbers import extract_quantities, same_quantity
from router.llm.prompts import is_refusal, mentions_refusal

__all__ = [
    "KBNumbers", "ROUTES", "SYSTEMS", "answer_correct", "check_numbers", "confusion_matrix", "contains_alternative",
    "latency_by", "latency_summary", "looks_like_refusal", "normalize_text", "percentile", "quantity_contains",
    "refusal_scores", "route_accuracy", "share", "text_contains",
]

ROUTES = ("glossary", "fact", "rag", "refuse")
SYSTEMS = ("ours", "baseline")

# --- text matching ------------------------------------------------------------------------
_CITE_MARK = re.compile(r"[\[【]\s*\d{1,2}(?:\s*[,，、]\s*\d{1,2})*\s*[\]】]")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_LONE_DOT = re.compile(r"(?<!\d)\.|\.(?!\d)")
# Punctuation and spacing that never changes what an answer says. "-", "~", "/", "%" and
# decimal points stay: they are part of ranges, ratios and numbers.
_DROP = set(" \t\r\n\u3000，,。、；;：:！!？?“”\"'‘’「」『』（）()【】[]《》<>〈〉·…*`#_")


def normalize_text(text: str) -> str:
    """Fold width and case, drop citation markers, thousands separators and punctuation.

    >>> normalize_text("每晚 3,000 元[1]。")
    '每晚3000元'
    >>> normalize_text("Account Manager (AM).")
    'accountmanageram'
    """
    t = unicodedata.normalize("NFKC", text).casefold()
    t = _CITE_MARK.sub("", t)
    t = _THOUSANDS.sub("", t)
    t = _LONE_DOT.sub("", t)
    return "".join(ch for ch in t if ch not in _DROP and not ch.isspace())


def _digit_edge(ch: str) -> bool:
    return ch.isdigit() or ch == "."


def text_contains(text: str, alternative: str) -> bool:
    """``alternative`` occurs in ``text`` after :func:`normalize_text`, numbers as whole tokens.

    >>> text_contains("住宿标准为每晚500元[1]。", "500元")
    True
    >>> text_contains("住宿标准为每晚1500元。", "500元")
    False
    >>> text_contains("The limit is 3,000 yuan.", "3000 yuan")
    True
    """
    hay, needle = normalize_text(text), normalize_text(alternative)
    if not needle:
        return False
    start = hay.find(needle)
    while start >= 0:
        end = start + len(needle)
        left_ok = not (needle[0].isdigit() and start > 0 and _digit_edge(hay[start - 1]))
        right_ok = not (needle[-1].isdigit() and end < len(hay) and _digit_edge(hay[end]))
        if left_ok and right_ok:
            return True
        start = hay.find(needle, start + 1)
    return False


def quantity_contains(text: str, alternative: str) -> bool:
    """Every quantity of ``alternative`` is stated in ``text`` and its other words occur too.

    This is how ``三千元`` and ``3,000元`` answer an expected ``3000元``.

    >>> quantity_contains("报销上限为三千元。", "3000元")
    True
    >>> quantity_contains("报销上限为每晚三千元。", "每晚3000元")
    True
    >>> quantity_contains("报销上限为一万三千元。", "3000元")
    False
    >>> quantity_contains("任何文字", "经理")
    False
    """
    wanted = extract_quantities(alternative)
    if not wanted:
        return False
    found = extract_quantities(text)
    if not all(any(same_quantity(w, f) for f in found) for w in wanted):
        return False
    hay = normalize_text(text)
    pieces, pos = [], 0
    for q in sorted(wanted, key=lambda q: q.start):
        pieces.append(alternative[pos:q.start])
        pos = max(pos, q.end)
    pieces.append(alternative[pos:])
    return all(normalize_text(p) in hay for p in pieces)


def contains_alternative(text: str, alternatives: Iterable[str]) -> bool:
    """One of ``alternatives`` occurs in ``text`` (as text, or as the same quantities).

    >>> contains_alternative("差旅补贴每天三百元", ["300元", "三百块"])
    True
    """
    return any(text_contains(text, a) or quantity_contains(text, a) for a in alternatives if a)


def answer_correct(answer: str, expected_groups: Sequence[Sequence[str]]) -> bool | None:
    """Every expected group has one alternative in the answer; ``None`` when nothing is expected.

    >>> answer_correct("AM指客户经理（Account Manager），住宿每晚3,000元。", [["客户经理"], ["3000元", "三千元"]])
    True
    >>> answer_correct("AM指客户经理。", [["客户经理"], ["3000元"]])
    False
    >>> answer_correct("anything", []) is None
    True
    """
    groups = [g for g in expected_groups if g]
    if not groups:
        return None
    return all(contains_alternative(answer, g) for g in groups)


def looks_like_refusal(answer: str, route: str = "") -> bool:
    """The system declined: the refuse route, the fixed refusal sentence, or a refusal phrase.

    Phrases count only in short answers, so an answer that states the fact and then adds
    "other details are not mentioned" is not a refusal.

    >>> looks_like_refusal("知识库中没有找到该问题的答案。")
    True
    >>> looks_like_refusal("根据提供的资料，没有提到年假天数。")
    True
    >>> looks_like_refusal("住宿每晚500元[1]。", route="rag")
    False
    >>> looks_like_refusal("", route="refuse")
    True
    """
    if route == "refuse" or is_refusal(answer):
        return True
    return len(normalize_text(answer)) <= 80 and mentions_refusal(answer)


# --- aggregate metrics --------------------------------------------------------------------
def confusion_matrix(pairs: Iterable[tuple[str, str]], labels: Sequence[str] = ROUTES) -> dict[str, dict[str, int]]:
    """Rows = expected route, columns = route taken; labels outside ``labels`` are appended.

    >>> m = confusion_matrix([("fact", "fact"), ("fact", "rag"), ("refuse", "refuse")], ["fact", "rag", "refuse"])
    >>> m["fact"]
    {'fact': 1, 'rag': 1, 'refuse': 0}
    """
    pairs = list(pairs)
    extra = sorted({x for p in pairs for x in p} - set(labels))
    names = [*labels, *extra]
    matrix = {e: {g: 0 for g in names} for e in names}
    for expected, got in pairs:
        matrix[expected][got] += 1
    return matrix


def route_accuracy(pairs: Iterable[tuple[str, str]]) -> float | None:
    """Share of (expected, got) pairs that agree; ``None`` when there are none.

    >>> route_accuracy([("fact", "fact"), ("rag", "refuse"), ("rag", "rag"), ("glossary", "glossary")])
    0.75
    """
    pairs = list(pairs)
    return round(sum(e == g for e, g in pairs) / len(pairs), 4) if pairs else None


def refusal_scores(pairs: Iterable[tuple[bool, bool]]) -> dict[str, Any]:
    """Precision and recall of refusing, from (should refuse, did refuse) pairs.

    >>> refusal_scores([(True, True), (True, False), (False, True), (False, False), (False, False)])
    {'precision': 0.5, 'recall': 0.5, 'tp': 1, 'fp': 1, 'fn': 1, 'tn': 2}
    """
    c = Counter((bool(s), bool(d)) for s, d in pairs)
    tp, fp, fn, tn = c[(True, True)], c[(False, True)], c[(True, False)], c[(False, False)]
    return {"precision": _ratio(tp, tp + fp), "recall": _ratio(tp, tp + fn), "tp": tp, "fp": fp, "fn": fn, "tn": tn}


def share(flags: Iterable[bool | None]) -> float | None:
    """Share of True among the non-None flags.

    >>> share([True, False, None, True])
    0.6667
    >>> share([None]) is None
    True
    """
    known = [f for f in flags if f is not None]
    return _ratio(sum(bool(f) for f in known), len(known))


def latency_summary(values: Sequence[float]) -> dict[str, Any]:
    """Count, p50, p95 and max of a list of milliseconds.

    >>> latency_summary([100, 200, 300])
    {'n': 3, 'p50': 200.0, 'p95': 290.0, 'max': 300.0}
    """
    return {"n": len(values), "p50": percentile(values, 50), "p95": percentile(values, 95),
            "max": round(float(max(values)), 1) if values else None}


def latency_by(records: Iterable[dict[str, Any]], key: str) -> dict[str, dict[str, Any]]:
    """:func:`latency_summary` of ``latency_ms`` grouped by ``record[key]``, plus ``all``.

    >>> latency_by([{"route": "fact", "latency_ms": 10}, {"route": "rag", "latency_ms": 30}], "route")["all"]["p50"]
    20.0
    """
    groups: dict[str, list[float]] = defaultdict(list)
    every: list[float] = []
    for r in records:
        if r.get("latency_ms") is None:
            continue
        groups[str(r.get(key) or "?")].append(float(r["latency_ms"]))
        every.append(float(r["latency_ms"]))
    out = {k: latency_summary(v) for k, v in sorted(groups.items())}
    out["all"] = latency_summary(every)
    return out


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 4) if b else None


# --- numbers of the knowledge base --------------------------------------------------------
class KBNumbers:
    """Every quantity stated anywhere in the knowledge base, extracted once.

    Lookup is by value, units compatible as in :func:`knowledge.numbers.same_quantity`
    (equal, or one side bare); both ends of a stated range count as stated.

    A bare number in an answer is also found when the same digits stand anywhere in the
    text, e.g. as a section number ("6.2 研发中心...") that is no quantity at the start of a line.

    >>> kb = KBNumbers(["住宿每晚500元，会议3-5天。", "6.2 研发中心采用Scrum。"])
    >>> [kb.contains(v, u) for v, u in ((500, "元"), (500, ""), (500, "%"), (5, "天"), (50, "元"))]
    [True, True, False, True, False]
    >>> kb.contains(6.2, ""), kb.contains(6.2, "元")
    (True, False)
    """

    def __init__(self, texts: Iterable[str]):
        self.units: dict[float, set[str]] = defaultdict(set)
        self.bare: set[float] = set()
        for text in texts:
            self.bare.update(_key(float(t.replace(",", ""))) for t in _DIGITS.findall(text))
            for q in extract_quantities(text, words=True):
                self.units[_key(q.value)].add(q.unit)
                if q.high is not None:
                    self.units[_key(q.high)].add(q.unit)

    @classmethod
    def from_index(cls, index: Any) -> "KBNumbers":
        """Chunks, facts and every glossary meaning of a loaded :class:`KnowledgeIndex`."""
        texts = [c.text for c in getattr(index, "chunks", [])]
        texts += [f.statement for f in getattr(index, "facts", [])]
        for entry in getattr(index, "glossary", None) or []:
            texts += [f"{entry.term} {m.english} {m.chinese}" for m in entry.meanings]
        return cls(texts)

    def contains(self, value: float, unit: str) -> bool:
        if not unit and _key(value) in self.bare:
            return True
        units = self.units.get(_key(value))
        if not units:
            return False
        return not unit or unit in units or "" in units

    def __len__(self) -> int:
        return len(self.units)


_DIGITS = re.compile(r"\d+(?:,\d{3})*(?:\.\d+)?")


def _key(value: float) -> float:
    # Float keys: round away representation noise (1e-9 relative, as same_quantity does).
    return float(f"{float(value):.9g}")


def check_numbers(answer: str, question: str, passages: list[tuple[str, str]], kb: KBNumbers,
                  verifier: Any) -> list[dict[str, Any]]:
    """Each number of the answer with ``supported`` and where its support was found.

    ``where``: "passages" (the verifier found it in, or derived it from, the cited passages),
    "kb" (stated somewhere in the knowledge base), "question" (the user gave it) or None.
    """
    if not answer.strip():
        return []
    checks = verifier.check(answer, passages, question).numbers
    asked = extract_quantities(question) if question else []
    out = []
    for n in checks:
        value, unit = float(n.value), n.unit or ""
        if n.supported:
            where = "passages"
        elif kb.contains(value, unit):
            where = "kb"
        elif any(same_quantity(_quantity(value, unit), q) for q in asked):
            where = "question"
        else:
            where = None
        out.append({"text": n.text, "value": n.value, "unit": unit, "supported": where is not None,
                    "where": where})
    return out


def _quantity(value: float, unit: str) -> Any:
    return Quantity(text="", value=value, unit=unit)


