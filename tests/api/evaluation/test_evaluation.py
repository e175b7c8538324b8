"""The evaluation harness: metric functions against hand-computed values, the offline HTML
report, an end-to-end run over demo questions with the real extractive engine, and `kb eval`."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from api.evaluation.assistant import load_questions, run_eval, summarize, summary_table
from api.evaluation.metrics import (
    KBNumbers,
    answer_correct,
    check_numbers,
    confusion_matrix,
    contains_alternative,
    looks_like_refusal,
    percentile,
    refusal_scores,
    route_accuracy,
)
from api.evaluation.report import render_report
from knowledge.errors import ValidationError


# --- matching -------------------------------------------------------------------------------
@pytest.mark.parametrize("answer", ["上限为3000元。", "上限为3,000元[1]。", "上限为三千元", "上限为 3000 元"])
def test_numbers_match_in_any_notation(answer: str) -> None:
    assert answer_correct(answer, [["3000元"]]) is True


@pytest.mark.parametrize("answer", ["上限为13000元。", "上限为30000元", "上限为3000.5元", "上限为3000%"])
def test_numbers_match_as_whole_quantities_only(answer: str) -> None:
    assert answer_correct(answer, [["3000元"]]) is False


def test_every_group_needs_one_alternative() -> None:
    groups = [["客户经理", "Account Manager"], ["500元", "五百元"]]
    assert answer_correct("AM即Account Manager，住宿每晚五百元。", groups) is True
    assert answer_correct("AM即Account Manager。", groups) is False
    assert answer_correct("anything", []) is None
    assert contains_alternative("The Account Manager (AM) approves.", ["account manager"])


def test_refusal_detection() -> None:
    assert looks_like_refusal("知识库中没有找到该问题的答案。")
    assert looks_like_refusal("The knowledge base does not contain the answer to this question.")
    assert looks_like_refusal("资料中没有提到这一点。")
    assert looks_like_refusal("住宿标准为每晚500元。", route="refuse")
    assert not looks_like_refusal("住宿标准为每晚500元[1]。", route="rag")


# --- aggregate metrics on hand-made records ----------------------------------------------------
def test_percentile_matches_numpy() -> None:
    xs = [3.0, 1.0, 7.5, 12.0, 4.0, 9.0, 2.5]
    for q in (0, 5, 50, 90, 95, 100):
        assert percentile(xs, q) == pytest.approx(float(np.percentile(xs, q)))
    assert percentile([], 50) is None
    with pytest.raises(ValidationError):
        percentile(xs, 101)


def test_confusion_and_route_accuracy() -> None:
    pairs = [("fact", "fact"), ("fact", "rag"), ("rag", "rag"), ("glossary", "glossary"),
             ("refuse", "rag"), ("refuse", "refuse"), ("rag", "error")]
    m = confusion_matrix(pairs)
    assert m["fact"] == {"glossary": 0, "fact": 1, "rag": 1, "refuse": 0, "error": 0}
    assert m["refuse"]["rag"] == 1 and m["refuse"]["refuse"] == 1
    assert m["rag"]["error"] == 1
    assert sum(sum(row.values()) for row in m.values()) == len(pairs)
    assert route_accuracy(pairs) == round(4 / 7, 4)
    assert route_accuracy([]) is None


def test_refusal_precision_recall() -> None:
    # 3 should refuse (2 did), 4 should answer (1 refused anyway)
    pairs = [(True, True), (True, True), (True, False), (False, True), (False, False), (False, False), (False, False)]
    r = refusal_scores(pairs)
    assert (r["tp"], r["fp"], r["fn"], r["tn"]) == (2, 1, 1, 3)
    assert r["precision"] == round(2 / 3, 4) and r["recall"] == round(2 / 3, 4)
    assert refusal_scores([(False, False)])["precision"] is None


def _out(route: str, correct, refused: bool, cited, latency: float, numbers=()) -> dict:
    return {"answer": "x", "route": route, "correct": correct, "refused": refused, "citation_correct": cited,
            "latency_ms": latency, "numbers": [{"supported": s} for s in numbers]}


def test_summarize_hand_computed() -> None:
    records = [
        {"id": "1", "route": "glossary", "expected": [["客户经理"]], "refuse": False,
         "ours": _out("glossary", True, False, True, 10.0)},
        {"id": "2", "route": "fact", "expected": [["500元"]], "refuse": False,
         "ours": _out("fact", True, False, True, 20.0, numbers=[True])},
        {"id": "3", "route": "rag", "expected": [["3天"]], "refuse": False,
         "ours": _out("rag", False, False, False, 1000.0, numbers=[True, False, True])},
        {"id": "4", "route": "rag", "expected": [["审批"]], "refuse": False,
         "ours": _out("refuse", False, True, None, 30.0)},
        {"id": "5", "route": "refuse", "expected": [], "refuse": True,
         "ours": _out("refuse", True, True, None, 40.0)},
    ]
    m = summarize(records, "ours")
    assert m["n"] == 5
    assert m["route_accuracy"] == 0.8                  # 4 of 5 routes right
    assert m["answer_correctness"] == 0.5              # 2 of the 4 answerable
    assert m["overall_accuracy"] == 0.6                # + the right refusal
    assert m["refusal"]["precision"] == 0.5 and m["refusal"]["recall"] == 1.0
    assert m["unsupported_number_rate"] == 0.25        # 1 of 4 numbers
    assert m["answers_with_unsupported_numbers"] == 0.5
    assert m["citation_correctness"] == round(2 / 3, 4)
    lat = m["latency_ms"]["by_route"]
    assert lat["refuse"]["p50"] == 35.0 and lat["refuse"]["n"] == 2
    assert lat["all"]["p50"] == 30.0
    assert lat["all"]["p95"] == pytest.approx(float(np.percentile([10, 20, 1000, 30, 40], 95)))
    assert m["latency_ms"]["by_expected_route"]["rag"]["n"] == 2
    assert "route accuracy" in summary_table({"ours": m})


def test_kb_numbers_index_every_stated_quantity() -> None:
    kb = KBNumbers(["一线城市住宿每晚600元，其他城市450元。", "审批需3-5个工作日。", "比例为百分之三十"])
    assert kb.contains(600, "元") and kb.contains(450, "") and kb.contains(5, "工作日")
    assert kb.contains(30, "%")
    assert not kb.contains(60, "元") and not kb.contains(600, "%")


def test_check_numbers_says_where_each_number_is_supported() -> None:
    from router.verifier import Verifier

    kb = KBNumbers(["住宿每晚600元。", "餐补每天100元。"])
    checks = check_numbers("住宿每晚600元，餐补每天100元，出差3天，另补999元。", "出差3天能报多少？",
                           [("c1", "住宿每晚600元。")], kb, Verifier())
    where = {c["text"].replace(" ", ""): c["where"] for c in checks}
    assert where["600元"] == "passages"        # in the cited passage
    assert where["100元"] == "kb"              # not cited, but stated in the knowledge base
    assert where["3天"] == "question"          # the user gave it
    assert where["999元"] is None              # invented
    assert [c["supported"] for c in checks].count(False) == 1


def test_load_questions_checks_lines(tmp_path: Path) -> None:
    good = tmp_path / "q.jsonl"
    good.write_text('{"id": "a", "question": "AM是什么", "route": "glossary", "expected": [["客户经理"]]}\n\n'
                    '{"id": "b", "question": "火星上有几家分公司", "route": "refuse"}\n', encoding="utf-8")
    qs = load_questions(good)
    assert [q["refuse"] for q in qs] == [False, True]
    assert qs[1]["expected"] == []
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "question": "x", "route": "maybe"}\n', encoding="utf-8")
    with pytest.raises(ValidationError, match="bad.jsonl:1"):
        load_questions(bad)


# --- report ---------------------------------------------------------------------------------
def _fake_result() -> dict:
    records = [
        {"id": "q<1>", "question": "AM是什么意思？<script>alert(1)</script>", "route": "glossary",
         "expected": [["客户经理"]], "refuse": False,
         "ours": {**_out("glossary", True, False, True, 12.0), "answer": "AM 指 客户经理 & <b>",
                  "citations": [{"source": "缩略语表.xlsx", "page": None, "chunk_id": "glossary:AM", "quote": "AM: 客户经理"}],
                  "verification": {"status": "not_applicable", "numbers": []}, "confidence": 0.9},
         "baseline": {**_out("rag", False, False, False, 900.0), "answer": "不知道"}},
        {"id": "q2", "question": "住宿标准？", "route": "fact", "expected": [["500元"]], "refuse": False,
         "ours": {**_out("fact", True, False, True, 40.0), "numbers": [{"text": "500元", "supported": True,
                                                                        "where": "passages"}]},
         "baseline": {**_out("rag", True, False, True, 1500.0)}},
    ]
    metrics = {"ours": summarize(records, "ours"), "baseline": summarize(records, "baseline")}
    return {"config": {"questions": 2, "generator": "extractive"}, "metrics": metrics, "records": records}


def test_report_is_offline_html_with_charts() -> None:
    html = render_report(_fake_result())
    assert html.startswith("<!DOCTYPE html>")
    assert html.count("<svg") >= 3                      # comparison bars, confusion matrix, latency
    assert "Route confusion matrix" in html and "Latency distribution" in html
    assert not re.search(r"https?://", html)            # nothing fetched from a CDN
    assert "<script" not in html.lower().replace("&lt;script", "")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html  # question text escaped
    assert "客户经理 &amp; &lt;b&gt;" in html


# --- end to end -----------------------------------------------------------------------------
def _demo_questions(n_per_route: int = 2) -> list[dict]:
    from knowledge.demo import EVAL_QUESTIONS

    if not EVAL_QUESTIONS.is_file():
        pytest.skip(f"{EVAL_QUESTIONS} is not written yet")
    qs = load_questions(EVAL_QUESTIONS)
    picked: list[dict] = []
    for route in ("glossary", "fact", "rag", "refuse"):
        picked += [q for q in qs if q["route"] == route][:n_per_route]
    return picked


def test_run_eval_end_to_end_on_demo_questions(extractive_engine, demo_index, demo_settings) -> None:
    from api.evaluation.baseline import NaiveRAG

    questions = _demo_questions()
    baseline = NaiveRAG(demo_index, extractive_engine.generator, demo_settings)
    result = run_eval(extractive_engine, questions, baseline)
    assert len(result["records"]) == len(questions)
    ours, base = result["metrics"]["ours"], result["metrics"]["baseline"]
    assert ours["n"] == base["n"] == len(questions) and ours["errors"] == 0
    for m in (ours, base):
        for key in ("overall_accuracy", "answer_correctness", "citation_correctness"):
            assert m[key] is None or 0.0 <= m[key] <= 1.0
    assert ours["route_accuracy"] is not None and base["route_accuracy"] is None
    assert sum(sum(r.values()) for r in ours["confusion"].values()) == len(questions)
    assert set(ours["latency_ms"]["by_route"]) >= {"all"}
    for rec in result["records"]:
        o = rec["ours"]
        assert o["route"] in ("glossary", "fact", "rag", "refuse")
        assert o["latency_ms"] > 0 and rec["baseline"]["latency_ms"] > 0
        if o["refused"]:
            assert o["numbers"] == [] and o["citation_correct"] is None
        # the assistant never shows a number that is not in the knowledge base
        assert all(n["supported"] for n in o["numbers"]), (rec["question"], o["answer"], o["numbers"])
    glossary = [r for r in result["records"] if r["route"] == "glossary"]
    assert any(r["ours"]["correct"] for r in glossary), [r["ours"]["answer"] for r in glossary]
    html = render_report(result)
    assert "<svg" in html and not re.search(r"https?://", html)


def test_kb_eval_cli_writes_three_outputs(copy_home: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    from api.cli import main
    from config.settings import reset_settings

    questions = _demo_questions(1)
    qfile = tmp_path / "q.jsonl"
    qfile.write_text("".join(json.dumps(q, ensure_ascii=False) + "\n" for q in questions), encoding="utf-8")
    monkeypatch.setenv("KB_HOME", str(copy_home))  # kb eval records its report in KB_HOME: not the shared demo home
    reset_settings()
    try:
        code = main(["eval", str(qfile), "--report", str(tmp_path / "rep"), "--generator", "extractive",
                     "--limit", "3"])
    finally:
        reset_settings()
    assert code == 0
    metrics = json.loads((tmp_path / "rep" / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["config"]["questions"] == 3 and set(metrics["metrics"]) == {"ours", "baseline"}
    lines = (tmp_path / "rep" / "answers.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 3 and "baseline" in json.loads(lines[0])
    assert "<svg" in (tmp_path / "rep" / "report.html").read_text(encoding="utf-8")
    out = capsys.readouterr().out
    assert "answer correctness" in out and "baseline" in out
