"""Rules read as rules: conditions, tiers, table bands and piecewise rules, and the quantities of questions.

The rule texts are general Chinese labour and company-policy phrasing written for these tests.
"""

from __future__ import annotations

import doctest

import pytest

import knowledge.rules as rules_mod
from knowledge.core.types import Chunk, Fact
from knowledge.facts import extract_facts
from knowledge.rules import (Bound, QuestionReading, RuleRow, compute, direction_conflict, parse_rules,
                             read_question, rows_of_facts, select_rows, to_base)

M = "duration_months"
LEAVE = "职工累计工作已满1年不满10年的，年休假5天；已满10年不满20年的，年休假10天；已满20年的，年休假15天。"
PROBATION = ("劳动合同期限三个月以上不满一年的，试用期不得超过一个月；一年以上不满三年的，不得超过二个月；"
             "三年以上固定期限和无固定期限的，不得超过六个月。")
SEVERANCE = "每满一年计一个月；六个月以上不满一年的，按一年计算；不满六个月的，计半个月。"
SEVERANCE_TWO_SENTENCES = ("离职补偿按在本单位工作的年限，每满一年支付一个月工资。六个月以上不满一年的，按一年计算；"
                           "不满六个月的，支付半个月工资。")
SIX_MONTHS = "入职未满6个月的，餐补每月200元；满6个月的，餐补每月300元。"
BANDS = ["工龄: 1-3年；交通补贴(元/月): 200；通讯补贴(元/月): 100",
         "工龄: 3-5年；交通补贴(元/月): 300；通讯补贴(元/月): 150",
         "工龄: 5年（含）以上；交通补贴(元/月): 500；通讯补贴(元/月): 200"]


def values(rows: list[RuleRow]) -> list[str]:
    return [r.value.text for r in rows if r.value is not None]


def pick(rules_text: str | list[str], question: str) -> list[str]:
    texts = [rules_text] if isinstance(rules_text, str) else rules_text
    rows = [r for t in texts for r in parse_rules(t)]
    return values(select_rows(rows, read_question(question)))


def bounds(question: str) -> list[str]:
    return [str(b) for b in read_question(question).quantities]


def test_doctests() -> None:
    assert doctest.testmod(rules_mod).failed == 0


# --- parsing rules ------------------------------------------------------------------------------------
def test_one_tier_with_its_condition() -> None:
    (row,) = parse_rules("已满1年不满10年的，年休假5天")
    assert row.condition == Bound(12, True, 120, False, M)
    assert (row.subject, row.value.value, row.value.unit, row.direction) == ("年休假", 5, "天", "eq")
    assert row.condition_text == "已满1年不满10年的"


def test_two_tiers_in_one_sentence() -> None:
    rows = parse_rules("已满10年不满20年的，年休假10天；已满20年的，年休假15天")
    assert [r.condition for r in rows] == [Bound(120, True, 240, False, M), Bound(240, True, None, False, M)]
    assert values(rows) == ["10天", "15天"]


def test_floor_is_min() -> None:
    (row,) = parse_rules("加班工资不得低于正常工资的150%")
    assert (row.direction, row.value.value, row.value.unit, row.condition) == ("min", 150, "%", None)


@pytest.mark.parametrize("text", ["单次报销不得超过3000元", "单次报销最多3000元", "单次报销不超过3000元",
                                  "单次报销3000元以内", "单次报销上限3000元"])
def test_caps_are_max(text: str) -> None:
    (row,) = parse_rules(text)
    assert (row.direction, row.value.value) == ("max", 3000)


def test_two_floors_share_their_subject() -> None:
    rows = parse_rules("试用期工资不得低于本岗位最低档工资的80%或者不得低于合同约定工资的80%")
    assert [(r.subject, r.direction, r.condition) for r in rows] == [("试用期工资", "min", None)] * 2


def test_condition_without_comma() -> None:
    rows = parse_rules("年休假天数：满1年不满10年的5天；满10年不满20年的10天；满20年的15天")
    assert [str(r.condition) for r in rows] == [f"[12, 120) {M}", f"[120, 240) {M}", f"[240, inf) {M}"]
    assert values(rows) == ["5天", "10天", "15天"]


