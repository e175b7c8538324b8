"""router/matching.py: glossary terms found in text as whole, case-aware, width-aware tokens; meanings
written out find their abbreviation; clock times are not abbreviations."""

from __future__ import annotations

import pytest

from knowledge.core.types import GlossaryEntry, Meaning
from knowledge.glossary import Glossary
from router.matching import (case_allows, find_terms, fold_case, get_matcher, is_time_expression,
                             is_token_boundary, locate_term, meaning_forms)

GLOSSARY = Glossary([
    GlossaryEntry("AM", [Meaning("Account Manager", "客户经理")]),
    GlossaryEntry("PM", [Meaning("Project Manager", "项目经理")]),
    GlossaryEntry("SaaS", [Meaning("Software as a Service", "软件即服务")]),
    GlossaryEntry("GO", [Meaning("Go-live Order", "上线单")]),
    GlossaryEntry("CI/CD", [Meaning("Continuous Integration and Delivery", "持续集成与交付")]),
    GlossaryEntry("CI", [Meaning("Corporate Identity", "企业形象")]),
    GlossaryEntry("R&D", [Meaning("Research and Development", "研发")]),
    GlossaryEntry("双碳", [Meaning("Carbon peak and neutrality", "碳达峰碳中和")]),
])


def found(text: str) -> list[tuple[str, str, int, int, str]]:
    return [(m.term, m.surface, m.start, m.end, m.via) for m in find_terms(text, GLOSSARY)]


# --- whole tokens -----------------------------------------------------------------------------------
@pytest.mark.parametrize("text,span", [
    ("AM负责报销", (0, 2)),        # a Chinese character is a boundary
    ("(AM)", (1, 3)),
    ("the PM said", (4, 6)),
])
def test_an_abbreviation_is_found_as_a_whole_token(text, span):
    (m,) = find_terms(text, GLOSSARY)
    assert (m.start, m.end) == span and text[m.start:m.end] == m.surface


@pytest.mark.parametrize("text", ["AMOUNT", "3AM", "PMO", "CIA"])
def test_an_abbreviation_inside_a_longer_token_is_not_found(text):
    assert found(text) == []


def test_tokens_with_inner_marks_stay_whole_and_the_longest_match_wins():
    assert found("CI/CD流程") == [("CI/CD", "CI/CD", 0, 5, "abbr")]
    assert found("R&D部门") == [("R&D", "R&D", 0, 3, "abbr")]
    assert found("CI") == [("CI", "CI", 0, 2, "abbr")]


# --- case -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text,expected", [
    ("the am shift", []),                               # a word, not the abbreviation
    ("Am I late", []),
    ("Let's go", []),                                   # "go" is never the glossary's GO
    ("GO单", [("GO", "GO", 0, 2, "abbr")]),
    ("SAAS平台", [("SaaS", "SAAS", 0, 4, "abbr")]),      # all capitals may stand for a mixed-case term
    ("saas平台", []),
])
def test_case(text, expected):
    assert found(text) == expected


def test_case_allows():
    assert case_allows("AM", "AM") and case_allows("SAAS", "SaaS")
    assert not case_allows("am", "AM") and not case_allows("Saas", "SaaS") and not case_allows("GO", "go")


def test_fold_case_keeps_offsets():
    assert fold_case("Purchase ORDER") == "purchase order"
    assert len(fold_case("İAM")) == 3


# --- full width -------------------------------------------------------------------------------------
def test_a_full_width_abbreviation_is_found_with_its_own_surface():
    assert found("ＡＭ负责") == [("AM", "ＡＭ", 0, 2, "abbr")]
    assert found("请联系ＰＭ。") == [("PM", "ＰＭ", 3, 5, "abbr")]


# --- meanings point back at their abbreviation ---------------------------------------------------------
@pytest.mark.parametrize("text,expected", [
    ("找客户经理", [("AM", "客户经理", 1, 5, "meaning")]),
    ("the account manager approves", [("AM", "account manager", 4, 19, "meaning")]),   # any case
    ("研发部", [("R&D", "研发", 0, 2, "meaning")]),
    ("项目经理和PM", [("PM", "项目经理", 0, 4, "meaning"), ("PM", "PM", 5, 7, "abbr")]),
])
def test_a_meaning_written_out_finds_its_abbreviation(text, expected):
    assert found(text) == expected


def test_a_chinese_abbreviation_is_found():
    assert found("双碳目标") == [("双碳", "双碳", 0, 2, "abbr")]


def test_meaning_forms_cover_bracketed_annotations():
    assert meaning_forms(Meaning("Purchase Order", "采购订单")) == ["采购订单", "Purchase Order"]
    assert meaning_forms(Meaning("", "全印展（中国国际全印展）")) == [
        "全印展（中国国际全印展）", "全印展", "全印展中国国际全印展", "中国国际全印展"]


# --- clock times ------------------------------------------------------------------------------------
@pytest.mark.parametrize("text", ["at 8 AM", "10:30 PM开会", "PM 9:30到岗", "9am", "8：00 AM", "2 PM"])
def test_a_clock_time_is_not_an_abbreviation(text):
    assert found(text) == []


def test_is_time_expression():
    assert is_time_expression("at 8 AM", 5, 7)
    assert is_time_expression("PM 9:30到岗", 0, 2)
    assert not is_time_expression("the PM said", 4, 6)
    assert not is_time_expression("8 CI", 2, 4)          # only AM/PM are clock words


def test_is_token_boundary():
    assert is_token_boundary("AM负责", 0, 2) and is_token_boundary("(AM)", 1, 3)
    assert not is_token_boundary("AMOUNT", 0, 2) and not is_token_boundary("3AM", 1, 3)


# --- matcher, locate ----------------------------------------------------------------------------------
def test_empty_text_or_glossary_finds_nothing():
    assert find_terms("", GLOSSARY) == []
    assert find_terms("AM负责", Glossary([])) == []


def test_the_matcher_is_cached_and_rebuilt_when_the_glossary_grows():
    g = Glossary([GlossaryEntry("AM", [Meaning("Account Manager")])])
    first = get_matcher(g)
    assert get_matcher(g) is first
    g.merge([GlossaryEntry("KPI", [Meaning("Key Performance Indicator")])])
    assert get_matcher(g) is not first
    assert [m.term for m in find_terms("AM的KPI", g)] == ["AM", "KPI"]


def test_locate_term_prefers_a_whole_token():
    e = GlossaryEntry("CT", [Meaning("computed tomography")])
    m = locate_term("CTA and CT scans", "CT", e)
    assert (m.start, m.end, m.surface) == (8, 10, "CT")
    inside = locate_term("CTA only", "CT", e)
    assert (inside.start, inside.end) == (0, 2)
    absent = locate_term("nothing here", "CT", e)
    assert (absent.start, absent.end, absent.surface) == (0, 0, "")
