"""Evidence and calibration: coverage, absent terms, missing siblings, per-index margins."""

from __future__ import annotations

import json

import pytest

from knowledge.types import Chunk
from router.calibration import Calibration, answerability, calibrate_index
from router.evidence import KBTerms, content_terms, gather, split_units


class _Index:
    """The parts of a KnowledgeIndex the evidence layer reads (chunks, glossary, no BM25)."""

    def __init__(self, chunks):
        self.chunks = chunks
        self.glossary = []

    def chunk(self, cid):
        return next(c for c in self.chunks if c.chunk_id == cid)


LEAVE = [Chunk("c1", "leave.md", "第十六条　员工结婚的，享受婚假3天。\n第十七条　女员工生育享受产假98天。"),
         Chunk("c2", "leave.md", "第十八条　员工生病的，凭证明请病假。"),
         Chunk("c3", "travel.md", "第五条　出差住宿每晚不超过480元。")]


class _Hit:
    def __init__(self, chunk, dense=0.9):
        self.chunk, self.dense = chunk, dense


def _evidence(question, chunks=LEAVE):
    index = _Index(chunks)
    stats = KBTerms(chunks=chunks)
    return gather(question, [_Hit(c) for c in chunks], index, stats=stats)


def test_question_words_are_not_content_terms():
    assert content_terms("请问婚假一般有几天啊？") == ["婚假"]


def test_a_covered_question_has_full_coverage():
    ev = _evidence("婚假有几天？")
    assert ev.best_coverage == pytest.approx(1.0)
    assert ev.best.text.startswith("第十六条")
    assert not ev.absent and not ev.missing_sibling


def test_a_missing_sibling_is_found_where_the_passages_talk_about_its_siblings():
    ev = _evidence("丧假有几天？")
    assert ev.absent == ["丧假"]
    assert "丧假" in ev.siblings and set(ev.siblings["丧假"]) >= {"婚假", "产假"}


def test_an_absent_object_without_siblings_in_the_passages_is_no_near_topic_question():
    ev = _evidence("住宿超标的打印机怎么报？")
    assert not ev.missing_sibling


def test_table_rows_are_units_with_their_introduction():
    c = Chunk("t", "a.pdf", "第十五条　住宿费标准如下：\n\n职级: A类；一类城市: 900\n\n职级: B类；一类城市: 650",
              heading_path=["差旅", "第五章 住宿费"])
    units = split_units(c)
    assert [u.kind for u in units] == ["sentence", "record", "record"]
    assert units[1].fields == [("职级", "A类"), ("一类城市", "900")]
    assert "住宿费标准如下" in units[2].context


def test_answerability_rises_with_evidence():
    low = answerability({"coverage": 0.1, "absent_share": 0.9, "peak_z": -1.0})
    high = answerability({"coverage": 1.0, "absent_share": 0.0, "peak_z": 1.0})
    assert low < 0.5 < high


# --- calibration from the knowledge base's own material ---------------------------------------
def test_the_index_carries_its_calibration_with_the_embedder(demo_index):
    cal = demo_index.manifest.get("calibration")
    assert cal and cal["source"] == "index"
    assert cal["embedder"] == demo_index.embedder.describe()
    assert cal["probes"]["answerable"] >= 5 and cal["probes"]["absent"] >= 5
    # answerable probes stand further above the background than absent ones
    assert cal["margins"]["answerable_median"][0] > cal["margins"]["absent_median"][0]


def test_a_calibration_made_with_another_embedder_is_not_used(demo_index):
    manifest = json.loads(json.dumps(demo_index.manifest))
    manifest["calibration"]["embedder"] = {"name": "other", "model": "x", "dim": 768}
    cal = Calibration.from_manifest(manifest, demo_index.embedder.describe())
    assert cal.source.startswith("default") and "other" in cal.source
    assert Calibration.from_manifest(demo_index.manifest, demo_index.embedder.describe()).source == "index"


def test_calibrating_measures_this_index(extractive_engine):
    cal = calibrate_index(extractive_engine)
    assert cal.source == "index"
    assert 0.0 < cal.peak_mid < 0.2 and cal.peak_scale > 0


def test_a_question_about_exclusions_ranks_the_excluded_cases_first():
    chunks = [Chunk("p1", "benefit.md", "第九条　下列人员享受交通补贴：\n（一）正式员工；\n（二）外派人员。\n"
                                        "第十条　下列人员不享受交通补贴：\n（一）实习生；\n（二）退休返聘人员。")]
    q = "哪些人员不享受交通补贴？"
    index, stats = _Index(chunks), KBTerms(chunks=chunks)
    plain = gather(q, [_Hit(c) for c in chunks], index, stats=stats)
    read = gather(q, [_Hit(c) for c in chunks], index, stats=stats, polarity_weight=0.15)
    items = [u.text for u in read.units if u.kind == "item"]
    assert set(items[:2]) == {"（一）实习生；", "（二）退休返聘人员。"}
    assert set([u.text for u in plain.units if u.kind == "item"][:2]) != set(items[:2])