def test_plain_statement_is_eq() -> None:
    (row,) = parse_rules("婚假为3天")
    assert (row.subject, row.direction, row.condition) == ("婚假", "eq", None)


def test_condition_carries_to_every_value_of_its_clause() -> None:
    rows = parse_rules("工作已满1年不满10年的，年休假5天，探亲假3天")
    assert values(rows) == ["5天", "3天"]
    assert all(r.condition == Bound(12, True, 120, False, M) for r in rows)
    assert [r.subject for r in rows] == ["年休假", "探亲假"]


def test_probation_band_table() -> None:
    rows = parse_rules(PROBATION)
    assert [str(r.condition) for r in rows] == [f"[3, 12) {M}", f"[12, 36) {M}", f"[36, inf) {M}"]
    assert [r.direction for r in rows] == ["max"] * 3
    assert [r.subject for r in rows] == ["试用期"] * 3          # carried to "不得超过二个月"


@pytest.mark.parametrize("text,want", [
    ("工龄10年（含）以上的，补贴500元", Bound(120, True, None, False, M)),
    ("工龄10年以上（含）的，补贴500元", Bound(120, True, None, False, M)),
    ("工龄10年以上(不含)的，补贴500元", Bound(120, False, None, False, M)),
    ("工龄不足3年的，补贴100元", Bound(None, False, 36, False, M)),
    ("工龄3年以下的，补贴100元", Bound(None, False, 36, True, M)),
    ("工龄超过5年的，补贴300元", Bound(60, False, None, False, M)),
    ("工龄至少5年的，补贴300元", Bound(60, True, None, False, M)),
    ("工龄1至3年的，补贴200元", Bound(12, True, 36, True, M)),
    ("工龄1-3年的，补贴200元", Bound(12, True, 36, True, M)),
    ("工龄十五年以上的，补贴800元", Bound(180, True, None, False, M)),
    ("出差30天以内的，补贴100元", Bound(None, False, 1, True, M)),
    ("工龄2个月以上至6个月的，补贴100元", Bound(2, True, 6, True, M)),
    ("工龄超过1至3年的，补贴100元", Bound(12, False, 36, True, M)),
])
def test_condition_words(text: str, want: Bound) -> None:
    (row,) = parse_rules(text)
    assert row.condition == want, text


def test_table_rows_band_column_is_the_condition() -> None:
    rows = parse_rules(BANDS[0])
    assert [(r.subject, r.value.value, r.value.unit) for r in rows] == [("交通补贴", 200, "元"), ("通讯补贴", 100, "元")]
    assert all(r.condition == Bound(12, True, 36, True, M) for r in rows)
    assert parse_rules(BANDS[2])[0].condition == Bound(60, True, None, False, M)


def test_pipe_table_row() -> None:
    rows = parse_rules("| 满1年不满10年 | 5天 | 病假累计2个月以上 |")
    assert [(str(r.condition), r.value.text) for r in rows[:1]] == [(f"[12, 120) {M}", "5天")]


def test_not_less_than_is_a_floor() -> None:
    (row,) = parse_rules("通道宽度不小于4米")
    assert row.direction == "min"


def test_calendar_days_are_not_durations() -> None:
    assert bounds("每年11月1日至11月20日之间请假") == []


def test_english_rule() -> None:
    (row,) = parse_rules("Employees with at least 5 years of service receive 15 days of annual leave.")
    assert row.condition == Bound(60, True, None, False, M)
    assert (row.value.value, row.value.unit) == (15, "天")


def test_rule_row_round_trip() -> None:
    for row in parse_rules(PROBATION) + parse_rules(SEVERANCE):
        assert RuleRow.from_dict(row.to_dict()) == row


