"""Rules read as rules in the answer path (router/conditions.py): the row whose condition holds,
not the one that shares the question's words; piecewise computations; direction conflicts; every
tier of a generic question. On the demo and on a second company's documents (the hospital)."""

from __future__ import annotations

import re

import pytest

from router.conditions import read_rules, facts_by_chunk


def _numbers(text: str) -> list[str]:
    return re.findall(r"\d+(?:\.\d+)?", text)


@pytest.mark.parametrize("question,figure,wrong", [
    ("员工工作满15年，年休假有几天？", "10天", "5天"),
    ("我工作满10年了，年休假几天？", "10天", "5天"),      # on the boundary: 已满10年 belongs to the second tier
    ("工作了二十一年，年休假能休几天？", "15天", "10天"),  # Chinese numerals
])
def test_the_tier_whose_condition_holds_answers(extractive_engine, question, figure, wrong):
    a = extractive_engine.answer(question)
    assert a.route == "fact" and a.reason.startswith("rule read: selected"), a.reason
    assert a.answer.startswith(figure), a.answer          # the figure first
    assert wrong not in a.answer.split("\n")[0]
    assert a.verification["status"] == "verified"


def test_a_generic_question_gets_every_tier(extractive_engine):
    a = extractive_engine.answer("年休假有几天？")
    assert a.route == "fact" and "all_rows" in a.reason
    for figure in ("5天", "10天", "15天"):
        assert figure in a.answer


@pytest.mark.parametrize("question,figure,others", [
    ("聘用合同签了2年，试用期最长多久？", "2个月", ("1个月", "6个月")),
    ("合同期限三个月以上不满一年的，试用期最多多长？", "1个月", ("2个月", "6个月")),
    ("签了5年的合同，试用期不超过多久？", "6个月", ("1个月", "2个月")),
])
def test_a_contract_length_band_selects_its_row(hospital_engine, question, figure, others):
    a = hospital_engine.answer(question)
    first = a.answer.split("\n")[0]
    assert figure in first, a.answer
    assert not any(o in first for o in others), a.answer


def test_a_piecewise_rule_is_computed_with_its_parts(hospital_engine):
    a = hospital_engine.answer("我在医院工作了一年零八个月，合同解除时经济补偿能拿几个月工资？")
    assert "computed" in a.reason, a.reason
    assert a.answer.startswith("按规定计算为2个月"), a.answer
    assert "每满1年支付1个月工资" in a.answer           # the rule it was computed from is quoted
    two = [n for n in a.verification["numbers"] if n["value"] == 2 and n["unit"] == "月"]
    assert two and two[0]["supported"] and "computed by the rule" in two[0]["detail"]


def test_a_maximum_asked_where_only_a_minimum_is_set(hospital_engine):
    a = hospital_engine.answer("试用期工资最高是转正工资的百分之多少？")
    assert "direction" in a.reason, a.reason
    assert "80%" in a.answer and "没有规定上限" in a.answer


def test_without_a_stated_quantity_no_row_is_selected(hospital_engine):
    """A question that states no quantity for the rule's condition never gets one tier as 'the' answer."""
    _, signals = hospital_engine.decide("试用期最长多久？")
    assert signals.ruled is None or signals.ruled.kind != "selected"


def test_no_evidence_no_reading():
    assert read_rules("工作满15年年假几天？", None, lambda cid: [], "zh") is None


def test_rule_facts_are_indexed_by_chunk(demo_index):
    facts_of = facts_by_chunk(demo_index)
    with_rules = [f for f in demo_index.facts if f.rule]
    assert with_rules, "the index carries parsed rules"
    assert all(f in facts_of(f.chunk_id) for f in with_rules[:20])


def test_a_follow_up_about_an_uncovered_topic_is_refused(extractive_engine):
    """The previous turn's leave rules must not answer a kind of leave the documents never name."""
    history = [{"role": "user", "content": "婚假有几天？"}, {"role": "assistant", "content": "婚假3天。"}]
    a = extractive_engine.answer("那宠物假呢？", history)
    assert a.route == "refuse", (a.answer, a.reason)
    covered = extractive_engine.answer("那产假呢？", history)
    assert covered.route != "refuse"
