"""Quantity extraction: normalisation, whole-number matching, ranges, dates, and what is not a number."""

from __future__ import annotations

import doctest

import pytest

import knowledge.numbers as numbers
from knowledge.numbers import extract_quantities, normalize_unit, parse_chinese_numeral, same_quantity
from knowledge.types import Quantity


def vals(text: str, **kw) -> list[tuple[float, str]]:
    return [(q.value, q.unit) for q in extract_quantities(text, **kw)]


def one(text: str) -> Quantity:
    qs = extract_quantities(text)
    assert len(qs) == 1, (text, qs)
    return qs[0]


def test_doctests() -> None:
    assert doctest.testmod(numbers).failed == 0


@pytest.mark.parametrize("text", ["3万元", "30000元", "30,000 元", "三万元", "3万 元", "人民币30000元", "¥30,000",
                                  "3.0万元", "30000 RMB", "30,000 yuan", "CNY 30000"])
def test_thirty_thousand_yuan_spellings_agree(text: str) -> None:
    q = one(text)
    assert (q.value, q.unit) == (30000, "元")
    assert same_quantity(q, one("3万元"))


@pytest.mark.parametrize("text,value,unit", [
    ("五百", 500, ""), ("1.5万", 15000, ""), ("10,000", 10000, ""), ("两千", 2000, ""),
    ("一千二百五十元", 1250, "元"), ("十二", 12, ""), ("0.5", 0.5, ""), ("三万五", 35000, ""),
    ("一千零五十元", 1050, "元"), ("二十万元", 200000, "元"), ("1.5亿元", 1.5e8, "元"), ("5块", 5, "元"),
    ("百分之三十", 30, "%"), ("30%", 30, "%"), ("30％", 30, "%"), ("百分之3.5", 3.5, "%"), ("千分之五", 0.5, "%"),
    ("30 percent", 30, "%"), ("5个工作日", 5, "工作日"), ("2.5小时", 2.5, "小时"), ("两周", 2, "周"),
    ("3个月", 3, "月"), ("10年", 10, "年"), ("20人", 20, "人"), ("三次", 3, "次"), ("两晚", 2, "晚"),
    ("120公里", 120, "公里"), ("120 km", 120, "公里"), ("7 days", 7, "天"), ("8 hours", 8, "小时"),
    ("$50", 50, "USD"), ("50 USD", 50, "USD"), ("5k", 5000, ""), ("$5K", 5000, "USD"),
    ("$1.2 billion", 1.2e9, "USD"), ("3 million", 3e6, ""), ("US$5M", 5e6, "USD"), ("5万美元", 50000, "USD"),
    ("200元/天", 200, "元"), ("3千米", 3, "公里"), ("2 business days", 2, "工作日"),
])
def test_values_and_units(text: str, value: float, unit: str) -> None:
    q = one(text)
    assert q.value == pytest.approx(value)
    assert q.unit == unit
    assert q.text == text


def test_percent_spellings_agree() -> None:
    assert same_quantity(one("百分之三十"), one("30%"))
    assert not same_quantity(one("百分之三十"), one("30元"))


@pytest.mark.parametrize("small,big", [("70", "170"), ("1.5", "15"), ("70元", "170元"), ("3万元", "13万元"),
                                       ("三千元", "一万三千元")])
def test_whole_numbers_only(small: str, big: str) -> None:
    assert [q.text for q in extract_quantities(f"上限{big}")] == [big]
    assert not same_quantity(one(small), one(big))


@pytest.mark.parametrize("text,low,high,unit", [
    ("3-5天", 3, 5, "天"), ("3至5天", 3, 5, "天"), ("3～5", 3, 5, ""), ("3~5天", 3, 5, "天"),
    ("3 to 5 days", 3, 5, "天"), ("三至五天", 3, 5, "天"), ("三到五个工作日", 3, 5, "工作日"),
    ("1-2万元", 10000, 20000, "元"), ("10%-20%", 10, 20, "%"), ("$3-5 million", 3e6, 5e6, "USD"),
])
def test_ranges(text: str, low: float, high: float, unit: str) -> None:
    q = one(text)
    assert (q.value, q.high, q.unit) == (pytest.approx(low), pytest.approx(high), unit)


def test_descending_pair_is_not_a_range() -> None:
    assert vals("2019-20 season") == [(2019, ""), (20, "")]


@pytest.mark.parametrize("text,value", [
    ("2024年3月1日", 20240301), ("2024-03-01", 20240301), ("2024/3/1", 20240301), ("3月1日", 301),
    ("2024年3月", 20240300), ("二〇二四年三月一日", 20240301), ("March 1, 2024", 20240301),
    ("Mar. 1, 2024", 20240301), ("1 March 2024", 20240301), ("July 21 2017", 20170721),
    ("21 Jul., 2017", 20170721), ("June 2020", 20200600), ("Jun. 2020", 20200600), ("Nov 12", 1112),
])
def test_dates(text: str, value: int) -> None:
    q = one(text)
    assert (q.value, q.unit) == (value, "date")


