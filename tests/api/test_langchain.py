"""LangChain integration through LangChain's own interfaces (invoke, ainvoke, LCEL, callbacks)
over the real demo index and the engine with the extractive generator."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.documents import Document
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.runnables import RunnableLambda

from api.langchain import KBChatModel, KBRetriever, format_documents

REPO = Path(__file__).resolve().parents[2]
HOTEL = "出差住宿标准是多少？"


class _Recorder(BaseCallbackHandler):
    """Records the retriever callbacks LangChain fires."""

    def __init__(self) -> None:
        self.events: list[str] = []

    def on_retriever_start(self, serialized: Any, query: str, **kwargs: Any) -> None:
        self.events.append(f"start:{query}")

    def on_retriever_end(self, documents: Any, **kwargs: Any) -> None:
        self.events.append(f"end:{len(documents)}")


def test_retriever_invoke_returns_documents_matching_the_index(demo_index) -> None:
    retriever = KBRetriever(index=demo_index, k=3)
    docs = retriever.invoke(HOTEL)
    hits = demo_index.search(HOTEL, k=3)
    assert len(docs) == 3 and all(isinstance(d, Document) for d in docs)
    assert [d.metadata["chunk_id"] for d in docs] == [h.chunk.chunk_id for h in hits]
    first = docs[0]
    assert first.page_content == hits[0].chunk.text
    assert set(first.metadata) == {"source", "page", "chunk_id", "score", "quote"}
    assert first.metadata["score"] == pytest.approx(hits[0].score)
    assert first.metadata["source"] == hits[0].chunk.source
    assert first.metadata["quote"] == hits[0].citation()["quote"]
    assert any("住宿" in d.page_content for d in docs)


def test_retriever_fires_langchain_callbacks(extractive_engine) -> None:
    recorder = _Recorder()
    docs = KBRetriever(engine=extractive_engine, k=2).invoke(HOTEL, config={"callbacks": [recorder]})
    assert recorder.events == [f"start:{HOTEL}", "end:2"]
    assert len(docs) == 2


async def test_retriever_ainvoke_equals_invoke(demo_index) -> None:
    retriever = KBRetriever(index=demo_index, k=4)
    adocs = await retriever.ainvoke("What is the hotel limit for business trips?")
    docs = retriever.invoke("What is the hotel limit for business trips?")
    assert [d.metadata["chunk_id"] for d in adocs] == [d.metadata["chunk_id"] for d in docs]
    assert len(adocs) == 4


def test_lcel_chain_formats_passages(demo_index) -> None:
    chain = KBRetriever(index=demo_index, k=2) | RunnableLambda(format_documents)
    text = chain.invoke(HOTEL)
    assert text.startswith("[1] (") and "\n\n[2] (" in text
    assert "住宿" in text


def test_k_must_be_positive(demo_index) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        KBRetriever(index=demo_index, k=0)


def test_chat_model_answers_from_the_knowledge_base(extractive_engine) -> None:
    model = KBChatModel(engine=extractive_engine)
    msg = model.invoke("AM是什么意思？")
    assert isinstance(msg, AIMessage)
    assert "客户经理" in msg.content
    kb = msg.response_metadata["kb"]
    assert kb["route"] == "glossary" and kb["answer"] == msg.content
    assert kb["terms"][0]["term"] == "AM"
    assert kb["citations"] and kb["verification"]["status"]


def test_chat_model_uses_the_last_human_turn_and_history(extractive_engine) -> None:
    model = KBChatModel(engine=extractive_engine)
    msg = model.invoke([HumanMessage("你好"), AIMessage("你好！"), HumanMessage("What does PO stand for?")])
    kb = msg.response_metadata["kb"]
    assert kb["terms"] and kb["terms"][0]["term"] == "PO"


async def test_chat_model_ainvoke(extractive_engine) -> None:
    msg = await KBChatModel(engine=extractive_engine).ainvoke("AM是什么意思？")
    assert "客户经理" in msg.content


def test_chat_model_without_a_question_is_an_error(extractive_engine) -> None:
    from knowledge.errors import ValidationError

    with pytest.raises(ValidationError, match="human message"):
        KBChatModel(engine=extractive_engine).invoke([AIMessage("hello")])


def test_importing_api_does_not_import_langchain_or_qwen_agent() -> None:
    code = "import sys, api, api.agent; print(sorted(m for m in ('langchain_core', 'qwen_agent') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
