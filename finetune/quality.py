"""Quality filters for generated training pairs, each a pure function with a counted name.

A pair is ``{"question", "answer", "source", "route"}`` where ``source`` is the chunk text the
teacher saw. :func:`apply_filters` runs every rule and reports how many pairs each removed
(a pair is counted under the first rule it fails).
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any, Iterable

from knowledge.numbers import extract_quantities, same_quantity
from router.llm.prompts import mentions_refusal

_URL = re.compile(r"(https?://|www\.)[^\s，。）)\]]+", re.IGNORECASE)
_TITLE = re.compile(r"《[^》]{1,40}》")
_PAGE = re.compile(r"(第\s*[0-9一二三四五六七八九十百]+\s*页|\bpages?\s+\d+|\bp\.\s*\d+)", re.IGNORECASE)


def numbers_grounded(answer: str, source: str) -> bool:
    """Every quantity in the answer appears in the source (whole numbers, unit-compatible).

    >>> numbers_grounded("每晚不超过480元", "住宿标准：每晚480元。")
    True
    >>> numbers_grounded("每晚不超过500元", "住宿标准：每晚480元。")
    False
    """
    found = extract_quantities(source)
    return all(any(same_quantity(q, s) for s in found) for q in extract_quantities(answer))


def no_invented_references(answer: str, source: str) -> bool:
    """No URL, 《title》 or page reference that the source does not contain.

    >>> no_invented_references("详见《差旅费管理办法》第3页", "《差旅费管理办法》……")
    False
    >>> no_invented_references("详见《差旅费管理办法》", "《差旅费管理办法》……")
    True
    """
    for pattern in (_URL, _TITLE, _PAGE):
        for m in pattern.finditer(answer):
            if m.group(0) not in source:
                return False
    return True


def not_refusal(answer: str) -> bool:
    """No refusal phrase (only a ``refuse`` example may decline).

    >>> not_refusal("文中没有提到具体金额"), not_refusal("每晚480元")
    (False, True)
    """
    return not mentions_refusal(answer)


def length_ok(question: str, answer: str, q_bounds: tuple[int, int] = (4, 160),
              a_bounds: tuple[int, int] = (2, 800)) -> bool:
    """Question and answer lengths (characters) inside bounds.

    >>> length_ok("报销流程是怎样的？", "先提交申请再审批"), length_ok("?", "x")
    (True, False)
    """
    return q_bounds[0] <= len(question.strip()) <= q_bounds[1] and a_bounds[0] <= len(answer.strip()) <= a_bounds[1]


def char_ngrams(text: str, n: int = 3) -> set[str]:
    """Lower-cased character n-grams of the text without whitespace and punctuation.

    >>> sorted(char_ngrams("AM是什么"))
    ['am是', 'm是什', '是什么']
    """
    s = re.sub(r"[\s\W_]+", "", text.lower())
    return {s[i:i + n] for i in range(max(1, len(s) - n + 1))} if s else set()


def jaccard(a: set[str], b: set[str]) -> float:
    """|a ∩ b| / |a ∪ b| (0 for two empty sets).

    >>> jaccard({"a", "b"}, {"b", "c"})
    0.3333333333333333
    """
    union = a | b
    return len(a & b) / len(union) if union else 0.0


class NearDuplicates:
    """Remembers kept questions; ``seen(q)`` is True when one is at least ``threshold`` similar."""

    def __init__(self, threshold: float = 0.85):
        self.threshold = threshold
        self.kept: list[set[str]] = []
        self.exact: set[str] = set()

    def seen(self, question: str) -> bool:
        grams = char_ngrams(question)
        key = "".join(sorted(grams))
        if key in self.exact or any(jaccard(grams, g) >= self.threshold for g in self.kept):
            return True
        self.exact.add(key)
        self.kept.append(grams)
        return False


def not_echo(question: str, answer: str, instructions: str = "") -> bool:
    """The teacher wrote a question of its own: not a copy of the instructions, and the
    answer is not the question repeated.

    >>> not_echo("病假怎么申请？", "病假怎么申请？"), not_echo("病假怎么申请？", "先在OA提交")
    (False, True)
    """
    if answer and jaccard(char_ngrams(question), char_ngrams(answer)) >= 0.8:
        return False
    return not (instructions and len(char_ngrams(question) & char_ngrams(instructions)) >= 6)


RULES = ("length", "echo", "refusal_phrase", "ungrounded_number", "invented_reference", "near_duplicate")


def failed_rule(pair: dict[str, Any], dedup: NearDuplicates) -> str | None:
    """The first rule this pair fails, or ``None`` when it passes (and is then remembered)."""
    q, a, src, route = pair["question"], pair.get("answer", ""), pair.get("source", ""), pair["route"]
    if not length_ok(q, a if a else "ok"):
        return "length"
    if not not_echo(q, a, pair.get("instructions", "")):
        return "echo"
    if a and route != "refuse":
        if not not_refusal(a):
            return "refusal_phrase"
        if not numbers_grounded(a, src):
            return "ungrounded_number"
        if not no_invented_references(a, src):
            return "invented_reference"
    if dedup.seen(q):
        return "near_duplicate"
    return None


def apply_filters(pairs: Iterable[dict[str, Any]], dedup_threshold: float = 0.85
                  ) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Kept pairs and ``{rule: removed}`` for every rule (zeros included)."""
    dedup = NearDuplicates(dedup_threshold)
    kept, removed = [], Counter({r: 0 for r in RULES})
    for pair in pairs:
        rule = failed_rule(pair, dedup)
        if rule is None:
            kept.append(pair)
        else:
            removed[rule] += 1
    return kept, dict(removed)
