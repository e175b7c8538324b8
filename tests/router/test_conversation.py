"""Follow-ups resolved into standalone questions: the resolver, the engine, and every interface."""

from __future__ import annotations

import json

import httpx
import pytest
from fakes.servers import AppServer

from router.conversation import is_followup, resolve, resolve_followup

FIRST = "一类城市出差住宿每晚最多能报多少？"
HISTORY = [{"role": "user", "content": FIRST}, {"role": "assistant", "content": "一类城市C类员工每晚不超过480元。"}]


@pytest.mark.parametrize("question,previous,standalone", [
    ("那二类城市呢？", FIRST, "二类城市出差住宿每晚最多能报多少？"),
    ("如果是夜班呢？", "白班护士交接班要提前几分钟到岗？", "夜班护士交接班要提前几分钟到岗？"),
    ("那副主任医师呢？", "主任医师的查房记录每周至少几次？", "副主任医师的查房记录每周至少几次？"),
    ("What about L5?", "What's the laptop budget for L3 engineers?", "What's the laptop budget for L5 engineers?"),
    ("and for SEV2?", "What is the response time for a SEV1 incident?", "What is the response time for a SEV2 incident?"),
    ("要是请10天呢？", "请3天假要谁批？", "请10天假要谁批？"),
])
def test_a_slot_replaces_the_span_of_the_same_shape(question, previous, standalone):
    r = resolve_followup(question, previous)
    assert r.followup and r.how == "slot"
    assert r.standalone == standalone


def test_a_new_predicate_is_joined_to_the_earlier_question():
    r = resolve_followup("要谁批？", "出差5天要提前几天申请？")
    assert r.followup and r.how == "joined"
    assert r.standalone.startswith("出差5天要提前几天申请") and r.standalone.endswith("要谁批？")


@pytest.mark.parametrize("question", ["一类城市出差住宿每晚最多能报多少？", "婚假是几天？",
                                      "How many PTO days do new hires get?"])
def test_a_question_that_names_its_topic_is_not_a_followup(question):
    assert not is_followup(question, has_topic=lambda q: True)


def test_a_chain_of_followups_keeps_its_subject():
    history = [{"role": "user", "content": FIRST}, {"role": "assistant", "content": "480元。"},
               {"role": "user", "content": "那二类城市呢？"}, {"role": "assistant", "content": "360元。"}]
    assert resolve("三类城市呢？", history).standalone == "三类城市出差住宿每晚最多能报多少？"


def test_without_history_nothing_is_rewritten():
    r = resolve("那二类城市呢？", [])
    assert not r.followup and r.standalone == "那二类城市呢？"


# --- the engine -----------------------------------------------------------------------------
def test_engine_answers_the_standalone_question(extractive_engine):
    a = extractive_engine.answer("那二类城市呢？", HISTORY).to_dict()
    assert a["standalone_question"] == "二类城市出差住宿每晚最多能报多少？"
    assert a["route"] in ("fact", "rag")
    assert "360" in a["answer"] and "二类城市" in a["answer"]


def test_without_history_the_same_words_are_not_rewritten(extractive_engine):
    a = extractive_engine.answer("那二类城市呢？").to_dict()
    assert a["standalone_question"] == ""


# --- every interface passes the conversation --------------------------------------------------
@pytest.fixture(scope="module")
def base_url(demo_settings, extractive_engine):
    from api.main import create_app

    with AppServer(create_app(demo_settings, engine=extractive_engine)) as url:
        yield url


def test_openai_messages_carry_the_conversation(base_url):
    messages = [*HISTORY, {"role": "user", "content": "那二类城市呢？"}]
    r = httpx.post(f"{base_url}/v1/chat/completions", json={"messages": messages}, timeout=60)
    assert r.status_code == 200, r.text
    kb = r.json()["kb"]
    assert kb["standalone_question"] == "二类城市出差住宿每晚最多能报多少？"
    assert "360" in r.json()["choices"][0]["message"]["content"]


def test_native_ask_history_carries_the_conversation(base_url):
    r = httpx.post(f"{base_url}/api/ask", json={"question": "那二类城市呢？", "history": HISTORY}, timeout=60)
    assert r.status_code == 200, r.text
    assert r.json()["standalone_question"] == "二类城市出差住宿每晚最多能报多少？"


def test_cli_batch_history(kb_env, tmp_path):
    from api.cli import main

    inp, out = tmp_path / "q.jsonl", tmp_path / "a.jsonl"
    inp.write_text(json.dumps({"id": "f1", "question": "那二类城市呢？", "history": HISTORY}, ensure_ascii=False)
                   + "\n", encoding="utf-8")
    assert main(["ask", "--batch", str(inp), "--out", str(out)]) == 0
    row = json.loads(out.read_text(encoding="utf-8").strip())
    assert row["id"] == "f1" and row["standalone_question"] == "二类城市出差住宿每晚最多能报多少？"


def test_langchain_chat_model_history(extractive_engine):
    from langchain_core.messages import AIMessage, HumanMessage

    from api.langchain import KBChatModel

    msg = KBChatModel(engine=extractive_engine).invoke(
        [HumanMessage(FIRST), AIMessage("480元。"), HumanMessage("那二类城市呢？")])
    assert msg.response_metadata["kb"]["standalone_question"] == "二类城市出差住宿每晚最多能报多少？"


def test_agent_tool_reads_the_conversation_qwen_agent_passes(extractive_engine):
    pytest.importorskip("qwen_agent")
    from api.agent import kb_tool_class, tool_config

    tool = kb_tool_class()(tool_config(engine=extractive_engine))
    messages = [*HISTORY, {"role": "user", "content": "那二类城市呢？"}]
    out = json.loads(tool.call({"question": "那二类城市呢？"}, messages=messages))
    assert out["standalone_question"] == "二类城市出差住宿每晚最多能报多少？"