def test_may_the_verb_is_not_a_month() -> None:
    assert vals("Employees may 2 weeks later apply") == [(2, "周")]


def test_citation_markers_are_not_numbers() -> None:
    assert vals("住宿标准为600元[1]，见【2】和[1, 3]。") == [(600, "元")]


def test_list_ordinals_at_line_start_are_not_numbers() -> None:
    text = "1. 住宿费600元\n2、交通费\n（一）总则\n一、范围\n(3) 餐费\n3.2 报销流程\n1.5万元以内"
    assert vals(text) == [(600, "元"), (15000, "元")]


def test_section_number_is_kept_when_a_unit_follows() -> None:
    assert vals("3.5 days") == [(3.5, "天")]


def test_article_numbers_are_not_numbers() -> None:
    assert vals("依据第十二条和第3章，第2款规定") == []
    assert vals("第十二条 报销上限3000元") == [(3000, "元")]


@pytest.mark.parametrize("text", ["一些", "一般", "统一", "一次性付款", "一个问题", "一位同事", "万一", "千万不要",
                                  "十分重要", "五一假期", "周一", "唯一一个", "零件", "十三届会议", "神舟十二号",
                                  "腊月二十七", "一样", "之一"])
def test_chinese_numerals_inside_words_are_not_numbers(text: str) -> None:
    assert extract_quantities(text) == []


@pytest.mark.parametrize("text,value,unit", [("一天", 1, "天"), ("一个月", 1, "月"), ("一年", 1, "年"),
                                             ("两人", 2, "人"), ("每周一次", 1, "次")])
def test_single_chinese_numeral_with_a_unit_counts(text: str, value: float, unit: str) -> None:
    assert vals(text) == [(value, unit)]


@pytest.mark.parametrize("text", ["Q1 2021", "GPT-3", "COVID-19", "5G network", "v1.2.3", "the 21st century"])
def test_identifiers_are_not_numbers(text: str) -> None:
    assert all(q.value in (2021,) for q in extract_quantities(text))


def test_english_numbers() -> None:
    text = "In 2021 he threw 7 touchdowns and earned $1.2 billion; 3 million fans watched."
    assert vals(text) == [(2021, ""), (7, ""), (1.2e9, "USD"), (3e6, "")]


def test_number_words_only_when_asked() -> None:
    text = "seven touchdowns in three million homes, one of the best"
    assert vals(text) == []
    assert vals(text, words=True) == [(7, ""), (3e6, ""), (1, "")]


def test_times() -> None:
    assert vals("8:30上班，2:28 PM") == [(830, "time"), (1428, "time")]


def test_offsets_point_at_the_surface_text() -> None:
    text = "员工出差，住宿费每晚不超过600元，补助百分之三十，期限3-5个工作日。"
    for q in extract_quantities(text):
        assert text[q.start:q.end] == q.text


def test_fullwidth_digits_keep_offsets() -> None:
    text = "上限３０００元"
    q = one(text)
    assert (q.value, q.unit, q.text) == (3000, "元", "３０００元")


def test_normalize_unit() -> None:
    assert normalize_unit("块") == normalize_unit("RMB") == normalize_unit("yuan") == normalize_unit("CNY") == "元"
    assert normalize_unit("万元") == "元"
    assert normalize_unit("百分之") == normalize_unit("％") == normalize_unit("percent") == "%"
    assert normalize_unit("days") == normalize_unit("天") == "天"
    assert normalize_unit("$") == normalize_unit("USD") == "USD"
    assert normalize_unit("Widgets") == "widgets"


def test_same_quantity_units_and_ranges() -> None:
    assert same_quantity(one("600"), one("600元"))          # a bare number fits any unit
    assert not same_quantity(one("600元"), one("600人"))
    assert same_quantity(one("3-5天"), one("3至5天"))
    assert not same_quantity(one("3-5天"), one("3天"))


def test_parse_chinese_numeral_rejects_words() -> None:
    assert parse_chinese_numeral("一五一十") is None
    assert parse_chinese_numeral("百") is None
    assert parse_chinese_numeral("一万三千") == 13000


def test_slash_dates_and_bare_scale_letters() -> None:
    assert vals("7/29/2021 and 29/07/2021") == [(20210729, "date"), (20210729, "date")]
    assert vals("1.2M views, a 7B model, 5G, 3D") == [(1.2e6, ""), (7e9, "")]