# --- reading questions ---------------------------------------------------------------------------------
@pytest.mark.parametrize("question,want", [
    ("我已经满15年了", [f"[180, 180] {M}"]),
    ("工作了15年", [f"[180, 180] {M}"]),
    ("工作了十五年", [f"[180, 180] {M}"]),
    ("工作一年零八个月", [f"[20, 20] {M}"]),
    ("工作5年3个月", [f"[63, 63] {M}"]),
    ("合同三个月以上不满一年", [f"[3, 12) {M}"]),
    ("整整3年", [f"[36, 36] {M}"]),
    ("10年", [f"[120, 120] {M}"]),
    ("第11年", [f"[120, 132) {M}"]),
    ("工作半年", [f"[6, 6] {M}"]),
    ("工作一年半", [f"[18, 18] {M}"]),
    ("入职未满6个月", [f"(-inf, 6) {M}"]),
    ("15 years of service", [f"[180, 180] {M}"]),
    ("8 months", [f"[8, 8] {M}"]),
    ("2 years and 3 months", [f"[27, 27] {M}"]),
    ("more than 10 years", [f"(120, inf) {M}"]),
    ("工作了3周", [f"[0.7, 0.7] {M}"]),
    ("入职两年半", [f"[30, 30] {M}"]),
    ("工作了三年多", [f"(36, 48) {M}"]),
    ("工作满一年不满十年", [f"[12, 120) {M}"]),
    ("入职30天内", [f"(-inf, 1] {M}"]),
    ("2020年入职", []),                        # a calendar year, not 2020 years of service
    ("worked two years", [f"[24, 24] {M}"]),
    ("出差5天多少钱", [f"[{5 / 30:g}, {5 / 30:g}] {M}"]),   # 多少 asks: not "5 days and more"
    ("上半年入职的", []),
])
def test_question_quantities(question: str, want: list[str]) -> None:
    assert bounds(question) == want


@pytest.mark.parametrize("question,want", [
    ("试用期最长多久？", "max"), ("报销上限是多少", "max"), ("最多能报多少钱", "max"),
    ("What is the maximum probation?", "max"), ("at most how many days", "max"),
    ("最低工资是多少", "min"), ("至少要提前几天申请", "min"), ("What is the minimum wage?", "min"),
    ("年假有几天？", None),
    ("至少工作5年的人年假有几天", None),      # 至少 bounds the stated 5 years: it asks for nothing
])
def test_asked_direction(question: str, want: str | None) -> None:
    assert read_question(question).asked == want


def test_asked_units_come_from_the_lexicon() -> None:
    assert "天" in read_question("年假有几天？").asked_units


# --- selecting rows ------------------------------------------------------------------------------------
def test_fifteen_years_selects_ten_to_twenty() -> None:
    assert pick(LEAVE, "工作满15年，年假几天？") == ["10天"]
    assert pick(LEAVE, "工作了十五年，年假几天？") == ["10天"]


def test_exactly_ten_years_is_in_the_upper_band() -> None:
    assert pick(LEAVE, "工作整整10年，年假几天？") == ["10天"]
    assert pick(LEAVE, "工作9年，年假几天？") == ["5天"]
    assert pick(LEAVE, "工作20年") == ["15天"]


def test_ordinal_year() -> None:
    assert pick(LEAVE, "这是我工作的第11年，年假几天？") == ["10天"]
    assert pick(LEAVE, "工作第10年") == ["5天"]


def test_negation_full_vs_not_full() -> None:
    assert pick(SIX_MONTHS, "入职满6个月，餐补多少？") == ["300元"]
    assert pick(SIX_MONTHS, "入职未满6个月，餐补多少？") == ["200元"]
    assert pick(SIX_MONTHS, "入职不满6个月") == ["200元"]
    assert pick(SIX_MONTHS, "入职5个月") == ["200元"]


def test_cross_unit_comparison() -> None:
    rows = parse_rules("工作六个月以上的，可申请年假3天")
    assert values(select_rows(rows, read_question("工作了一年零八个月，能申请年假吗？"))) == ["3天"]
    assert select_rows(rows, read_question("工作了150天")) == []                  # 150 days = 5 months
    assert values(select_rows(rows, read_question("工作了200天"))) == ["3天"]     # 6.7 months
    assert values(select_rows(rows, read_question("工作了30周"))) == ["3天"]      # 7 months


