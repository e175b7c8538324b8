"""The LoRA router's prompt and answer format, shared by training data and serving.

Training examples and inference must see the same system prefix (measured: without it the
route flips once the prefix is added at inference), so both import it from here.
The user turn is the question with the evidence the router reads: every glossary candidate with
its meanings, the two passage sentences (or table rows) that bear on it most, clipped, and three
measurements in words — how much of the question they cover, which of its words the knowledge
base never uses (and the siblings the passages name instead), how far the best passage stands
above the collection. No rule verdict is shown: the model reads the evidence itself.

The answer is one JSON object whose first key is the route, so a single forward pass over
``prompt + '{"route": "'`` decides it by comparing the route labels' first-token logits::

    {"route": "glossary", "terms": {"PM": "项目经理"}}
"""

from __future__ import annotations

import json
from typing import Any
from router.calibration import features_for

# Kept short on purpose: every training row and every routing call carries it (CPU training
# time grows with it; at serving time it sits in the KV cache).
ROUTER_SYSTEM = (
    '知识库路由器。读问题和证据，只输出JSON {"route","terms"}。'
    "route: glossary=问术语含义; fact=问一个具体数值; rag=流程、条件、是否、比较或综合; refuse=证据回答不了。"
)
ANSWER_OPEN = '{"route": "'


def meaning_label(m: Any) -> str:
    """What the router writes for a meaning: the Chinese explanation, else the English form.

    >>> from knowledge.types import Meaning
    >>> meaning_label(Meaning("Project Manager", "项目经理")), meaning_label(Meaning("Key Account", ""))
    ('项目经理', 'Key Account')
    """
    return m.chinese or m.english


def all_meanings_label(meanings: list[Any]) -> str:
    """The label for "undecided": every meaning joined with ``/``.

    >>> from knowledge.types import Meaning
    >>> all_meanings_label([Meaning("Product Manager", "产品经理"), Meaning("Project Manager", "项目经理")])
    '产品经理/项目经理'
    """
    return "/".join(dict.fromkeys(meaning_label(m) for m in meanings))


def resolution_label(resolution: Any, match: Any) -> str:
    """What the router writes for a term's resolution: the chosen meaning's label, or every
    meaning joined when it is undecided.

    >>> from knowledge.types import GlossaryEntry, Meaning
    >>> from router.disambiguation.base import single_meaning, undecided
    >>> from router.terms import TermMatch
    >>> m = TermMatch("PM", "PM", 0, 2, GlossaryEntry("PM", [Meaning("Product Manager", "产品经理"),
    ...                                                      Meaning("Project Manager", "项目经理")]))
    >>> resolution_label(single_meaning(m, 1), m), resolution_label(undecided(m), m)
    ('项目经理', '产品经理/项目经理')
    """
    ms = match.entry.meanings
    if len(ms) > 1 and not resolution.decided:
        return all_meanings_label(ms)
    chosen = [m for m in ms if (m.english, m.chinese) == (resolution.expansion, resolution.meaning)]
    return meaning_label(chosen[0] if chosen else ms[0]) if ms else ""


def level(value: float, threshold: float, step: float) -> str:
    """A similarity margin as a word the small model can learn from: 无 below ``threshold``,
    then 低 / 中 / 高 one ``step`` apart.

    >>> [level(v, 0.04, 0.04) for v in (0.01, 0.05, 0.09, 0.2)]
    ['无', '低', '中', '高']
    """
    if value < threshold:
        return "无"
    if value < threshold + step:
        return "低"
    if value < threshold + 2 * step:
        return "中"
    return "高"


def router_user(question: str, terms: list[tuple[str, list[str]]] | None = None,
                leaning: dict[str, str] | None = None, evidence: list[str] | None = None,
                coverage: str | None = None, absent: list[str] | None = None,
                siblings: list[str] | None = None, relevance: str | None = None) -> str:
    """The user turn: the question, then the evidence the router decides from.

    ``terms``: every glossary candidate with all its meanings (``leaning``: the embedding
    disambiguator's pick); ``evidence``: the best passage sentences or table rows, clipped;
    ``coverage`` / ``relevance``: :func:`level` words; ``absent``: question words the knowledge
    base never uses; ``siblings``: what the passages name instead of an absent word. The facts
    themselves are never learned: they are given here, so the model learns how employees ask and
    when the evidence answers them.

    >>> print(router_user("PM的住宿标准？", [("PM", ["产品经理", "项目经理"])], {"PM": "项目经理"},
    ...                   ["项目经理住宿每晚500元。"], "高", [], [], "中"))
    PM的住宿标准？
    术语：PM=产品经理|项目经理（倾向项目经理）
    证据：项目经理住宿每晚500元。
    覆盖：高；缺词：无；相关度：中
    """
    leaning = leaning or {}
    lines = [question.strip()]
    if terms:
        lines.append("术语：" + "；".join(
            f"{t}={'|'.join(labels)}" + (f"（倾向{leaning[t]}）" if t in leaning and len(labels) > 1 else "")
            for t, labels in terms))
    for e in evidence or []:
        lines.append(f"证据：{_clip(e, EVIDENCE_CHARS)}")
    if coverage is not None or relevance is not None:
        missing = "、".join((absent or [])[:3]) or "无"
        extra = f"；同类：{'、'.join(siblings[:3])}" if siblings else ""
        lines.append(f"覆盖：{coverage or '无'}；缺词：{missing}{extra}；相关度：{relevance or '无'}")
    return "\n".join(lines)


