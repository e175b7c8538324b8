"""The benchmark question sets beside questions.jsonl: tiers.jsonl and paired.jsonl.

Shape checks only (the full check, that every expected alternative occurs in the built documents,
is ``python benchmarks/kbs/build.py benchmarks/kbs/<kb> --check``), plus the suite's per-kind and
per-form reports on hand-made rows.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from api.evaluation.assistant import load_questions

REPO = Path(__file__).resolve().parents[1]
KBS = REPO / "benchmarks" / "kbs"


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the file runs
    spec.loader.exec_module(module)
    return module


build = _load("kbs_build", KBS / "build.py")
suite = _load("kb_suite", REPO / "benchmarks" / "kb_suite.py")

TIERS = sorted(KBS.glob("*/tiers.jsonl"))
PAIRED = sorted(KBS.glob("*/paired.jsonl"))


def test_the_sets_have_their_sizes():
    tiers = [json.loads(l) for p in TIERS for l in p.read_text(encoding="utf-8").splitlines() if l.strip()]
    paired = [json.loads(l) for p in PAIRED for l in p.read_text(encoding="utf-8").splitlines() if l.strip()]
    assert len(TIERS) >= 3 and len(tiers) >= 40
    assert {q["kind"] for q in tiers} >= {"tier", "boundary", "negation", "piecewise", "direction"}
    assert all(q["route"] == "rag" for q in tiers if q.get("derived"))
    assert len(PAIRED) >= 3 and len({(q["pair"]) for q in paired}) >= 40
    assert sum(q["refuse"] for q in paired) >= 3


@pytest.mark.parametrize("path", TIERS + PAIRED, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_set_file_is_well_formed(path):
    assert build.check_eval_questions(path) == []
    assert load_questions(path)  # the evaluator reads it too
    if path.name == "paired.jsonl":
        assert build.check_paired_questions(path) == []


def test_paired_check_finds_a_missing_form_and_a_disagreement(tmp_path):
    rows = [{"id": "a-p", "pair": "a", "form": "plain", "question": "?", "route": "fact", "expected": [["3天"]]},
            {"id": "a-c", "pair": "a", "form": "colloquial", "question": "?", "route": "fact", "expected": [["3天"]]},
            {"id": "b-p", "pair": "b", "form": "plain", "question": "?", "route": "fact", "expected": [["1"]]},
            {"id": "b-c", "pair": "b", "form": "colloquial", "question": "?", "route": "rag", "expected": [["1"]]},
            {"id": "b-e", "pair": "b", "form": "english", "question": "?", "route": "fact", "expected": [["1"]]}]
    path = tmp_path / "paired.jsonl"
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows), encoding="utf-8")
    problems = build.check_paired_questions(path)
    assert any(p.startswith("a: forms") for p in problems)
    assert any(p.startswith("b: the forms disagree") for p in problems)


def test_paired_report_gives_forms_and_ratios():
    rows = [{"kb": "k", "pair": p, "form": f, "correct": ok, "kind": f}
            for p, oks in (("1", (True, True, False)), ("2", (True, False, False)))
            for f, ok in zip(suite.FORMS, oks)]
    report = suite.paired_report(rows)
    assert report["by_form"]["plain"]["accuracy"] == 1.0
    assert report["colloquial/plain"] == 0.5
    assert report["english/plain"] == 0.0
    assert report["all_three_correct"] == 0.0 and report["n_pairs"] == 2


def test_tier_report_counts_strict_answers():
    rows = [{"kind": "tier", "correct": True, "strict": False}, {"kind": "tier", "correct": True, "strict": True},
            {"kind": "boundary", "correct": False, "strict": False}]
    report = suite.tier_report(rows)
    assert report["tier"] == {"n": 2, "accuracy": 1.0, "strict": 0.5}
    assert report["all"]["n"] == 3