def test_days_below_a_month_threshold() -> None:
    rows = parse_rules("工作六个月以上的，可申请年假3天")
    assert select_rows(rows, read_question("工作了四个月")) == []


def test_interval_question_must_fit_inside_a_row() -> None:
    assert pick(PROBATION, "合同期三个月以上不满一年的，试用期最长多久？") == ["一个月"]
    assert pick(LEAVE, "工作10年以上，年假几天？") == []       # spans two tiers: no single row holds


def test_probation_for_two_year_contract() -> None:
    assert pick(PROBATION, "签了2年的劳动合同，试用期最长多久？") == ["二个月"]
    assert pick(PROBATION, "两年期的合同试用期最多几个月") == ["二个月"]
    assert pick(PROBATION, "5年合同的试用期") == ["六个月"]
    assert pick(PROBATION, "合同期两个月") == []
    assert pick(PROBATION, "a 2 year contract: how long can probation be at most?") == ["二个月"]


def test_a_quantity_labelled_with_the_subject_is_not_a_condition() -> None:
    assert pick(PROBATION, "合同期2年，试用期3个月可以吗？") == ["二个月"]
    assert read_question("合同期2年，试用期3个月可以吗？").labels == ("合同期", "试用期")


def test_english_questions() -> None:
    assert pick(LEAVE, "I have 15 years of service, how many days of annual leave?") == ["10天"]
    assert pick(SIX_MONTHS, "I joined 8 months ago, what is the meal allowance?") == ["300元"]


def test_amounts_compare_only_with_amounts() -> None:
    assert pick(LEAVE, "工资3000元，年假几天？") == []
    rows = parse_rules("单笔采购金额在3000元以上的，审批时限为5个工作日")
    assert values(select_rows(rows, read_question("采购5000元要几天审批"))) == ["5个工作日"]
    assert select_rows(rows, read_question("工作5年")) == []


def test_somewhat_more_fits_inside_a_tier() -> None:
    assert pick(LEAVE, "工作了三年多，年假几天") == ["5天"]
    assert pick(LEAVE, "2008年入职，年假几天") == []


def test_no_quantity_selects_nothing() -> None:
    assert pick(LEAVE, "年假有几天？") == []


def test_table_band_edges() -> None:
    assert pick(BANDS, "工龄2年，交通补贴多少？")[:1] == ["200"]
    assert pick(BANDS, "工龄3年") == ["300", "150"]          # on the shared edge: the band starting there
    assert pick(BANDS, "工龄7年") == ["500", "200"]


# --- piecewise rules -----------------------------------------------------------------------------------
def test_piecewise_is_one_rule() -> None:
    rows = parse_rules(SEVERANCE)
    assert [r.piecewise["role"] for r in rows] == ["per", "remainder", "remainder"]
    assert len({id(r.piecewise["rule"]) for r in rows}) == 1
    rule = rows[0].piecewise["rule"]
    assert (rule["step"], rule["rate"], rule["unit"], len(rule["parts"])) == (12, 1, "月", 3)
    assert select_rows(rows, read_question("工作了8个月")) == []     # remainder rows are for compute


@pytest.mark.parametrize("question,want,roles", [
    ("工作了一年零八个月，补偿几个月？", 2.0, ["per", "remainder"]),
    ("工作5年3个月", 5.5, ["per", "remainder"]),
    ("工作整整3年", 3.0, ["per"]),
    ("工作了4个月", 0.5, ["per", "remainder"]),
    ("worked 2 years and 7 months", 3.0, ["per", "remainder"]),
])
def test_piecewise_computation(question: str, want: float, roles: list[str]) -> None:
    c = compute(parse_rules(SEVERANCE), read_question(question))
    assert c is not None and c.value == want and c.unit == "月"
    assert [r.piecewise["role"] for r in c.rows] == roles


