"""The answer engine on the demo knowledge base: every route, refusal, verification policy, streaming."""

from __future__ import annotations

import re
from typing import Any, Iterator

import pytest

from knowledge.errors import ValidationError
from router.llm.base import Generator
from router.llm.prompts import REFUSAL_EN, REFUSAL_ZH


def ask(engine, q: str) -> dict[str, Any]:
    return engine.answer(q).to_dict()


# --- glossary route --------------------------------------------------------------------
def test_glossary_route_lists_every_meaning_when_undecided(extractive_engine):
    a = ask(extractive_engine, "AM是什么意思？")
    assert a["route"] == "glossary"
    assert "客户经理" in a["answer"] and "资产管理" in a["answer"]
    assert a["citations"] and a["citations"][0]["chunk_id"] == "glossary:AM"
    assert a["timings_ms"]["generate"] == 0


def test_glossary_route_picks_meaning_from_context(extractive_engine):
    a = ask(extractive_engine, "财务部AM组负责固定资产盘点，这里的AM是什么意思？")
    assert a["route"] == "glossary"
    term = a["terms"][0]
    assert term["term"] == "AM" and term["meaning"] == "资产管理"
    assert a["answer"].index("资产管理") < a["answer"].find("客户经理") or "客户经理" not in a["answer"]


def test_glossary_reverse_lookup(extractive_engine):
    a = ask(extractive_engine, "实际成交价的缩写是什么？")
    assert a["route"] == "glossary"
    assert "AAP" in a["answer"]


def test_glossary_route_in_english(extractive_engine):
    a = ask(extractive_engine, "What does AAP stand for?")
    assert a["route"] == "glossary"
    assert "Actual Average Price" in a["answer"]


# --- fact route --------------------------------------------------------------------------
@pytest.mark.parametrize("question,number", [
    ("单笔采购多少钱以上要签采购协议？", "3000"),
    ("密码最短要几位？", "12"),
    ("婚假是几天？", "3"),
])
def test_fact_route_answers_from_a_stored_fact(extractive_engine, question, number):
    a = ask(extractive_engine, question)
    assert a["route"] == "fact", a
    assert re.search(rf"(?<!\d){number}(?!\d)", a["answer"].replace(",", ""))
    assert a["citations"][0]["source"]
    assert a["verification"]["status"] == "verified"


# --- refusal ------------------------------------------------------------------------------
@pytest.mark.parametrize("question,text", [
    ("公司的股票代码是多少？", REFUSAL_ZH),
    ("What is the capital of Australia?", REFUSAL_EN),
])
def test_refuses_when_the_kb_does_not_hold_the_answer(extractive_engine, question, text):
    a = ask(extractive_engine, question)
    assert a["route"] == "refuse"
    assert a["answer"] == text
    assert a["citations"] == []


# --- rag route and the verification policy ----------------------------------------------
def test_rag_route_cites_passages(extractive_engine):
    a = ask(extractive_engine, "出差住宿超标了怎么办？")
    assert a["route"] == "rag"
    assert a["citations"]
    assert a["verification"]["status"] in ("verified", "not_applicable", "corrected")


class InventingGenerator(Generator):
    """A generator that always states a figure no passage contains (the failure this product exists for)."""

    name = "inventing"

    def __init__(self) -> None:
        self.calls = 0

    def generate(self, messages, *, max_tokens, temperature, stop=None) -> str:
        self.calls += 1
        return "根据规定，住宿标准为每晚 9999 元 [1]。另外补贴 777 元。"

    def stream(self, messages, **kw) -> Iterator[str]:
        text = self.generate(messages, **kw)
        for i in range(0, len(text), 3):
            yield text[i:i + 3]


@pytest.fixture()
def inventing_engine(demo_settings, demo_index):
    from router.engine import Engine

    return Engine(demo_settings, demo_index, generator=InventingGenerator())


def test_unsupported_number_never_reaches_the_user(inventing_engine):
    a = inventing_engine.answer("出差住宿超标了怎么办？").to_dict()
    assert "9999" not in a["answer"] and "777" not in a["answer"]
    assert inventing_engine.generator.calls == 2  # first answer, then one regeneration
    assert a["verification"]["status"] in ("corrected",) or a["route"] == "refuse"
    for n in a["verification"]["numbers"]:
        assert n["supported"]


def test_streaming_never_shows_an_unsupported_number(inventing_engine):
    events = list(inventing_engine.answer_stream("出差住宿超标了怎么办？", stream=True))
    shown = "".join(e["text"] for e in events if e["type"] == "delta")
    final = events[-1]["answer"]
    assert "9999" not in shown and "777" not in shown
    assert shown.strip() == final.answer.strip()


