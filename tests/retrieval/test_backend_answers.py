"""Answers over each vector backend: the engine (a black box, extractive generator) answers the
demo questions on Milvus Lite as it does on FAISS — same route, same figures, same citations."""

from __future__ import annotations

import re

import pytest

QUESTIONS = [
    ("AM是什么意思？", "glossary", None),
    ("单笔采购多少钱以上要签采购协议？", "fact", "3000"),
    ("密码最短要几位？", "fact", "12"),
    ("婚假是几天？", "fact", "3"),
    ("出差住宿超标了怎么办？", "rag", None),
    ("公司的股票代码是多少？", "refuse", None),
]


@pytest.fixture(scope="module")
def engines(demo_settings, demo_index, milvus_demo_home, milvus_demo_index):
    from router.engine import Engine
    from router.llm.extractive import ExtractiveGenerator
    from tests.conftest import milvus_settings

    return {
        "faiss": Engine(demo_settings, demo_index, generator=ExtractiveGenerator()),
        "milvus": Engine(milvus_settings(milvus_demo_home), milvus_demo_index, generator=ExtractiveGenerator()),
    }


@pytest.mark.parametrize("question,route,number", QUESTIONS)
def test_milvus_answers_as_faiss_does(engines, question, route, number):
    answers = {name: engine.answer(question).to_dict() for name, engine in engines.items()}
    for name, a in answers.items():
        assert a["route"] == route, (name, a)
        if number:
            assert re.search(rf"(?<!\d){number}(?!\d)", a["answer"].replace(",", "")), (name, a)
        if route in ("fact", "rag"):
            assert a["citations"] and a["verification"]["status"] in ("verified", "not_applicable", "corrected")
    faiss, milvus = answers["faiss"], answers["milvus"]
    assert milvus["answer"] == faiss["answer"]
    assert [c["chunk_id"] for c in milvus["citations"]] == [c["chunk_id"] for c in faiss["citations"]]
