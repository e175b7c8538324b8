"""Answering over caller-supplied passages through the engine's own rag path (no index)."""

from __future__ import annotations

import pytest

from knowledge.errors import KBError, ValidationError


@pytest.fixture(scope="module")
def passage_engine_extractive():
    from config.settings import Settings
    from router.llm.extractive import ExtractiveGenerator
    from router.passages import passage_engine

    # No KB_HOME and no index: the passages are all the engine gets.
    return passage_engine(Settings(), generator=ExtractiveGenerator())


def test_answers_from_the_given_passages_with_citations(passage_engine_extractive) -> None:
    from router.passages import answer_over_passages

    passages = ["公司食堂每天11:30开放。", "出差人员在一类城市的住宿标准为每晚600元。", "年假按工龄计算。"]
    ans = answer_over_passages(passage_engine_extractive, "一类城市出差住宿标准每晚多少钱？", passages,
                               sources=["a.md", "b.md", "c.md"])
    assert ans.route == "rag"
    assert "600元" in ans.answer
    assert ans.citations and ans.citations[0]["source"] == "b.md"
    assert ans.verification["status"] in ("verified", "corrected")


def test_ranking_is_by_cosine(passage_engine_extractive) -> None:
    from router.passages import rank_passages

    hits = rank_passages(passage_engine_extractive.index.embedder, "住宿标准",
                         ["Weather is nice today.", "住宿标准为每晚600元。"])
    assert hits[0].chunk.text == "住宿标准为每晚600元。"
    assert hits[0].score >= hits[1].score and hits[0].dense == hits[0].score


def test_bad_input(passage_engine_extractive) -> None:
    from router.passages import answer_over_passages

    with pytest.raises(ValidationError):
        answer_over_passages(passage_engine_extractive, "  ", ["x"])
    with pytest.raises(ValidationError):
        answer_over_passages(passage_engine_extractive, "问题？", ["x", "y"], sources=["only one"])
    with pytest.raises(KBError):
        passage_engine_extractive.index.search("anything")