def test_frequency_is_not_piecewise() -> None:
    rows = parse_rules("特种设备每3年复审1次")
    assert not any(r.piecewise for r in rows) and values(rows)[-1] == "1次"
    assert rows[-1].subject == "特种设备"
    rows = parse_rules("每工作一年计一个月；不满六个月的，计半个月")      # plain 每 with a remainder clause
    assert [r.piecewise["role"] for r in rows] == ["per", "remainder"]


def test_piecewise_over_two_sentences_from_one_row() -> None:
    rows = parse_rules(SEVERANCE_TWO_SENTENCES)
    assert rows[0].subject == "离职补偿"
    c = compute(rows[-1:], read_question("工作一年零八个月"))          # any one row carries the rule
    assert c is not None and c.value == 2.0


def test_no_piecewise_no_computation() -> None:
    assert compute(parse_rules(LEAVE), read_question("工作15年")) is None
    assert compute(parse_rules(SEVERANCE), read_question("年假几天")) is None


# --- direction ---------------------------------------------------------------------------------------------
def test_direction_conflict() -> None:
    floor = parse_rules("加班工资不得低于正常工资的150%")
    assert direction_conflict(read_question("加班工资最高能拿多少？"), floor)
    assert not direction_conflict(read_question("加班工资最低多少？"), floor)
    cap = parse_rules(PROBATION)
    assert direction_conflict(read_question("试用期最短多久？"), cap)
    assert not direction_conflict(read_question("试用期最长多久？"), cap)
    assert not direction_conflict(read_question("试用期多久？"), cap)
    assert not direction_conflict(read_question("What is the maximum?"), parse_rules("婚假为3天"))


# --- helpers and facts ---------------------------------------------------------------------------------------
def test_to_base_factors() -> None:
    assert to_base(parse_rules("年假为2周")[0].value)[0] == M
    assert to_base(parse_rules("审批需5个工作日")[0].value)[0] == "workdays"


def test_bound_contains_and_covers() -> None:
    b = Bound(12, True, 120, False, M)
    assert b.contains(12) and not b.contains(120) and not b.contains(11.9)
    assert b.covers(Bound(24, True, 36, False, M)) and not b.covers(Bound(24, True, 120, True, M))
    assert not b.covers(Bound.point(24, "money_cny"))
    assert QuestionReading((Bound.point(1, M),)).in_dim("money_cny") == []


def chunk(text: str) -> Chunk:
    return Chunk("c0", "制度.md", text, heading_path=["第三章 休假"], start=10)


def test_facts_carry_their_rule() -> None:
    facts = extract_facts([chunk(LEAVE)])
    rows = [RuleRow.from_dict(f.rule) for f in facts]
    assert [r.condition.low for r in rows] == [12, 120, 240]
    assert [r.value.text for r in rows] == ["5天", "10天", "15天"]
    assert all(f.values[-1].start == RuleRow.from_dict(f.rule).value.start for f in facts)   # document offsets


def test_facts_of_a_piecewise_rule_share_it() -> None:
    facts = extract_facts([chunk(SEVERANCE_TWO_SENTENCES)])
    assert all(f.rule and f.rule["piecewise"] for f in facts)
    c = compute([RuleRow.from_dict(facts[1].rule)], read_question("工作5年3个月"))
    assert c is not None and c.value == 5.5


def test_plain_facts_have_no_rule_and_old_records_load() -> None:
    (fact,) = extract_facts([chunk("婚假为3天。")])
    assert fact.rule is None
    d = fact.to_dict()
    del d["rule"]
    assert Fact.from_dict(d).rule is None
    assert Fact.from_dict({**d, "unknown_key": 1}).statement == "婚假为3天"


def test_rows_of_table_facts_select_by_band() -> None:
    facts = extract_facts([chunk("\n".join(BANDS))])
    rows = rows_of_facts(facts)
    assert len(rows) == 6
    assert values(select_rows(rows, read_question("工龄4年，通讯补贴多少"))) == ["300", "150"]
