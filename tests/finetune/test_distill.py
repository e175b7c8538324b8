"""Distillation: templated questions, quality filters with counts, the teacher cache, the
versioned dataset folder, and API-key rotation. The teacher is a counting Generator
registered through the real registry; the knowledge base is a small in-memory one."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from knowledge.errors import GenerationError
from knowledge.glossary import Glossary
from knowledge.types import Chunk, Fact, GlossaryEntry, Meaning, Quantity
from router.llm.base import Generator, create_generator, register_generator


class CountingTeacher(Generator):
    """Answers from the passage in the prompt; counts calls per API key."""

    name = "counting-teacher"
    calls: dict[str, int] = {}
    rate_limited_keys: set[str] = set()

    def __init__(self, api_key: str = ""):
        self.api_key = api_key

    @classmethod
    def from_settings(cls, settings):  # type: ignore[override]
        import os

        return cls(os.environ.get("KB_LLM_API_KEY", ""))

    def generate(self, messages, *, max_tokens, temperature, stop=None):  # type: ignore[override]
        CountingTeacher.calls[self.api_key] = CountingTeacher.calls.get(self.api_key, 0) + 1
        if self.api_key in CountingTeacher.rate_limited_keys:
            raise GenerationError("dashscope: HTTP 429 rate limit exceeded")
        prompt = messages[-1]["content"]
        if "完全没有答案" in prompt:
            return '{"question": "公司年会在哪里举办？"}'
        if "年假" in prompt:
            return '```json\n{"question": "年假需要提前多久申请，由谁审批？", "answer": "年假需提前3天在OA申请，由部门经理审批。"}\n```'
        if "住宿" in prompt:  # invents a number and a page reference
            return '{"question": "住宿标准按城市怎么分？", "answer": "一类城市每晚600元，见第9页。"}'
        return "sorry, no JSON here"


register_generator(CountingTeacher.name, CountingTeacher)


@dataclass
class TinyIndex:
    chunks: list
    facts: list
    glossary: Glossary
    version: str = "test-v1"
    extra: dict = field(default_factory=dict)


def _index() -> TinyIndex:
    glossary = Glossary([
        GlossaryEntry("PM", [Meaning("Product Manager", "产品经理"), Meaning("Project Manager", "项目经理")]),
        GlossaryEntry("PRD", [Meaning("Product Requirements Document", "产品需求文档")]),
        GlossaryEntry("PMO", [Meaning("Project Management Office", "项目管理办公室")]),
        GlossaryEntry("AM", [Meaning("Account Manager", "客户经理")]),
    ])
    chunks = [
        Chunk("c1-0001", "请假制度.txt", "第五条 员工休年假须提前3天在OA系统提交申请，由部门经理审批；年假当年有效，不得跨年使用。",
              None, ["第二章"], 0, 50),
        Chunk("c1-0002", "差旅.md", "住宿标准：一类城市每晚不超过480元，二类城市每晚不超过380元，超出部分自理。",
              None, ["住宿"], 51, 100),
        Chunk("c1-0003", "采购.md", "采购申请由申请人填写采购单，经部门负责人审批后交采购部执行，金额较大时还需总经理审批。",
              None, ["采购"], 101, 150),
    ]
    q = Quantity("480元", 480.0, "元", 0, 4)
    facts = [Fact("c1-0002-f0", "一类城市每晚不超过480元", "一类城市住宿标准", [q], ["不超过"], "差旅.md", "c1-0002",
                  None, 51, 70),
             Fact("c1-0002-f1", "客户经理的通讯补贴每月200元", "客户经理的通讯补贴", [Quantity("200元", 200.0, "元", 0, 4)],
                  [], "差旅.md", "c1-0002", None, 71, 90)]
    return TinyIndex(chunks, facts, glossary)


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


# --- filters ------------------------------------------------------------------------------
def test_each_filter_removes_what_it_should_and_counts_it():
    from finetune.quality import apply_filters

    src = "住宿标准：一类城市每晚不超过480元，详见《差旅费管理办法》。"
    pairs = [
        {"question": "一类城市住宿每晚多少钱？", "answer": "每晚不超过480元。", "source": src, "route": "rag"},  # kept
        {"question": "一类城市住宿的上限是多少？", "answer": "每晚不超过500元。", "source": src, "route": "rag"},
        {"question": "住宿费怎么报销才对？", "answer": "见 https://intra.example.com/travel", "source": src, "route": "rag"},
        {"question": "二类城市住宿标准呢？", "answer": "资料中没有提到二类城市。", "source": src, "route": "rag"},
        {"question": "?", "answer": "x", "source": src, "route": "rag"},
        {"question": "一类城市住宿每晚多少钱呢？", "answer": "每晚不超过480元。", "source": src, "route": "rag"},
        {"question": "出差住宿要什么发票？", "answer": "出差住宿要什么发票？", "source": src, "route": "rag"},
        {"question": "公司年会在哪里？", "answer": "", "source": src, "route": "refuse"},  # kept: refuse, no answer
    ]
    kept, removed = apply_filters(pairs)
    assert [p["question"] for p in kept] == ["一类城市住宿每晚多少钱？", "公司年会在哪里？"]
    assert removed == {"length": 1, "echo": 1, "refusal_phrase": 1, "ungrounded_number": 1,
                       "invented_reference": 1, "near_duplicate": 1}


def test_grounding_and_reference_helpers():
    from finetune.quality import no_invented_references, numbers_grounded

    assert numbers_grounded("三天内提交", "须在3天内提交")  # Chinese numeral, same quantity
    assert not numbers_grounded("须在30天内提交", "须在3天内提交")
    assert not no_invented_references("详见第12页", "全文共3页")
    assert no_invented_references("依据《采购管理制度》", "本制度即《采购管理制度》")


# --- templates ----------------------------------------------------------------------------
def test_templated_glossary_and_fact_questions():
    from finetune.distill import fact_questions, glossary_questions, target_for

    idx = _index()
    qs = glossary_questions(idx.glossary)
    texts = [q["question"] for q in qs]
    assert "PM是什么意思？" in texts and "What does PM stand for?" in texts
    assert "产品经理的缩写是什么？" in texts and "What is the abbreviation of Project Manager?" in texts
    # Contexts that select one meaning of PM come from its own words / glossary neighbours.
    ctx = {q["question"]: q["intended"]["PM"] for q in qs if q["kind"] == "context"}
    assert ctx.get("负责项目的PM是什么意思？") == 1 and ctx.get("负责产品的PM是什么意思？") == 0
    assert any("项目管理办公室" in q or "Project Management Office" in q for q, i in ctx.items() if i == 1)
    assert any("产品需求文档" in q or "Product Requirements Document" in q for q, i in ctx.items() if i == 0)
    # A definition question without context leaves PM undecided: every meaning.
    terms, query = target_for("PM是什么意思？", idx.glossary, {"PM": None})
    assert terms == {"PM": "产品经理/项目经理"} and query == "PM（产品经理/项目经理）是什么意思？"
    terms, query = target_for("负责项目的PM是什么意思？", idx.glossary, {"PM": 1})
    assert terms == {"PM": "项目经理"} and "项目经理（PM）" in query

    facts = fact_questions(idx.facts, idx.glossary)
    ftexts = [f["question"] for f in facts]
    assert "一类城市住宿标准是多少钱？" in ftexts
    assert "AM的通讯补贴是多少钱？" in ftexts  # glossary abbreviation written in place of its meaning
    assert all(f["route"] == "fact" for f in facts)


# --- the pipeline -------------------------------------------------------------------------
def test_distill_writes_versioned_dataset_and_cache_makes_rerun_free(tmp_path, monkeypatch):
    from config.settings import Settings
    from finetune.distill import distill

    monkeypatch.setenv("KB_LLM__BACKEND", CountingTeacher.name)
    monkeypatch.delenv("KB_LLM_API_KEY", raising=False)
    settings = Settings(home=tmp_path)
    assert settings.llm.backend == CountingTeacher.name
    CountingTeacher.calls.clear()
    idx = _index()

    r1 = distill(idx, tmp_path, seed=0, progress=False, settings=settings)
    first_calls = sum(CountingTeacher.calls.values())
    assert first_calls == 6 and r1.teacher_calls == 6  # 3 chunks x (rag, refuse)
    folder = tmp_path / "datasets" / r1.version
    assert r1.version == "v0001" and (tmp_path / "datasets" / "current").read_text().strip() == "v0001"
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    assert set(manifest["sources"]) == {"chunks_sha256", "facts_sha256", "glossary_sha256"}
    assert manifest["counts"]["train"] == len(_read(folder / "train.jsonl")) == r1.train
    assert manifest["counts"]["eval"] == len(_read(folder / "eval.jsonl")) == r1.eval
    # The invented 600元 + page reference is removed and counted; the non-JSON reply too.
    assert manifest["filters"]["ungrounded_number"] >= 1
    assert manifest["filters"]["teacher_unparseable"] == 1
    routes = {**manifest["counts"]["per_route"]["train"]}
    for k, v in manifest["counts"]["per_route"]["eval"].items():
        routes[k] = routes.get(k, 0) + v
    assert set(routes) == {"glossary", "fact", "rag", "refuse"}

    rows = _read(folder / "train.jsonl") + _read(folder / "eval.jsonl")
    for row in rows:
        roles = [m["role"] for m in row["messages"]]
        assert roles == ["system", "user", "assistant"]
        answer = json.loads(row["messages"][-1]["content"])
        # the route first (scored in one pass), then the terms; the rewrite is the terminology layer's
        assert list(answer) == ["route", "terms"] and answer["route"] == row["meta"]["route"]
    rag = [r for r in rows if r["meta"]["kind"] == "teacher_rag"]
    assert [r["meta"]["question"] for r in rag] == ["年假需要提前多久申请，由谁审批？"]

    # Second run: every teacher answer comes from the cache; same split, new version.
    r2 = distill(idx, tmp_path, seed=0, progress=False, settings=settings)
    assert sum(CountingTeacher.calls.values()) == first_calls and r2.teacher_calls == 0
    assert r2.teacher_cache_hits == 6 and r2.version == "v0002"
    assert (tmp_path / "datasets" / "v0002" / "train.jsonl").read_bytes() == (folder / "train.jsonl").read_bytes()
    assert (tmp_path / "datasets" / ".teacher_cache.jsonl").is_file()


def test_key_rotation_with_cooldown_on_rate_limit(monkeypatch):
    from finetune.teacher import RotatingTeacher, build_teacher
    from config.settings import Settings

    monkeypatch.setenv("KB_LLM__BACKEND", CountingTeacher.name)
    monkeypatch.setenv("KB_LLM_API_KEY", "key-a,key-b")
    CountingTeacher.calls.clear()
    CountingTeacher.rate_limited_keys = {"key-a"}
    now = [100.0]
    slept: list[float] = []
    teacher = build_teacher(Settings(), cooldown_s=30.0)
    assert isinstance(teacher, RotatingTeacher)
    assert [g.api_key for g in teacher.generators] == ["key-a", "key-b"]
    teacher.clock, teacher.sleep = (lambda: now[0]), (lambda s: (slept.append(s), now.__setitem__(0, now[0] + s)))
    msg = [{"role": "user", "content": "资料：年假\n\nx"}]
    try:
        teacher.generate(msg, max_tokens=10, temperature=0)  # key-a: 429 -> key-b answers
        assert CountingTeacher.calls == {"key-a": 1, "key-b": 1}
        assert teacher.resting_until[0] == 130.0 and teacher.rate_limited == 1
        teacher.generate(msg, max_tokens=10, temperature=0)  # key-a still resting: key-b again
        assert CountingTeacher.calls == {"key-a": 1, "key-b": 2}
        CountingTeacher.rate_limited_keys = set()
        now[0] = 131.0  # cooldown over: key-a is used again
        teacher.generate(msg, max_tokens=10, temperature=0)
        assert CountingTeacher.calls["key-a"] == 2
        # Both keys limited: it waits for the first cooldown to end rather than failing at once.
        CountingTeacher.rate_limited_keys = {"key-a", "key-b"}
        with pytest.raises(GenerationError, match="rate-limited"):
            teacher.max_wait_s = 45.0
            teacher.generate(msg, max_tokens=10, temperature=0)
        assert slept and slept[0] == pytest.approx(30.0)
    finally:
        CountingTeacher.rate_limited_keys = set()


def test_non_rate_limit_errors_are_not_swallowed():
    from finetune.teacher import RotatingTeacher

    class Broken(Generator):
        name = "broken-test"

        def generate(self, messages, *, max_tokens, temperature, stop=None):  # type: ignore[override]
            raise GenerationError("model file is corrupt")

    with pytest.raises(GenerationError, match="corrupt"):
        RotatingTeacher([Broken(), Broken()]).generate([{"role": "user", "content": "x"}], max_tokens=1,
                                                       temperature=0)


def test_registered_teacher_goes_through_the_real_registry(monkeypatch):
    from config.settings import Settings

    monkeypatch.setenv("KB_LLM__BACKEND", CountingTeacher.name)
    assert isinstance(create_generator(Settings()), CountingTeacher)


def test_rows_carry_the_serving_evidence_and_routes_are_capped(tmp_path, demo_settings, demo_index):
    """On the real demo index: every user turn is the question plus the evidence the LoRA
    router sees when serving (same engine retrieval), and no route exceeds the cap."""
    from config.settings import Settings
    from finetune.distill import distill
    from router.engine import Engine
    from router.llm.extractive import ExtractiveGenerator
    from router.lora_format import evidence_from_signals, router_user
    from router.routes import default_routes

    settings = Settings(home=tmp_path)
    report = distill(demo_index, tmp_path, progress=False, use_teacher=False, settings=settings, max_per_route=12)
    folder = tmp_path / "datasets" / report.version
    rows = _read(folder / "train.jsonl") + _read(folder / "eval.jsonl")
    per_route = {}
    for r in rows:
        per_route[r["meta"]["route"]] = per_route.get(r["meta"]["route"], 0) + 1
    assert per_route and max(per_route.values()) <= 12 and report.filters["route_cap"] > 0
    assert "refuse" in per_route and "glossary" in per_route and "fact" in per_route
    engine = Engine(demo_settings, demo_index, generator=ExtractiveGenerator())
    routes = default_routes(demo_settings.router)
    for r in rows[:6]:
        q = r["meta"]["question"]
        choice, signals = engine.decide(q)
        want = router_user(signals.question, **evidence_from_signals(signals))
        assert r["messages"][1]["content"] == want
        # the evidence the model reads, never the rule router's verdict
        assert "覆盖：" in want and "相关度：" in want and "规则" not in want
    assert all(r["meta"]["kind"] != "absent_topic" or r["meta"]["route"] == "refuse" for r in rows)
