"""The LoRA router's prompt and answer format, shared by training data and serving.

Training examples and inference must see the same system prefix (DESIGN.md: without it the
route flips once the prefix is added at inference), so both import it from here.
The answer is one JSON object whose first key is the route, so a single forward pass over
``prompt + '{"route": "'`` decides it by comparing the route labels' first-token logits::

    {"route": "glossary", "terms": {"PM": "项目经理"}, "query": "项目经理（PM）是什么意思？"}
"""

from __future__ import annotations

import json
from typing import Any

# Kept short on purpose: every training row and every routing call carries it (CPU training
# time grows with it; at serving time it sits in the KV cache).
ROUTER_SYSTEM = (
    '知识库路由器。只输出JSON {"route","terms","query"}。'
    "route: glossary=问术语含义; fact=问一个具体数值或规定; rag=流程、多条件或综合; refuse=知识库没有答案。"
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


def router_user(question: str, terms: list[tuple[str, list[str]]] | None = None, relevance: str | None = None,
                fact: tuple[str, str] | None = None, leaning: dict[str, str] | None = None,
                hint: tuple[str, str] | None = None) -> str:
    """The user turn: the question, then the evidence the router decides from.

    ``terms``: every glossary candidate found in the question with all its meanings (the model
    picks one), ``leaning``: the embedding disambiguator's pick where it made one;
    ``relevance``: how far the best passage stands above the collection (:func:`level`);
    ``fact``: the nearest stored fact as ``(level, statement)``; ``hint``: the rule router's
    route and confidence level. The facts themselves are never learned: they are given here,
    so the model learns how employees ask and when the evidence answers them.

    >>> print(router_user("PM的住宿标准？", [("PM", ["产品经理", "项目经理"])], "高", ("中", "项目经理住宿每晚500元"),
    ...                   {"PM": "项目经理"}, ("fact", "高")))
    PM的住宿标准？
    术语：PM=产品经理|项目经理（倾向项目经理）
    资料相关度：高
    最近事实（中）：项目经理住宿每晚500元
    规则路由：fact（高）
    """
    leaning = leaning or {}
    lines = [question.strip()]
    if terms:
        lines.append("术语：" + "；".join(
            f"{t}={'|'.join(labels)}" + (f"（倾向{leaning[t]}）" if t in leaning and len(labels) > 1 else "")
            for t, labels in terms))
    if relevance is not None:
        lines.append(f"资料相关度：{relevance}")
    if fact is not None:
        lines.append(f"最近事实（{fact[0]}）：{_clip(fact[1], FACT_CHARS)}")
    if hint is not None:
        lines.append(f"规则路由：{hint[0]}（{hint[1]}）")
    return "\n".join(lines)


FACT_CHARS = 48  # enough to see what the fact is about, short enough for CPU training


def _clip(text: str, n: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def evidence_from_signals(signals: Any, peak_threshold: float, fact_threshold: float,
                          rule_choice: Any = None) -> dict[str, Any]:
    """:func:`router_user` keyword arguments from a :class:`router.routes.RouteSignals` (and
    the rule router's :class:`router.routes.RouteChoice` for it, when given).

    The same function builds training rows (``finetune/distill.py``) and serving prompts
    (``router/lora.py``), so the two cannot drift apart.
    """
    terms: list[tuple[str, list[str]]] = []
    for m in signals.matches:
        if m.term not in dict(terms):
            terms.append((m.term, list(dict.fromkeys(meaning_label(x) for x in m.entry.meanings))))
    best = max((h.dense or 0.0 for h in signals.hits), default=0.0)
    relevance = level(best - signals.background, peak_threshold, peak_threshold)
    fact = None
    if signals.fact_hits:
        top = signals.fact_hits[0]
        fact = (level(top.score, fact_threshold - 0.03, 0.03), top.fact.statement)
    leaning = {}
    for m, r in zip(signals.matches, signals.terms):
        picked = [x for x in m.entry.meanings if (x.english, x.chinese) == (r.expansion, r.meaning)]
        if len(m.entry.meanings) > 1 and r.decided and picked:
            leaning.setdefault(m.term, meaning_label(picked[0]))
    hint = None
    if rule_choice is not None:
        c = rule_choice.confidence
        hint = (rule_choice.route, "高" if c >= 0.9 else "中" if c >= 0.7 else "低")
    return {"terms": terms, "relevance": relevance, "fact": fact, "leaning": leaning, "hint": hint}


def router_messages(question: str, evidence: dict[str, Any] | None = None) -> list[dict[str, str]]:
    """System + user turns the router model sees (the assistant turn is the JSON answer).

    >>> router_messages("PM是什么意思？")[1]
    {'role': 'user', 'content': 'PM是什么意思？'}
    """
    return [{"role": "system", "content": ROUTER_SYSTEM},
            {"role": "user", "content": router_user(question, **(evidence or {}))}]


def route_answer(route: str, terms: dict[str, str], query: str) -> str:
    """The assistant turn: compact JSON with the route first.

    >>> route_answer("glossary", {"PM": "项目经理"}, "项目经理（PM）是什么意思？")
    '{"route": "glossary", "terms": {"PM": "项目经理"}, "query": "项目经理（PM）是什么意思？"}'
    """
    return json.dumps({"route": route, "terms": terms, "query": query}, ensure_ascii=False)


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