EVIDENCE_CHARS = 64  # per evidence line: enough to see what it says, short enough for CPU training
FACT_CHARS = EVIDENCE_CHARS


def _clip(text: str, n: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def coverage_level(value: float) -> str:
    """Word coverage as a word: 高 ≥ 0.75, 中 ≥ 0.5, 低 ≥ 0.25, else 无.

    >>> [coverage_level(v) for v in (0.9, 0.6, 0.3, 0.1)]
    ['高', '中', '低', '无']
    """
    return "高" if value >= 0.75 else "中" if value >= 0.5 else "低" if value >= 0.25 else "无"


def relevance_level(peak_z: float) -> str:
    """The calibrated cosine margin as a word: 高 ≥ 1, 中 ≥ 0, 低 ≥ -1, else 无."""
    return "高" if peak_z >= 1 else "中" if peak_z >= 0 else "低" if peak_z >= -1 else "无"


def evidence_from_signals(signals: Any, *_: Any) -> dict[str, Any]:
    """:func:`router_user` keyword arguments from a :class:`router.routes.RouteSignals`.

    The same function builds training rows (``finetune/distill.py``) and serving prompts
    (``router/lora.py``), so the two cannot drift apart. (Extra positional arguments of the
    earlier signature are accepted and ignored.)
    """

    terms: list[tuple[str, list[str]]] = []
    for m in signals.matches:
        if m.term not in dict(terms):
            terms.append((m.term, list(dict.fromkeys(meaning_label(x) for x in m.entry.meanings))))
    leaning = {}
    for m, r in zip(signals.matches, signals.terms):
        picked = [x for x in m.entry.meanings if (x.english, x.chinese) == (r.expansion, r.meaning)]
        if len(m.entry.meanings) > 1 and r.decided and picked:
            leaning.setdefault(m.term, meaning_label(picked[0]))
    ev = signals.evidence
    if ev is None:
        return {"terms": terms, "leaning": leaning}
    lines, chunks = [], set()
    for u in ev.units:
        if u.kind == "heading" or u.chunk_id in chunks:
            continue
        chunks.add(u.chunk_id)
        lines.append(u.text)
        if len(lines) == 2:
            break
    feats = features_for(signals)
    siblings = sorted({s for sibs in ev.siblings.values() for s in sibs})
    return {"terms": terms, "leaning": leaning, "evidence": lines,
            "coverage": coverage_level(ev.best_coverage), "absent": list(ev.absent),
            "siblings": siblings, "relevance": relevance_level(feats["peak_z"])}


def router_messages(question: str, evidence: dict[str, Any] | None = None) -> list[dict[str, str]]:
    """System + user turns the router model sees (the assistant turn is the JSON answer).

    >>> router_messages("PM是什么意思？")[1]
    {'role': 'user', 'content': 'PM是什么意思？'}
    """
    return [{"role": "system", "content": ROUTER_SYSTEM},
            {"role": "user", "content": router_user(question, **(evidence or {}))}]


def route_answer(route: str, terms: dict[str, str], query: str | None = None) -> str:
    """The assistant turn: compact JSON with the route first (``query`` only when given: the
    rewrite is the terminology layer's, so the model is not trained to copy the question).

    >>> route_answer("glossary", {"PM": "项目经理"})
    '{"route": "glossary", "terms": {"PM": "项目经理"}}'
    """
    body: dict[str, Any] = {"route": route, "terms": terms}
    if query is not None:
        body["query"] = query
    return json.dumps(body, ensure_ascii=False)


def terms_prefix(route: str, chosen: list[tuple[str, str]], term: str) -> str:
    """Answer text up to the opening quote of ``term``'s meaning (for expansion scoring).

    >>> terms_prefix("rag", [("AM", "客户经理")], "PM")
    '{"route": "rag", "terms": {"AM": "客户经理", "PM": "'
    """
    done = "".join(f"{json.dumps(t, ensure_ascii=False)}: {json.dumps(m, ensure_ascii=False)}, " for t, m in chosen)
    return f'{ANSWER_OPEN}{route}", "terms": {{{done}{json.dumps(term, ensure_ascii=False)}: "'


def parse_route_answer(text: str) -> dict[str, Any] | None:
    """The JSON answer, or ``None`` when it is malformed.

    >>> parse_route_answer('{"route": "rag", "terms": {}, "query": "q"}')["route"]
    'rag'
    >>> parse_route_answer('route: rag') is None
    True
    """
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, TypeError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("route"), str):
        return None
    return data