def test_streaming_matches_the_final_answer_for_glossary(extractive_engine):
    events = list(extractive_engine.answer_stream("PM是什么意思？", stream=True))
    assert events[-1]["type"] == "final"
    shown = "".join(e["text"] for e in events if e["type"] == "delta")
    assert shown == events[-1]["answer"].answer


# --- input validation --------------------------------------------------------------------
@pytest.mark.parametrize("bad", ["", "   ", "问" * 20_000, None])
def test_bad_questions_raise_validation_error(extractive_engine, bad):
    with pytest.raises(ValidationError):
        extractive_engine.answer(bad)


def test_answer_object_matches_the_data_contract(extractive_engine):
    a = ask(extractive_engine, "AM出差住宿标准是多少？")
    assert set(a) >= {"answer", "route", "confidence", "terms", "rewritten_query", "citations",
                      "verification", "timings_ms"}
    assert a["route"] in ("glossary", "fact", "rag", "refuse")
    assert 0.0 <= a["confidence"] <= 1.0
    assert "客户经理" in a["rewritten_query"]
    assert set(a["timings_ms"]) >= {"route", "retrieve", "generate", "verify", "total"}
    for c in a["citations"]:
        assert set(c) >= {"source", "page", "chunk_id", "quote"}


# --- the default embedded LLM end to end ---------------------------------------------------
@pytest.fixture(scope="module")
def llama_engine(demo_settings, demo_index):
    from router.engine import Engine
    from router.llm import create_generator

    settings = demo_settings.model_copy(update={"llm": demo_settings.llm.model_copy(
        update={"backend": "llama_cpp", "max_tokens": 96})})
    return Engine(settings, demo_index, generator=create_generator(settings))


def test_rag_with_the_packaged_model_never_shows_an_unsupported_number(llama_engine):
    a = llama_engine.answer("C类员工去深圳参加全印展，住宿每晚最多能报多少？").to_dict()
    assert a["route"] in ("rag", "fact", "refuse")
    assert a["timings_ms"]["total"] > 0
    assert all(n["supported"] for n in a["verification"]["numbers"]), a["verification"]
    if a["route"] == "rag":
        assert a["citations"]
        assert a["verification"]["status"] in ("verified", "corrected", "not_applicable")


def test_streaming_with_the_packaged_model(llama_engine):
    events = list(llama_engine.answer_stream("出差住宿超标了怎么办？", stream=True))
    shown = "".join(e["text"] for e in events if e["type"] == "delta")
    final = events[-1]["answer"]
    assert events[-1]["type"] == "final" and shown.strip() == final.answer.strip()
    assert all(n["supported"] for n in final.verification["numbers"])


# --- the router of record decides the terms ------------------------------------------------
class OtherMeaningRouter:
    """A router that reads every ambiguous term differently from the embedding disambiguator
    (what a LoRA router may do), and routes to rag."""

    name = "other-meaning"

    def decide(self, signals):
        from router.routes import RouteChoice
        from router.terms import TermResolution, rewrite_query

        terms = []
        for m, r in zip(signals.matches, signals.terms):
            other = next((x for x in m.entry.meanings if x.chinese != r.meaning), None)
            terms.append(TermResolution(m.term, other.english, other.chinese, 1.0, [], True) if other else r)
        return RouteChoice("rag", 0.9, terms, rewrite_query(signals.question, signals.matches, terms), {}, "test")


def test_retrieval_follows_the_routers_reading_of_the_terms(demo_settings, demo_index):
    from router.engine import Engine
    from router.llm.extractive import ExtractiveGenerator

    searched: list[str] = []

    class Recording:
        def __init__(self, inner):
            self.inner = inner

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def search(self, query, k=5):
            searched.append(query)
            return self.inner.search(query, k=k)

    engine = Engine(demo_settings, Recording(demo_index), generator=ExtractiveGenerator(), router=OtherMeaningRouter())
    question = "交付中心的PM负责什么？"
    base_choice, base_signals = Engine(demo_settings, demo_index, generator=ExtractiveGenerator()).decide(question)
    first = next(r for r in base_signals.terms if r.term == "PM")
    a = engine.answer(question).to_dict()
    pm = next(t for t in a["terms"] if t["term"] == "PM")
    assert pm["meaning"] != first.meaning and pm["decided"]
    assert pm["meaning"] in a["rewritten_query"] and a["rewritten_query"] != base_signals.rewritten_query
    assert searched[-1] == a["rewritten_query"]  # passages were retrieved for the router's reading
