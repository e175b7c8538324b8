"""Number verification: direct support, derivations, question-only numbers, dates, batch handling."""

from __future__ import annotations

import doctest
import json

import pytest

import router.verifier as verifier_mod
from knowledge.errors import ValidationError
from router.verifier import Verification, Verifier, unsupported_text, verify_batch, verify_file

POLICY = "住宿标准为每晚600元，旺季可上浮30%。出差补助每天200元。一线城市交通费上限1200元，二线城市450元。"


@pytest.fixture(scope="module")
def v() -> Verifier:
    return Verifier()


def supported(ver: Verification) -> dict[str, bool]:
    return {n.text: n.supported for n in ver.numbers}


def test_doctests() -> None:
    assert doctest.testmod(verifier_mod).failed == 0


def test_no_numbers_is_not_applicable(v: Verifier) -> None:
    ver = v.check("请按公司规定办理报销[1]。", [POLICY])
    assert ver.status == "not_applicable" and ver.numbers == []


@pytest.mark.parametrize("answer", ["上限为3万元。", "上限为30000元。", "上限为30,000 元。", "上限为三万元。"])
def test_spellings_of_the_same_amount(v: Verifier, answer: str) -> None:
    assert v.check(answer, ["采购上限为人民币30,000元。"]).status == "verified"


def test_chinese_numerals_and_percent(v: Verifier) -> None:
    passages = ["年度预算五百万元，绩效系数为百分之三十，约1.5万人受益。"]
    assert v.check("预算500万元，系数30%，涉及15000人。", passages).status == "verified"


def test_whole_numbers_only(v: Verifier) -> None:
    ver = v.check("上限为70元。", ["上限为170元。"])
    assert ver.status == "flagged" and ver.unsupported[0].text == "70元"
    assert v.check("系数为1.5。", ["系数为15。"]).status == "flagged"


def test_percentage_uplift_is_derived(v: Verifier) -> None:
    ver = v.check("旺季住宿上限为780元。", [POLICY])
    assert ver.status == "verified"
    assert ver.numbers[0].detail == "600元 × (1 + 30%)"
    assert v.check("淡季下浮后为420元。", ["标准600元，淡季下浮30%。"]).status == "verified"
    assert v.check("淡季为180元。", ["标准600元，淡季按30%计。"]).status == "verified"


def test_rate_times_count_is_derived(v: Verifier) -> None:
    ver = v.check("出差3天，补助共600元。", ["出差补助每天200元。", "本次出差3天。"])
    assert ver.status == "verified"
    # unanchored within one passage too
    assert v.check("补助共600元。", ["出差3天，补助每天200元。"]).status == "verified"


def test_sum_difference_ratio_need_the_answer_to_name_operands(v: Verifier) -> None:
    ok = v.check("一线城市1200元，二线城市450元，相差750元。", [POLICY])
    assert ok.status == "verified"
    assert v.check("机票1200元加住宿600元，共1800元。", [POLICY]).status == "verified"
    assert v.check("450元是1200元的37.5%。", [POLICY]).status == "verified"
    # the same difference without naming the operands is a mix-up, not a derivation
    assert v.check("二线城市交通费上限为750元。", [POLICY]).status == "flagged"


def test_unrelated_number_is_flagged(v: Verifier) -> None:
    ver = v.check("住宿标准为每晚650元。", [POLICY])
    assert ver.status == "flagged"
    assert unsupported_text(ver).startswith("以下数字在资料中找不到依据：650元")


def test_question_numbers_are_not_evidence(v: Verifier) -> None:
    ver = v.check("出差5天可报销。", [POLICY], question="出差5天可以报销吗？")
    assert ver.status == "flagged"
    assert ver.numbers[0].detail == "only in the question"
    assert "只出现在问题中" in unsupported_text(ver)
    assert "only in the question" in unsupported_text(ver, lang="en")


def test_citation_markers_and_ordinals_are_ignored(v: Verifier) -> None:
    ans = "1. 住宿标准为每晚600元[1]。\n2. 补助每天200元[2]。"
    ver = v.check(ans, [POLICY])
    assert ver.status == "verified"
    assert [n.text for n in ver.numbers] == ["600元", "200元"]


def test_range_ends_count_as_evidence(v: Verifier) -> None:
    passages = ["审批需3-5个工作日。"]
    assert v.check("最长需要5个工作日。", passages).status == "verified"
    assert v.check("需要3至5个工作日。", passages).status == "verified"
    assert v.check("需要3至6个工作日。", passages).status == "flagged"


def test_dates(v: Verifier) -> None:
    assert v.check("自2024年3月1日起施行。", ["本办法自2024-03-01起施行。"]).status == "verified"
    assert v.check("自2024年3月起施行。", ["本办法自2024年3月1日起施行。"]).status == "verified"
    assert v.check("自2024年3月1日起施行。", ["本办法自2024年3月起施行。"]).status == "flagged"
    assert v.check("自2023年3月1日起施行。", ["本办法自2024年3月1日起施行。"]).status == "flagged"


