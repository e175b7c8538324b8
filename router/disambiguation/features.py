"""Pure text helpers for disambiguation: context views and lexical units.

No embeddings here: these functions decide *what* text is compared and which words count as
evidence, so they can be checked by hand.
"""

from __future__ import annotations

import math
import re

from knowledge.text_utils import is_cjk, normalize_width, sentence_spans

# Function words carry no evidence for one meaning over another.
STOPWORDS = frozenset(
    "a an the of and or for in on to with by from at as is are was were be been being we our "
    "you your they their this that these those using use used based via into its it not no "
    "can will may than then there which who what when where how all any each per such".split()
)
_LATIN_WORD = re.compile(r"[A-Za-z][A-Za-z0-9]*")
_SUFFIXES = ("ings", "ing", "ions", "ion", "ies", "es", "s", "ed", "al", "ive", "ly")


def stem(word: str) -> str:
    """A crude English stem, enough to match ``embeddings`` with ``embedding``.

    >>> stem("Embeddings"), stem("networks"), stem("learning"), stem("gas")
    ('embedd', 'network', 'learn', 'gas')
    """
    word = word.lower()
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 4:
            return word[: -len(suffix)]
    return word


def lexical_units(text: str, exclude: tuple[str, ...] = ()) -> set[str]:
    """Comparable units of ``text``: stemmed English content words and Chinese bigrams.

    Chinese has no spaces, so character bigrams stand in for words (``付款申请`` ->
    ``付款 款申 申请``). Strings in ``exclude`` (the term itself) are removed first.

    >>> sorted(lexical_units("PO号填到付款申请", exclude=("PO",)))
    ['付款', '到付', '号填', '填到', '款申', '申请']
    >>> sorted(lexical_units("the Purchase Orders of AM", exclude=("AM",)))
    ['order', 'purchase']
    """
    text = normalize_width(text)
    for surface in exclude:
        if surface:
            text = text.replace(normalize_width(surface), " ")
    units = {stem(w) for w in _LATIN_WORD.findall(text) if w.lower() not in STOPWORDS and len(w) > 1}
    for run in _cjk_runs(text):
        units.update(run[i:i + 2] for i in range(len(run) - 1))
    return units


def _cjk_runs(text: str) -> list[str]:
    """Maximal runs of CJK ideographs (punctuation splits runs).

    >>> _cjk_runs("把PO号填到付款申请里，谢谢")
    ['把', '号填到付款申请里', '谢谢']
    """
    runs, current = [], []
    for ch in text:
        if "\u3400" <= ch <= "\u9fff" or "\uf900" <= ch <= "\ufaff":
            current.append(ch)
        else:
            if current:
                runs.append("".join(current))
            current = []
    if current:
        runs.append("".join(current))
    return runs


def overlap(context_units: set[str], meaning_units: set[str]) -> float:
    """Share of a meaning's units that the context contains, per script, the better of the
    two: a Chinese question should not be penalised for lacking the English long form.

    >>> overlap({"project", "kickoff"}, {"project", "manag"})
    0.5
    >>> overlap({"项目", "启动"}, {"project", "manag", "项目", "目经", "经理"})
    0.3333333333333333
    """
    best = 0.0
    for group in (_cjk_units(meaning_units), meaning_units - _cjk_units(meaning_units)):
        if group:
            best = max(best, len(group & context_units) / len(group))
    return best


def _cjk_units(units: set[str]) -> set[str]:
    return {u for u in units if is_cjk(u[0])}


def weighted_overlap(context_units: set[str], weights: dict[str, float]) -> float:
    """Weighted share of keyword units present in the context.

    >>> weighted_overlap({"invoice"}, {"invoice": 3.0, "ledger": 1.0})
    0.75
    """
    total = sum(weights.values())
    if total <= 0:
        return 0.0
    return sum(w for unit, w in weights.items() if unit in context_units) / total


def window_chars(text: str, base: int) -> int:
    """Characters on each side of a term for the window view: fewer for Chinese, where one
    character carries about as much as a short English word.

    >>> window_chars("项目启动会上由PM负责", 120), window_chars("the AM will call", 120)
    (40, 120)
    """
    cjk = sum(1 for ch in text if is_cjk(ch))
    return max(8, base // 3) if cjk * 4 >= len(text) else base


def context_views(context: str, start: int, end: int, window: int = 120) -> list[str]:
    """The texts compared with each meaning: the sentence holding the term (cut to twice the
    window when very long) and a window of ``window`` characters either side (word-aligned),
    the latter only when it reaches beyond the sentence (earlier turns, nearby sentences):
    a window inside the sentence adds nothing but embedding time.

    >>> context_views("我们开会。项目启动会上由PM负责制定里程碑。下周见", 12, 14, 120)
    ['项目启动会上由PM负责制定里程碑。', '我们开会。项目启动会上由PM负责制定里程碑。下周见']
    >>> context_views("PM是什么意思", 0, 2)
    ['PM是什么意思']
    >>> len(context_views("word " * 200 + "AM " + "word " * 200, 1000, 1002))
    1
    """
    if not context.strip():
        return [context]
    half = window_chars(context, window)
    sentence = next(((s, e) for s, e in sentence_spans(context) if s <= start < e), (0, len(context)))
    s_start, s_end = max(sentence[0], start - 2 * half), min(sentence[1], end + 2 * half)
    w_start, w_end = _align(context, max(0, start - half), min(len(context), end + half))
    sentence_view, window_view = context[s_start:s_end].strip(), context[w_start:w_end].strip()
    views = [sentence_view] if window_view in sentence_view else [sentence_view, window_view]
    return [v for v in views if v] or [context]


def _align(text: str, start: int, end: int) -> tuple[int, int]:
    """Widen a span so it does not cut a Latin word in half."""
    while start > 0 and text[start - 1].isalnum() and not is_cjk(text[start - 1]):
        start -= 1
    while end < len(text) and text[end].isalnum() and not is_cjk(text[end]):
        end += 1
    return start, end


def position_prior(index: int) -> float:
    """Log prior of a meaning by its place in the glossary (the first row is the usual one).

    >>> position_prior(0), round(position_prior(1), 3)
    (0.0, -0.693)
    """
    return -math.log1p(index) if index > 0 else 0.0
