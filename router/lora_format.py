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


def router_messages(question: str) -> list[dict[str, str]]:
    """System + user turns the router model sees (the assistant turn is the JSON answer).

    >>> router_messages("PM是什么意思？")[1]
    {'role': 'user', 'content': 'PM是什么意思？'}
    """
    return [{"role": "system", "content": ROUTER_SYSTEM}, {"role": "user", "content": question}]


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
