"""Follow-up questions resolved against the conversation into standalone questions.

「那二类城市呢？」 after 「一类城市出差住宿每晚最多能报多少？」 asks the same thing of another city
class: the standalone question is 「二类城市出差住宿每晚最多能报多少？」. Resolution happens before
retrieval, so every interface that passes the conversation (``messages`` of the OpenAI-compatible
API, ``history`` of ``/api/ask`` and ``kb ask --batch``, the agent tool, the LangChain chat model)
gets it, and the answer object reports the standalone question.

How (no model needed for the common shapes, so it is fast and predictable):

1. A question **is a follow-up** when there is an earlier user turn and the question leans on it:
   it opens or closes like one (那…呢, 如果是…, what about …, and for …), points back (这个, it,
   that), or is too short to stand alone; a question that names its own topic is left alone.
2. The **slot** of a follow-up is what it brings: 「那二类城市呢」 brings 二类城市. When the earlier
   question holds a span of the same shape — same head (一类城市/二类城市, 白班/夜班, 主任医师/住院医师),
   same pattern (L3/L5, SEV1/SEV2, 4.2米/9.6米) — the slot replaces it.
3. Otherwise the follow-up's own words are **joined** to the earlier question's topic: 「要谁批？」
   after 「出差5天要提前几天申请？」 becomes 「出差5天要提前几天申请？要谁批？」 — retrieval then sees both.

Earlier user turns are resolved the same way first, so a chain of follow-ups keeps its subject.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Any, Callable

from config.lexicon import lexicon
from knowledge.numbers import extract_quantities
from knowledge.text_utils import HAN, HAN_RE
from router.evidence import _jieba, content_terms, kb_terms

__all__ = ["Resolution", "is_followup", "resolve", "resolve_followup"]

_PUNCT_END = "？?。！!；;，, "
# Shapes of a span a slot may replace; the third, a ranked label (一类城市, 二级动火), is made of
# words and lives in config/lexicon.yaml (followup_slot.ranked_label), as do the follow-up words.
_SHAPES = (
    re.compile(r"^[A-Za-z]+\d+[A-Za-z]?$"),                  # L3, SEV1, P2
    re.compile(rf"^\d+(?:\.\d+)?\s*[A-Za-z{HAN}]{{0,3}}$"),    # 4.2米, 30天, 5 days
)


@dataclass
class Resolution:
    """The question as asked, the standalone question it stands for, and how it was found."""

    question: str
    standalone: str
    followup: bool = False
    how: str = ""              # "", "slot", "joined"
    replaced: str = ""         # the span of the earlier question a slot replaced


def _squash(text: str) -> str:
    return re.sub(r"[\s\W_]+", "", unicodedata.normalize("NFKC", text))


def _user_turns(history: list[dict[str, str]] | None) -> list[str]:
    return [str(h.get("content", "")).strip() for h in (history or []) if h.get("role") == "user"
            and str(h.get("content", "")).strip()]


def is_followup(question: str, has_topic: Callable[[str], bool] | None = None) -> bool:
    """Whether ``question`` leans on an earlier turn.

    ``has_topic`` (optional) says whether a text names something the knowledge base knows; a short
    question that does is not a follow-up just for being short ("婚假几天？").

    >>> is_followup("那二类城市呢？"), is_followup("What about L5?"), is_followup("要谁批？")
    (True, True, True)
    >>> is_followup("一类城市出差住宿每晚最多能报多少？"), is_followup("How many PTO days do new hires get?")
    (False, False)
    """
    f = lexicon().followup
    q = question.strip()
    zh = bool(HAN_RE.search(q))
    if zh:
        if f["zh_open"].search(q) or f["zh_close"].search(q):
            return True
        core = _squash(q)
        if f["zh_refer"].search(q) and len(core) <= 2 * int(f["max_chars_zh"]):
            return True
        short = len(core) <= int(f["max_chars_zh"]) // 2
        return short and not (has_topic and has_topic(q))
    if f["en_open"].search(q) or f["en_close"].search(q):
        return True
    words = re.findall(r"[A-Za-z0-9']+", q)
    if f["en_refer"].search(q) and len(words) <= int(f["max_words_en"]):
        return True
    return len(words) <= 3 and not (has_topic and has_topic(q))


def _slot(question: str) -> str:
    """What a follow-up brings: the question without its follow-up words.

    >>> _slot("那二类城市呢？"), _slot("如果是夜班呢"), _slot("What about L5?"), _slot("and for SEV2?")
    ('二类城市', '夜班', 'L5', 'SEV2')
    """
    words = lexicon().followup_slot
    q = question.strip()
    if HAN_RE.search(q):
        q = words["zh_strip"].sub("", q)
        q = words["zh_tail"].sub("", q)
        return q.strip(_PUNCT_END)
    q = words["en_strip"].sub("", q.strip())
    q = words["en_strip"].sub("", q)
    return re.sub(r"[\s?.!]+$", "", words["en_drop"].sub("", q)).strip(" ,")


def _candidates(text: str) -> list[tuple[int, int]]:
    """Spans of an earlier question a slot may replace: Latin tokens, numbers with their unit,
    and runs of Chinese characters cut at word boundaries (jieba), up to four words long."""
    spans: list[tuple[int, int]] = []
    for m in re.finditer(rf"[A-Za-z]+\d+[A-Za-z]?|\d+(?:\.\d+)?\s*[A-Za-z{HAN}]{{0,2}}|[A-Za-z][A-Za-z\-]+", text):
        spans.append((m.start(), m.end()))

    for m in re.finditer(f"[{HAN}]+", text):
        words, pos = [], m.start()
        for w in _jieba().lcut(m.group(), HMM=True):
            words.append((pos, pos + len(w)))
            pos += len(w)
        for i in range(len(words)):
            for j in range(i, min(i + 4, len(words))):
                spans.append((words[i][0], words[j][1]))
    return spans


def _common_suffix(a: str, b: str) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[-1 - n] == b[-1 - n]:
        n += 1
    return n


def _common_prefix(a: str, b: str) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def _shape(text: str) -> int:
    for i, pattern in enumerate((*_SHAPES, lexicon().followup_slot["ranked_label"])):
        if pattern.match(text):
            return i
    return -1


def _slot_score(span: str, slot: str) -> float:
    """How well ``slot`` fits where ``span`` stands: the same shape, or the same head with another
    modifier. 0 when unrelated; never for the identical text.

    >>> _slot_score("一类城市", "二类城市") > 0, _slot_score("L3", "L5") > 0, _slot_score("出差", "夜班")
    (True, True, 0.0)
    """
    a, b = span.strip().casefold(), slot.strip().casefold()
    if not a or not b or a == b:
        return 0.0
    score = 0.0
    sa, sb = _shape(a), _shape(b)
    if sa >= 0 and sa == sb:
        score += 2.0
        if sa == 1 and re.sub(r"[\d.\s]", "", a) == re.sub(r"[\d.\s]", "", b):
            score += 0.5  # same unit
    suf = _common_suffix(a, b)
    pre = _common_prefix(a, b)
    if HAN_RE.search(a) and HAN_RE.search(b):
        if 0 < suf < min(len(a), len(b)) + (1 if len(a) != len(b) else 0):
            score += 1.0 + 0.4 * suf          # 白班 / 夜班, 主任医师 / 住院医师
        elif 0 < pre < min(len(a), len(b)):
            score += 0.6 + 0.2 * pre          # 年假 / 年休假 (weaker)
        score -= 0.15 * abs(len(a) - len(b))
    elif not HAN_RE.search(a) and not HAN_RE.search(b):
        if sa < 0 and sb < 0 and pre >= 2 and a[:pre].isalpha() and re.search(r"\d", a + b):
            score += 1.0
    return max(score, 0.0)


def _swap_quantity(slot: str, previous: str) -> tuple[str, str] | None:
    """A follow-up that changes a figure of the earlier question (「要是请10天呢？」 after
    「请3天假要谁批？」): the earlier question with that figure replaced.

    >>> _swap_quantity("请10天", "请3天假要谁批？")
    ('请10天假要谁批？', '3天')
    """

    new = extract_quantities(slot)
    if len(new) != 1:
        return None
    old = [q for q in extract_quantities(previous) if q.unit == new[0].unit]
    if len(old) != 1:
        return None
    o = old[0]
    return previous[:o.start] + new[0].text + previous[o.end:], o.text


def resolve_followup(question: str, previous: str, has_topic: Callable[[str], bool] | None = None) -> Resolution:
    """Resolve ``question`` against the earlier (standalone) user question ``previous``.

    >>> resolve_followup("那二类城市呢？", "一类城市出差住宿每晚最多能报多少？").standalone
    '二类城市出差住宿每晚最多能报多少？'
    >>> resolve_followup("What about L5?", "What's the laptop budget for L3 engineers?").standalone
    "What's the laptop budget for L5 engineers?"
    >>> resolve_followup("要谁批？", "出差5天要提前几天申请？").standalone
    '出差5天要提前几天申请？要谁批？'
    >>> resolve_followup("婚假几天？", "年假怎么算？", has_topic=lambda q: True).followup
    False
    """
    q = question.strip()
    if not previous.strip() or not is_followup(q, has_topic):
        return Resolution(question, question)
    slot = _slot(q)
    swapped = _swap_quantity(slot, previous) if slot else None
    if swapped is not None:
        standalone, old = swapped
        return Resolution(question, standalone, True, "slot", old)
    if slot and len(_squash(slot)) <= 16:
        best, best_score = None, 0.0
        for a, b in _candidates(previous):
            score = _slot_score(previous[a:b], slot)
            if score > best_score or (score == best_score and best and (b - a) > (best[1] - best[0])):
                best, best_score = (a, b), score
        if best is not None and best_score >= 1.0:
            a, b = best
            standalone = previous[:a] + slot + previous[b:]
            return Resolution(question, standalone, True, "slot", previous[a:b])
    prev = previous.strip()
    if not prev.endswith(tuple("？?。！!")):
        prev += "？" if HAN_RE.search(prev) else "?"
    joiner = "" if HAN_RE.search(prev) else " "
    return Resolution(question, f"{prev}{joiner}{q}", True, "joined")


def resolve(question: str, history: list[dict[str, str]] | None,
            has_topic: Callable[[str], bool] | None = None) -> Resolution:
    """Resolve ``question`` against the conversation ``history`` (``{"role", "content"}`` turns).

    Earlier user turns are resolved in order first, so 「那夜班呢？」 after 「那主任医师呢？」 after a
    full question keeps the full question's subject.

    >>> h = [{"role": "user", "content": "一类城市住宿每晚多少？"}, {"role": "assistant", "content": "480元。"}]
    >>> resolve("那二类城市呢？", h).standalone
    '二类城市住宿每晚多少？'
    >>> resolve("那二类城市呢？", None).followup
    False
    """
    turns = _user_turns(history)
    if not turns:
        return Resolution(question, question)
    standalone = turns[0]
    for turn in turns[1:]:
        standalone = resolve_followup(turn, standalone, has_topic).standalone
    return resolve_followup(question, standalone, has_topic)


def has_topic_in(index: Any) -> Callable[[str], bool]:
    """``has_topic`` over a knowledge base: the text holds a content word the index knows."""

    stats = kb_terms(index)

    def check(text: str) -> bool:
        return any(stats.present(t) and stats.idf(t) > 1.0 for t in content_terms(text))

    return check