def test_english_dates_years_and_money(v: Verifier) -> None:
    passages = ["The 2020 NBA draft was held on November 18, 2020.",
                "Tesla reported $10.4 billion in revenue in Q1 2021.",
                "Oct 19, 2021 ... Both phones are up for pre-order starting today, October 19."]
    assert v.check("The answer is Nov. 18, 2020.", passages).status == "verified"
    assert v.check("The answer is 18 November 2020.", passages).status == "verified"
    assert v.check("The answer is May 8, 2020.", passages).status == "flagged"
    assert v.check("It happened in 2021.", passages).status == "verified"
    assert v.check("The answer is $10.4 billion.", passages).status == "verified"
    assert v.check("The answer is $1.04 billion.", passages).status == "flagged"
    assert v.check("The answer is October 19, 2021.", passages[2:]).status == "verified"
    # a year-less passage date supports a dated claim only when that year is in the passage
    assert v.check("The answer is October 19, 2011.", passages[2:]).status == "flagged"


def test_english_counts_scales_and_number_words(v: Verifier) -> None:
    passages = ["He threw seven touchdowns in 2021 before 3 million viewers; the deal was worth $1.2 billion."]
    assert v.check("He threw 7 touchdowns.", passages).status == "verified"
    assert v.check("About 3,000,000 people watched.", passages).status == "verified"
    assert v.check("The deal was $1,200 million.", passages).status == "verified"
    assert v.check("He threw 8 touchdowns.", passages).status == "flagged"


def test_rounding(v: Verifier) -> None:
    assert v.check("Revenue was $6.04 billion.", ["Revenue was $6,036 million."]).status == "verified"
    assert v.check("Revenue was $6 billion.", ["Revenue was $6,036 million."]).status == "verified"
    assert v.check("Revenue was $7 billion.", ["Revenue was $6,036 million."]).status == "flagged"
    assert v.check("约1.5万元。", ["合计14,800元。"]).status == "verified"
    assert v.check("1.5万元。", ["合计14,800元。"]).status == "flagged"


def test_passage_ids_become_evidence(v: Verifier) -> None:
    ver = v.check("每晚600元。", [("c-0001", "无关内容"), ("c-0002", POLICY)])
    assert ver.numbers[0].evidence == "c-0002"
    d = ver.to_dict()
    assert d["status"] == "verified"
    assert d["numbers"][0] == {"text": "600元", "value": 600, "unit": "元", "supported": True, "evidence": "c-0002"}


def test_bad_passages_raise_validation_error(v: Verifier) -> None:
    with pytest.raises(ValidationError, match="passage 1"):
        v.check("600元", [42])  # type: ignore[list-item]


def test_verify_batch_good_and_bad_lines() -> None:
    items = [
        {"id": 1, "answer": "旺季780元。", "passages": [POLICY]},
        json.dumps({"id": "q2", "answer": "每晚650元。", "passages": [POLICY]}, ensure_ascii=False),
        {"id": 3, "answer": "请咨询财务部。", "passages": []},
        '{"id": 4, "answer": "600元"',                       # truncated JSON
        {"id": 5, "passages": [POLICY]},                      # no answer
        {"id": 6, "answer": "600元", "passages": "not a list"},
        {"id": 7, "answer": "600元", "passages": [None]},
        ["not", "an", "object"],
        "",                                                   # blank line: skipped
        {"id": 9, "answer": "600元", "passages": [{"id": "p9", "text": POLICY}]},
    ]
    out = list(verify_batch(items))
    assert [(r["id"], r["status"]) for r in out] == [
        (1, "verified"), ("q2", "flagged"), (3, "not_applicable"), (None, "error"), (5, "error"),
        (6, "error"), (7, "error"), (None, "error"), (9, "verified")]
    assert out[0]["numbers"] == [{"text": "780元", "value": 780, "unit": "元", "supported": True}]
    assert out[3]["line"] == 4 and "invalid JSON" in out[3]["error"]
    assert out[4]["error"] == "line 5: missing field(s): answer"
    assert "passages must be a list" in out[5]["error"]
    assert "passage 1" in out[6]["error"]
    assert out[8]["id"] == 9


def test_verify_file(tmp_path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join([
        json.dumps({"id": "a", "answer": "每晚600元", "passages": [POLICY]}, ensure_ascii=False),
        "{oops",
        "",
    ]), encoding="utf-8")
    counts = verify_file(src, tmp_path / "out" / "o.jsonl")
    assert counts == {"verified": 1, "error": 1}
    lines = (tmp_path / "out" / "o.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(x)["status"] for x in lines] == ["verified", "error"]


def test_bare_passage_numbers_do_not_shift_amounts(v: Verifier) -> None:
    passages = ["住宿每晚600元，共有50个房间，楼层编号50。"]
    # 650 = 600 + 50 would need a bare count added to an amount: not a derivation
    assert v.check("住宿600元，餐补650元。", passages).status == "flagged"
    assert v.check("两晚共1200元。", ["住宿每晚600元。", "出差两晚。"]).status == "verified"
    assert v.check("按2倍计为1200元。", ["住宿每晚600元，节假日按2倍计。"]).status == "verified"


def test_amounts_summed_then_times_a_count(v: Verifier) -> None:
    passages = ["二类城市每人每天伙食补助100元，市内交通补助60元。", "例如出差按3天计算补助。"]
    ver = v.check("伙食补助每天100元、交通补助每天60元，3天合计480元。", passages)
    assert ver.status == "verified"
    assert ver.numbers[-1].detail == "(100元 + 60元) × 3天"
    # the count only the question gives is not evidence, so the restated 3天 stays unsupported
    ver = v.check("伙食补助每天100元、交通补助每天60元，3天合计480元。", passages[:1], question="出差3天能领多少？")
    assert ver.status == "flagged"
    assert [n.text for n in ver.unsupported] == ["3天", "480元"]
