"""router/compose.py: answers composed from hand-built evidence units (no index, no model): the asked
figure, the whole table for a generic question, quotes with citation numbers, the premise verdict."""

from __future__ import annotations

from knowledge.numbers import extract_quantities
from router.compose import fact_answer, premise_note, quote_answer, select_units
from router.evidence import Evidence, Unit


def row(city: str, price: int, order: int, coverage: float = 0.8) -> Unit:
    return Unit(f"城市类别: {city}；职级: A类；住宿标准(元/晚): {price}", "c1", "travel.xlsx", 1, "record", order,
                context="差旅办法 | 住宿标准表",
                fields=[("城市类别", city), ("职级", "A类"), ("住宿标准(元/晚)", str(price))],
                coverage=coverage, units={"元"}, matched=["住宿标准"])


def sentence(text: str, chunk: str = "c2", order: int = 0, coverage: float = 0.0, units: set[str] | None = None,
             kind: str = "sentence", source: str = "leave.md") -> Unit:
    return Unit(text, chunk, source, 3, kind, order, coverage=coverage, units=units or set())


def evidence(units: list[Unit], terms: list[str], asked: set[str]) -> Evidence:
    best = max((u.coverage for u in units), default=0.0)
    return Evidence(terms=terms, weights={t: 1.0 for t in terms}, absent=[], siblings={}, units=units,
                    asked_units=asked, best_coverage=best)


TABLE = [row("一类城市", 900, 0), row("二类城市", 600, 1), row("三类城市", 400, 2)]


# --- fact_answer ------------------------------------------------------------------------------------
def test_a_generic_question_gets_every_row_with_its_condition():
    c = fact_answer(evidence(list(TABLE), ["住宿标准"], {"元"}))
    assert c is not None
    assert c.text.splitlines() == ["住宿标准表",
                                   "- 城市类别: 一类城市；住宿标准(元/晚): 900",
                                   "- 城市类别: 二类城市；住宿标准(元/晚): 600",
                                   "- 城市类别: 三类城市；住宿标准(元/晚): 400"]
    assert len(c.units) == 3
    # the column that is the same in every row (职级) does not tell rows apart: left out
    assert "职级" not in c.text


def test_a_question_that_names_a_row_gets_that_row():
    rows = [row("二类城市", 600, 1, coverage=0.9), row("一类城市", 900, 0), row("三类城市", 400, 2)]
    c = fact_answer(evidence(rows, ["住宿标准", "二类城市"], {"元"}))
    assert c is not None
    assert c.text == "城市类别: 二类城市；住宿标准(元/晚): 600"
    assert [u.fields[0][1] for u in c.units] == ["二类城市"]


def test_a_sentence_stating_the_figure_is_the_answer_and_headings_are_not():
    heading = sentence("第三章 休假", order=1, coverage=0.95, kind="heading")
    stated = sentence("年假为5天。", coverage=0.9, units={"天"})
    c = fact_answer(evidence([heading, stated], ["年假"], {"天"}))
    assert c is not None and c.text == "年假为5天。"
    assert c.citations == [{"source": "leave.md", "page": 3, "chunk_id": "c2", "quote": "年假为5天。"}]


def test_no_unit_of_the_asked_kind_means_no_fact_answer():
    stated = sentence("年假为5天。", coverage=0.9, units={"天"})
    assert fact_answer(evidence([stated], ["年假"], {"元"})) is None
    assert fact_answer(evidence([sentence("年假为5天。", coverage=0.1, units={"天"})], ["年假"], {"天"})) is None


# --- select_units -----------------------------------------------------------------------------------
def test_select_units_takes_the_best_and_drops_weak_duplicate_and_heading_units():
    units = [sentence("年假为5天。", coverage=0.9), sentence("第三章 休假", order=1, coverage=0.9, kind="heading"),
             sentence("年假为5天。", chunk="c3", coverage=0.8), sentence("病假按规定执行。", order=2, coverage=0.5),
             sentence("食堂七点开门。", order=3, coverage=0.2)]
    assert [u.text for u in select_units(evidence(units, ["年假"], set()))] == ["年假为5天。", "病假按规定执行。"]


def test_select_units_keeps_within_its_budget():
    units = [sentence(f"第{i}句话说明年假。", order=i, coverage=0.9) for i in range(10)]
    assert len(select_units(evidence(units, ["年假"], set()), max_units=3)) == 3
    assert select_units(evidence([], ["年假"], set())) == []


def test_select_units_expands_a_generic_table():
    chosen = select_units(evidence(list(TABLE), ["住宿标准"], {"元"}))
    assert [u.order for u in chosen] == [0, 1, 2]


# --- quote_answer -----------------------------------------------------------------------------------
def test_quotes_are_cited_per_passage_in_document_order():
    units = [sentence("年假为5天。", chunk="c2", order=0), sentence("病假3天。", chunk="c1", order=0, source="a.md"),
             sentence("事假1天。", chunk="c2", order=1)]
    c = quote_answer(units, "zh")
    assert c is not None
    assert c.text == "年假为5天[1]。事假1天[1]。病假3天[2]。"
    cites = c.citations
    assert [x["chunk_id"] for x in cites] == ["c2", "c1"]
    assert cites[0]["quote"] == "年假为5天。 事假1天。"


def test_english_quotes_and_rows_on_their_own_lines():
    units = [sentence("PTO is 20 days.", chunk="c1"), sentence("Sick leave is 5 days", chunk="c2")]
    assert quote_answer(units, "en").text == "PTO is 20 days [1]. Sick leave is 5 days [2]."
    assert quote_answer(TABLE[:2], "zh").text.count("\n") == 1
    assert quote_answer([], "zh") is None


# --- premise_note -----------------------------------------------------------------------------------
def test_premise_note_confirms_or_denies_a_stated_figure():
    units = [sentence("试用期为6个月。")]
    assert premise_note(extract_quantities("6个月"), units, "zh") == "是的。"
    assert premise_note(extract_quantities("12个月"), units, "zh") == "不是。"
    assert premise_note(extract_quantities("6 months"), units, "en") == "Yes."
    assert premise_note(extract_quantities("12 months"), units, "en") == "No."


def test_premise_note_says_nothing_without_a_figure_of_that_unit():
    units = [sentence("试用期为6个月。")]
    assert premise_note([], units, "zh") == ""
    assert premise_note(extract_quantities("500元"), units, "zh") == ""
