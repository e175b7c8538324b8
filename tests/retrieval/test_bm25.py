"""BM25 against a hand-computed reference, and Chinese tokenisation with jieba."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest

from retrieval.bm25 import BM25Index, tokenize


def test_scores_match_hand_computed_okapi_bm25():
    # docs: d0 = p q r, d1 = p p d, d2 = q e   -> N = 3, avgdl = 8/3, k1 = 1.5, b = 0.75
    index = BM25Index().build([100, 101, 102], tokens=[["p", "q", "r"], ["p", "p", "d"], ["q", "e"]])
    idf_p = math.log(1 + (3 - 2 + 0.5) / (2 + 0.5))  # df(p) = 2
    idf_e = math.log(1 + (3 - 1 + 0.5) / (1 + 0.5))  # df(e) = 1
    norm3 = 1.5 * (1 - 0.75 + 0.75 * 3 / (8 / 3))  # k1 * (1 - b + b |d| / avgdl), |d| = 3
    norm2 = 1.5 * (1 - 0.75 + 0.75 * 2 / (8 / 3))
    expected = {
        100: idf_p * 1 * 2.5 / (1 + norm3),
        101: idf_p * 2 * 2.5 / (2 + norm3),
        102: idf_e * 1 * 2.5 / (1 + norm2),
    }
    hits = index.search("p e", 10)
    assert [i for i, _ in hits] == sorted(expected, key=lambda i: -expected[i])
    for doc_id, score in hits:
        assert score == pytest.approx(expected[doc_id], rel=1e-5)
    # A repeated query word counts once; unknown words and k limit behave.
    assert dict(index.search("p p e zzz", 10)) == pytest.approx(dict(hits))
    assert len(index.search("p e", 2)) == 2
    assert index.search("zzz", 5) == []
    np.testing.assert_allclose(index.score_ids("p", [101, 102, 999]), [expected[101], 0, 0], rtol=1e-5)


def test_tokenize_chinese_latin_and_numbers():
    tokens = tokenize("ＡＭ负责差旅费报销，每晚不超过10,000元（Trip Policy v2.0）！")
    assert tokens[0] == "am"  # full-width folded, lower-cased
    assert {"差旅", "差旅费", "报销", "10000", "元", "trip", "policy", "v2.0"} <= set(tokens)
    assert not {"，", "（", "）", "！", " "} & set(tokens)
    assert logging.getLogger("jieba").level >= logging.WARNING  # initialised quietly


def test_chinese_search_ranks_the_relevant_chunk_first():
    texts = ["员工出差的差旅费报销标准", "年假天数按照工龄计算", "会议室预订需要提前一天"]
    index = BM25Index().build([0, 1, 2], texts)
    assert index.search("差旅报销", 3)[0][0] == 0
    assert index.search("年假怎么算", 3)[0][0] == 1


def test_save_load_roundtrip_and_tokens(tmp_path):
    texts = ["差旅费报销标准 travel", "年假 annual leave leave", "会议室"]
    index = BM25Index().build([5, 6, 7], texts)
    index.save(tmp_path / "bm25")
    loaded = BM25Index.load(tmp_path / "bm25")
    for query in ("差旅 报销", "annual leave", "会议室 travel"):
        assert dict(loaded.search(query, 3)) == pytest.approx(dict(index.search(query, 3)))
    assert sorted(loaded.tokens_of(6)) == sorted(tokenize(texts[1]))
    rebuilt = BM25Index().build([5, 6, 7], tokens=[loaded.tokens_of(i) for i in (5, 6, 7)])
    assert dict(rebuilt.search("annual leave", 3)) == pytest.approx(dict(index.search("annual leave", 3)))


def test_empty_index():
    index = BM25Index().build([], [])
    assert len(index) == 0 and index.search("anything", 3) == []


def test_stopwords_are_dropped_but_abbreviations_kept():
    assert tokenize("Who is the AM?") == ["am"]
    assert tokenize("IT部门的电脑") == ["it", "部门", "电脑"]
    # Grammar words shared with an English passage must not make it a BM25 hit.
    index = BM25Index().build([1, 2], ["This is one of the rules, and it is new.", "差旅 travel policy"])
    assert [i for i, _ in index.search("What is the travel policy of the company?", 5)] == [2]
