"""The ``kb`` command line, run in-process on a private copy of the demo knowledge base."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from api.cli import main


@pytest.fixture()
def kb_env(copy_home: Path, monkeypatch):
    from config import reset_settings
    from api.state import set_engine

    monkeypatch.setenv("KB_HOME", str(copy_home))
    monkeypatch.setenv("KB_LLM__BACKEND", "extractive")
    reset_settings()
    set_engine(None)
    yield copy_home
    set_engine(None)
    reset_settings()


def test_search_json_has_citations(kb_env, capsys):
    assert main(["search", "客户经理出差住宿标准", "--k", "3", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert len(hits) == 3
    assert {"source", "page", "chunk_id", "quote", "score", "text"} <= set(hits[0])


def test_glossary_lookup(kb_env, capsys):
    assert main(["glossary", "lookup", "PO"]) == 0
    out = capsys.readouterr().out
    assert "采购订单" in out and "产品负责人" in out
    assert main(["glossary", "lookup", "NOPE_NOT_A_TERM"]) == 1


def test_ask_json_and_batch(kb_env, tmp_path, capsys):
    assert main(["ask", "--json", "PM是什么意思？"]) == 0
    ans = json.loads(capsys.readouterr().out)
    assert ans["route"] == "glossary"

    inp, out = tmp_path / "q.jsonl", tmp_path / "a.jsonl"
    inp.write_text('{"id": "q1", "question": "婚假是几天？"}\n{"id": "q2"}\nnot json\n'
                   '{"id": "q3", "question": "公司的股票代码是多少？"}\n', encoding="utf-8")
    assert main(["ask", "--batch", str(inp), "--out", str(out)]) == 1  # bad lines reported, batch kept
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r.get("id") for r in rows] == ["q1", "q2", None, "q3"]
    assert rows[0]["route"] == "fact" and "error" in rows[1] and "error" in rows[2]
    assert rows[3]["route"] == "refuse"


def test_ingest_then_incremental_index(kb_env, tmp_path, capsys):
    doc = tmp_path / "停车管理规定.md"
    doc.write_text("# 停车管理规定\n\n第一条　员工在总部停车场停车，每月停车费为150元，由行政部统一收取。\n",
                   encoding="utf-8")
    assert main(["ingest", str(doc)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["added"] == ["停车管理规定.md"]
    assert report["embedded_chunks"] >= 1 and len(report["unchanged"]) == 6
    assert main(["search", "总部停车场每月停车费", "--k", "1", "--json"]) == 0
    top = json.loads(capsys.readouterr().out)[0]
    assert top["source"] == "停车管理规定.md" and "150元" in top["text"]


def test_ingest_reports_missing_path(kb_env, capsys):
    assert main(["ingest", "--no-index", "/nonexistent/file.pdf"]) == 1
    assert "no such file" in capsys.readouterr().err


def test_expand_batch(kb_env, tmp_path):
    from knowledge.demo import GLOSSARY_FILE

    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    inp.write_text('{"id": 1, "text": "项目启动会上由PM负责制定里程碑", "term": "PM"}\n'
                   '{"id": 2, "text": "把PO号填到付款申请里", "term": "PO"}\n'
                   '{"id": 3, "text": "missing the term field"}\n', encoding="utf-8")
    assert main(["expand", "--glossary", str(GLOSSARY_FILE), "--batch", str(inp), "--out", str(out)]) == 1
    rows = {r["id"]: r for r in map(json.loads, out.read_text(encoding="utf-8").splitlines())}
    assert rows[1]["expansion"] == "Project Manager" and rows[2]["expansion"] == "Purchase Order"
    assert 0 < rows[1]["confidence"] <= 1 and 3 not in rows


def test_verify_batch(kb_env, tmp_path):
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    inp.write_text(json.dumps({"id": "a", "answer": "住宿标准为3万元，另有170元补贴",
                               "passages": ["住宿标准为30,000元，补贴70元"]}, ensure_ascii=False) + "\n"
                   + json.dumps({"id": "b", "answer": "no figures", "passages": []}) + "\n", encoding="utf-8")
    assert main(["verify", "--batch", str(inp), "--out", str(out)]) == 0
    rows = {r["id"]: r for r in map(json.loads, out.read_text(encoding="utf-8").splitlines())}
    assert rows["a"]["status"] == "flagged"
    assert [(n["value"], n["supported"]) for n in rows["a"]["numbers"]] == [(30000, True), (170, False)]
    assert rows["b"] == {"id": "b", "status": "not_applicable", "numbers": []}
