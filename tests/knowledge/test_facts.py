"""Fact extraction: clauses with quantities, subjects, conditions and exact document offsets."""

from __future__ import annotations

import doctest

import knowledge.facts as facts_mod
from knowledge.chunking import chunk_document
from knowledge.facts import extract_facts, find_conditions, leading_phrase, split_clauses
from knowledge.numbers import extract_quantities
from knowledge.types import Block, Chunk, LoadedDocument

RULE = "单笔采购金额在3000元以上的，须签订采购协议；10000元以上的，须签订正式合同。"


def chunk_of(text: str, heading: list[str] | None = None, start: int = 0) -> Chunk:
    return Chunk("0123456789ab-0000", "制度.md", text, page=2, heading_path=heading or [], start=start,
                 end=start + len(text))


def test_doctests() -> None:
    assert doctest.testmod(facts_mod).failed == 0


def test_procurement_rule_gives_two_facts() -> None:
    doc_text = "第五章 采购管理\n\n" + RULE
    start = doc_text.index(RULE)
    facts = extract_facts([chunk_of(RULE, ["第五章 采购管理"], start)])
    assert [[q.value for q in f.values] for f in facts] == [[3000], [10000]]
    assert [f.conditions for f in facts] == [["以上"], ["以上"]]
    assert all(q.unit == "元" for f in facts for q in f.values)
    assert [f.statement for f in facts] == ["单笔采购金额在3000元以上的，须签订采购协议", "10000元以上的，须签订正式合同"]
    # the second clause starts with its number: it continues the first one's subject
    assert all("单笔采购金额" in f.subject and "采购管理" in f.subject for f in facts)
    for f in facts:
        assert doc_text[f.start:f.end] == f.statement
        assert all(doc_text[q.start:q.end] == q.text for q in f.values)
    assert [f.fact_id for f in facts] == ["0123456789ab-0000-f0", "0123456789ab-0000-f1"]
    assert facts[0].source == "制度.md" and facts[0].page == 2 and facts[0].chunk_id == "0123456789ab-0000"


def test_comma_splits_only_between_own_quantities() -> None:
    text = "住宿费标准：一线城市每晚600元，二线城市每晚450元，旺季可上浮30%。"
    facts = extract_facts([chunk_of(text)])
    assert [f.statement for f in facts] == ["住宿费标准：一线城市每晚600元", "二线城市每晚450元", "旺季可上浮30%"]
    assert [f.subject for f in facts] == ["住宿费标准", "二线城市", "旺季"]


def test_conditional_clause_stays_with_its_rule() -> None:
    facts = extract_facts([chunk_of("员工工作满三年的，年假为10天。")])
    assert len(facts) == 1
    assert [q.value for q in facts[0].values] == [3, 10]
    assert facts[0].conditions == ["满"]


def test_conditions_chinese() -> None:
    cases = {
        "报销金额不超过5000元": ["不超过"], "出差3天以内的无需审批": ["以内"], "金额最高不超过3000元": ["最高", "不超过"],
        "人数不少于5人": ["不少于"], "金额低于200元的": ["低于"], "工龄达到10年": ["达到"],
        "5000元以上（含）的": ["以上（含）"], "满意度为90%": [], "以下情形罚款500元": [],
        "每月至少2次": ["至少"],
    }
    for text, want in cases.items():
        assert find_conditions(text, extract_quantities(text)) == want, text


def test_conditions_english() -> None:
    cases = {
        "Meals are reimbursed up to $50 per day": ["up to"], "trips of more than 3 days": ["more than"],
        "at least 2 quotes": ["at least"], "amounts above $5,000": ["above"], "within 30 days": ["within"],
        "purchases exceeding $10,000": ["exceeding"], "stays of 5 nights or more": ["or more"],
        "under the policy, staff get 10 days": [],
    }
    for text, want in cases.items():
        assert find_conditions(text, extract_quantities(text)) == want, text


def test_clauses_without_units_are_not_facts() -> None:
    assert extract_facts([chunk_of("1. 总则\n本办法适用于全体员工。\n见第十二条[1]。")]) == []


def test_english_facts() -> None:
    text = ("Meals are reimbursed up to $50 per day. Hotels over $200 per night require approval. "
            "If the amount exceeds $5,000, a contract is required.")
    facts = extract_facts([chunk_of(text, ["Travel Policy"])])
    assert [f.statement for f in facts] == [
        "Meals are reimbursed up to $50 per day", "Hotels over $200 per night require approval",
        "If the amount exceeds $5,000, a contract is required"]
    assert [f.subject for f in facts] == ["Travel Policy / Meals", "Travel Policy / Hotels",
                                          "Travel Policy / amount"]
    assert [f.conditions for f in facts] == [["up to"], ["over"], ["exceeds"]]
    assert [q.value for f in facts for q in f.values] == [50, 200, 5000]


def test_dates_ranges_and_percentages_are_facts() -> None:
    text = "本办法自2024年3月1日起施行。审批需3-5个工作日。绩效奖金为基本工资的百分之二十。"
    facts = extract_facts([chunk_of(text)])
    got = [(q.value, q.unit, q.high) for f in facts for q in f.values]
    assert got == [(20240301, "date", None), (3, "工作日", 5), (20, "%", None)]


