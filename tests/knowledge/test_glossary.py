"""Glossary import (real xlsx/csv/json files) and lookup."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from knowledge.errors import GlossaryError
from knowledge.glossary import Glossary, import_glossary, normalize_width
from knowledge.types import GlossaryEntry, Meaning


def write_xlsx(path: Path, rows: list[list]) -> Path:
    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    for row in rows:
        ws.append(row)
    wb.save(path)
    return path


COMPANY_ROWS = [
    ["公司缩略语表（2024 版）"],                                    # row 1: title
    [],                                                             # row 2
    ["说明：按字母排序"],                                            # row 3: another title row
    [None, None, None, None],                                       # row 4
    ["序号", "缩略语", "英文全称", "中文解释"],                       # row 5: header
    [1, "PM", "Product Manager", "产品经理"],                        # row 6
    [2, "PM", "Project Manager", "项目经理"],                        # row 7: second meaning
    [3, "ＡＭ", "Account Manager", "客户经理"],                      # row 8: full-width term
    [4, "AAP", "Actual Average Price", "实际成交价"],                # row 9
    [5, "PM", "Product Manager", "产品经理"],                        # row 10: duplicate
    [6, None, "Orphan Meaning", "孤儿"],                             # row 11: blank term
    [7, "TBD", None, None],                                         # row 12: no meaning
    [],                                                             # row 13
    [8, "IO", "Input/Output", "输入/输出"],                          # row 14: paired split
    [9, "PMO", "Project Management Office; Program Office", "项目管理办公室"],  # row 15: no split
]


def test_company_xlsx_with_title_and_blank_rows(tmp_path):
    result = import_glossary(write_xlsx(tmp_path / "缩略语.xlsx", COMPANY_ROWS))
    entries = {e.term: e for e in result.entries}
    assert list(entries) == ["PM", "AM", "AAP", "IO", "PMO"]
    assert entries["PM"].meanings == [Meaning("Product Manager", "产品经理"),
                                      Meaning("Project Manager", "项目经理")]
    assert entries["PM"].rows == [6, 7] and entries["PM"].source == "缩略语.xlsx"
    assert entries["AM"].meanings == [Meaning("Account Manager", "客户经理")]
    assert entries["IO"].meanings == [Meaning("Input", "输入"), Meaning("Output", "输出")]
    assert entries["PMO"].meanings == [Meaning("Project Management Office; Program Office", "项目管理办公室")]
    skipped = {s.row: s.reason for s in result.skipped}
    assert set(skipped) == {10, 11, 12}
    assert "duplicate" in skipped[10] and "row 6" in skipped[10]
    assert "blank term" in skipped[11]
    assert "no meaning" in skipped[12] and "TBD" in skipped[12]


def test_english_headers(tmp_path):
    rows = [["Company glossary"], ["No.", "Abbreviation", "Full Name", "Chinese"],
            [1, "SLA", "Service Level Agreement", "服务等级协议"]]
    result = import_glossary(write_xlsx(tmp_path / "en.xlsx", rows))
    assert result.entries[0].term == "SLA"
    assert result.entries[0].meanings == [Meaning("Service Level Agreement", "服务等级协议")]


def test_company_csv_in_gbk(tmp_path):
    path = tmp_path / "glossary.csv"
    text = "缩略语表\n\n序号,缩略语,英文全称,中文解释\n1,PM,Product Manager,产品经理\n2,PM,Project Manager,项目经理\n"
    path.write_bytes(text.encode("gbk"))
    result = import_glossary(path)
    assert [m.chinese for m in result.entries[0].meanings] == ["产品经理", "项目经理"]
    assert result.entries[0].rows == [4, 5]


def test_plain_csv_two_and_three_columns(tmp_path):
    two = tmp_path / "two.csv"
    two.write_text("PM,产品经理\nKPI,Key Performance Indicator\n", encoding="utf-8")
    entries = {e.term: e for e in import_glossary(two).entries}
    assert entries["PM"].meanings == [Meaning(english="", chinese="产品经理")]
    assert entries["KPI"].meanings == [Meaning(english="Key Performance Indicator", chinese="")]

    three = tmp_path / "three.csv"
    three.write_text("PM,Product Manager,产品经理\nPM,Project Manager,项目经理\n", encoding="utf-8-sig")
    entry = import_glossary(three).entries[0]
    assert entry.rows == [1, 2] and len(entry.meanings) == 2

    with_header = tmp_path / "header.csv"
    with_header.write_text("term,meaning\nROI,投资回报率\n", encoding="utf-8")
    assert import_glossary(with_header).entries[0].meanings == [Meaning(chinese="投资回报率")]


def test_json_mappings(tmp_path):
    path = tmp_path / "g.json"
    path.write_text(json.dumps({"PM": ["Product Manager", "项目经理"], "AM": "Account Manager",
                                "CFO": {"english": "Chief Financial Officer", "chinese": "首席财务官"},
                                "X": []}, ensure_ascii=False), encoding="utf-8")
    result = import_glossary(path)
    entries = {e.term: e for e in result.entries}
    assert entries["PM"].meanings == [Meaning(english="Product Manager"), Meaning(chinese="项目经理")]
    assert entries["AM"].meanings == [Meaning(english="Account Manager")]
    assert entries["CFO"].meanings == [Meaning("Chief Financial Officer", "首席财务官")]
    assert [(s.row, "no meaning" in s.reason) for s in result.skipped] == [(4, True)]


def write_merged_footnote_xlsx(path: Path, rows: list[list], footnote: str) -> Path:
    """A company glossary as it is usually laid out: entries, a blank row, then a footnote in one
    merged cell across the table."""
    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    for row in rows + [[], [footnote]]:
        ws.append(row)
    ws.merge_cells(start_row=ws.max_row, start_column=1, end_row=ws.max_row, end_column=4)
    wb.save(path)
    return path


DESCRIBED_ROWS = [["Quillstone Glossary"], [],
                  ["No.", "Abbreviation", "Full Form", "Description"],
                  [1, "ADR", "Architecture Decision Record", "A short file that records one technical decision."],
                  [2, "RC", None, "Release candidate"],
                  [3, "SLA", "Service Level Agreement", "服务等级协议"]]


def test_english_description_column_is_not_the_chinese_meaning(tmp_path):
    result = import_glossary(write_xlsx(tmp_path / "Glossary.xlsx", DESCRIBED_ROWS))
    entries = {e.term: e for e in result.entries}
    assert entries["ADR"].meanings == [Meaning(english="Architecture Decision Record", chinese="",
                                               description="A short file that records one technical decision.")]
    assert entries["RC"].meanings == [Meaning(english="Release candidate")]     # the English column was empty
    assert entries["SLA"].meanings == [Meaning("Service Level Agreement", "服务等级协议")]  # Chinese text: chinese
    assert entries["ADR"].meanings[0].label == "Architecture Decision Record"


def test_chinese_explanation_column_keeps_an_extra_generic_column_as_description(tmp_path):
    rows = [["缩略语", "英文全称", "中文解释", "说明"], ["PM", "Project Manager", "项目经理", "交付中心用法"]]
    entry = import_glossary(write_xlsx(tmp_path / "g.xlsx", rows)).entries[0]
    assert entry.meanings == [Meaning("Project Manager", "项目经理", description="交付中心用法")]


def test_description_round_trips_and_old_glossary_json_loads(tmp_path):
    g = Glossary(import_glossary(write_xlsx(tmp_path / "Glossary.xlsx", DESCRIBED_ROWS)).entries)
    path = tmp_path / "glossary.json"
    g.to_json(path)
    assert json.loads(path.read_text(encoding="utf-8"))["entries"][0]["meanings"][0]["description"] \
        == "A short file that records one technical decision."
    assert [e.to_dict() for e in Glossary.from_json(path)] == [e.to_dict() for e in g]
    old = tmp_path / "old.json"       # written before meanings had a description
    old.write_text(json.dumps({"format": "kb-glossary", "version": 1, "entries": [
        {"term": "PM", "meanings": [{"english": "Product Manager", "chinese": "产品经理"}],
         "source": "缩略语表.xlsx", "rows": [4]}]}, ensure_ascii=False), encoding="utf-8")
    assert Glossary.from_json(old).get("PM").meanings == [Meaning("Product Manager", "产品经理")]


@pytest.mark.parametrize("footnote", [
    "注：同一缩略语在不同业务场景中含义可能不同（如PM、PO、AM），请结合上下文判断；如需新增词条，请联系人力资源部。",
    "Note: the same abbreviation can mean different things in different teams.",
    "Maintained by Engineering Enablement and People Operations. Last updated January 2025.",
], ids=["zh-note", "en-note", "en-sentence-after-blank"])
def test_footnote_under_the_table_is_not_a_skipped_row(tmp_path, footnote):
    rows = [["星河印刷 常用缩略语表（2025版）"], [], ["序号", "缩略语", "英文全称", "中文解释"],
            [1, "AAP", "Actual Average Price", "实际成交价"], [2, "AM", "Account Manager", "客户经理"]]
    result = import_glossary(write_merged_footnote_xlsx(tmp_path / "缩略语表.xlsx", rows, footnote))
    assert [e.term for e in result.entries] == ["AAP", "AM"]
    assert result.skipped == []


def test_a_row_with_only_a_term_is_still_reported(tmp_path):
    rows = [["缩略语", "英文全称", "中文解释"], ["PM", "Product Manager", "产品经理"], [], ["TBD", None, None]]
    result = import_glossary(write_xlsx(tmp_path / "g.xlsx", rows))
    assert [(s.row, "no meaning" in s.reason) for s in result.skipped] == [(4, True)]


@pytest.mark.parametrize("name, content, message", [
    ("bad.json", "{not json", "cannot read"),
    ("list.json", "[1, 2]", "no glossary entries"),
    ("empty.csv", "\n\n", "no glossary entries"),
    ("g.pdf", "x", "unsupported glossary file type"),
    ("broken.xlsx", "PK\x03\x04garbage", "broken.xlsx"),
])
def test_bad_glossary_files(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(GlossaryError, match=message) as info:
        import_glossary(path)
    assert name in str(info.value)


def test_missing_glossary_file(tmp_path):
    with pytest.raises(GlossaryError, match="not found"):
        import_glossary(tmp_path / "none.xlsx")


@pytest.fixture
def glossary(tmp_path) -> Glossary:
    return Glossary(import_glossary(write_xlsx(tmp_path / "g.xlsx", COMPANY_ROWS)).entries)


def test_get_exact_case_insensitive_and_full_width(glossary):
    assert glossary.get("PM").term == "PM"
    assert glossary.get("pm").term == "PM"
    assert glossary.get("ＰＭ").term == "PM"
    assert glossary.get(" aap ").term == "AAP"
    assert glossary.get("XYZ") is None
    assert "AM" in glossary and "ZZ" not in glossary
    assert len(glossary) == 5 and [e.term for e in glossary][:2] == ["PM", "AM"]


def test_exact_case_wins_over_folded():
    g = Glossary([GlossaryEntry("Pa", [Meaning("Pascal")]), GlossaryEntry("PA", [Meaning("Personal Assistant")])])
    assert g.get("PA").meanings[0].english == "Personal Assistant"
    assert g.get("Pa").meanings[0].english == "Pascal"


def test_search_meaning(glossary):
    assert [(e.term, m.chinese) for e, m in glossary.search_meaning("客户经理")] == [("AM", "客户经理")]
    assert [e.term for e, _ in glossary.search_meaning("实际成交价的缩写是什么")] == ["AAP"]
    assert [e.term for e, _ in glossary.search_meaning("account manager")] == ["AM"]
    found = [(e.term, m.chinese) for e, m in glossary.search_meaning("经理")]
    assert set(found) == {("PM", "产品经理"), ("PM", "项目经理"), ("AM", "客户经理")}
    assert glossary.search_meaning("") == [] and glossary.search_meaning("无关内容") == []
    # English long forms match whole words only: "put" is not "Input".
    assert glossary.search_meaning("please put it here") == []


def test_merge_and_json_round_trip(glossary, tmp_path):
    extra = Glossary([GlossaryEntry("PM", [Meaning("Project Manager", "项目经理"), Meaning("Post Meridiem", "下午")]),
                      GlossaryEntry("HR", [Meaning("Human Resources", "人力资源")])])
    assert glossary.merge(extra) is glossary
    assert [m.chinese for m in glossary.get("PM").meanings] == ["产品经理", "项目经理", "下午"]
    assert glossary.get("HR") is not None
    path = tmp_path / "out" / "glossary.json"
    glossary.to_json(path)
    again = Glossary.from_json(path)
    assert [e.to_dict() for e in again] == [e.to_dict() for e in glossary]
    # The written format is also importable as a glossary file.
    assert len(import_glossary(path).entries) == len(glossary)


def test_from_json_accepts_plain_mapping(tmp_path):
    path = tmp_path / "m.json"
    path.write_text('{"KPI": "关键绩效指标"}', encoding="utf-8")
    assert Glossary.from_json(path).get("kpi").meanings == [Meaning(chinese="关键绩效指标")]


def test_normalize_width_is_exported_and_length_preserving():
    text = "ＡＭ负责，ＰＭ　跟进"
    assert normalize_width(text) == "AM负责,PM 跟进"
    assert len(normalize_width(text)) == len(text)


def test_docstring_examples():
    import doctest

    import knowledge.glossary

    result = doctest.testmod(knowledge.glossary)
    assert result.failed == 0 and result.attempted > 0