def test_offsets_through_real_chunking() -> None:
    blocks = [Block("差旅费管理办法", "heading", 1, 1), Block("第一章 住宿", "heading", 1, 2),
              Block("第十二条 住宿费标准为每晚600元，超过部分自理。", "article", 1),
              Block("第十三条 出差补助每天100元；出差3天以内的，无需事先审批。", "article", 2),
              Block("Taxi fares are reimbursed up to $30 per trip.", "para", 2)]
    doc = LoadedDocument("差旅.md", blocks, sha256="cd" * 32)
    chunks = chunk_document(doc, size=60, overlap=0)
    facts = extract_facts(chunks)
    assert len(facts) == 4
    for f in facts:
        assert doc.text[f.start:f.end] == f.statement
        for q in f.values:
            assert doc.text[q.start:q.end] == q.text
    assert facts[0].statement == "住宿费标准为每晚600元，超过部分自理"
    assert "住宿费标准" in facts[0].subject


def test_leading_phrase() -> None:
    assert leading_phrase("单笔采购金额在3000元以上的") == "单笔采购金额"
    assert leading_phrase("对于营业许可证有效期为3年") == "营业许可证有效期"
    assert leading_phrase("3000元以上的") == ""
    assert leading_phrase("If the total exceeds $5,000") == "total"


def test_split_clauses_keeps_number_commas() -> None:
    text = "Purchases above $10,000, or 5,000 units, need approval."
    spans = split_clauses(text, extract_quantities(text))
    assert [text[s:e] for s, e in spans] == ["Purchases above $10,000", "or 5,000 units, need approval"]


def test_wrapped_pdf_lines_are_joined() -> None:
    text = ("第二十一条　出差人员的伙食补助按出差天数包干使用，一类城市每人每天120元，二类城市每人每\n\n"
            "天100元，三类城市每人每天80元，不分职级，无需提供发票，报销时按实际出差天数计算发放。\n\n"
            "第二十二条　市内交通补助按出差天数包干使用，一类城市每人每天70元，二类城市每人每天60元，\n\n"
            "三类城市每人每天50元。")
    facts = extract_facts([chunk_of(text)])
    assert "二类城市每人每天100元" in [f.statement for f in facts]
    assert [q.value for f in facts for q in f.values] == [120, 100, 80, 70, 60, 50]
    for f in facts:
        assert text[f.start:f.end].replace("\n", "") == f.statement


def test_short_lines_are_not_joined() -> None:
    text = "试用期为3个月\n\n在OA系统中核对个人信息\n\n密码每90天需要更换一次"
    facts = extract_facts([chunk_of(text)])
    assert [f.statement for f in facts] == ["试用期为3个月", "密码每90天需要更换一次"]


def test_record_rows_take_units_from_headers() -> None:
    text = ("城市类别: 一类城市；职级: A类；住宿标准(元/晚): 900；伙食补助(元/天): 120；上浮比例: 30%\n\n"
            "不足3000元 | 无需协议 | 无 | 部门经理")
    facts = extract_facts([chunk_of(text, ["差旅住宿及补助标准"])])
    assert len(facts) == 2
    assert facts[0].subject == "差旅住宿及补助标准 / 一类城市 A类"
    assert [(q.value, q.unit) for q in facts[0].values] == [(900, "元"), (120, "元"), (30, "%")]
    assert facts[1].conditions == ["不足"]


def test_section_numbers_are_stripped_from_statements() -> None:
    text = "2.3 密码每90天必须更换一次。\n1.1 本规定适用于全体员工。"
    facts = extract_facts([chunk_of(text)])
    assert [f.statement for f in facts] == ["密码每90天必须更换一次"]


def test_english_record_rows_are_one_fact_each() -> None:
    text = ("Tier: Tier 1; Hotel cap per night (USD): 300; Per diem, full day (USD): 85\n\n"
            "Tier: Tier 2; Hotel cap per night (USD): 230; Per diem, full day (USD): 70")
    facts = extract_facts([chunk_of(text, ["7. Hotels"])])
    assert [f.statement for f in facts] == text.split("\n\n")
    assert [[(q.value, q.unit) for q in f.values] for f in facts] == [[(300, "USD"), (85, "USD")],
                                                                       [(230, "USD"), (70, "USD")]]


def test_rows_of_a_table_keep_one_subject_across_chunks() -> None:
    """A chunk continuing a table carries the table's introduction in its heading path; the rows
    in it get the same subject as the rows before them."""
    intro = "第十五条　住宿费在以下标准内凭发票据实报销（单位：元/人·晚）："
    rows = ["职级: A类；一类城市(元/晚): 900；二类城市(元/晚): 700；三类城市(元/晚): 520",
            "职级: B类；一类城市(元/晚): 650；二类城市(元/晚): 500；三类城市(元/晚): 400",
            "职级: C类；一类城市(元/晚): 480；二类城市(元/晚): 360；三类城市(元/晚): 280"]
    doc = LoadedDocument("差旅.pdf", [Block("第五章　住宿费", "heading", level=2), Block(intro, "article")]
                         + [Block(r, "table") for r in rows], sha256="ab" * 32)
    chunks = chunk_document(doc, size=150, overlap=0)
    assert len(chunks) > 1 and chunks[-1].heading_path[-1] == intro
    facts = extract_facts(chunks)
    assert [f.subject for f in facts] == ["住宿费 / A类", "住宿费 / B类", "住宿费 / C类"]


def test_a_heading_ending_with_an_exclamation_mark_is_still_the_subject() -> None:
    facts = extract_facts([chunk_of("本指南大约需要40分钟讲完", ["欢迎加入星河印刷！"])])
    assert [f.subject for f in facts] == ["欢迎加入星河印刷！ / 本指南大约"]
