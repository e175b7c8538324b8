"""The ``kb train`` gate's task metrics: the adapter served by llama.cpp as the engine's router,
on the eval split of a dataset distilled from the demo knowledge base."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fakes.adapters import zero_lora_adapter

pytest.importorskip("llama_cpp")


def _zero_adapter(folder: Path, base_gguf: Path) -> Path:
    zero_lora_adapter(folder)
    (folder / "train_manifest.json").write_text(json.dumps({"base_gguf": str(base_gguf)}))
    return folder


def test_gate_metrics_run_the_adapter_through_the_whole_engine(copy_home, tmp_path):
    from config.settings import Settings
    from finetune.distill import distill
    from finetune.gate import evaluate_adapter
    from retrieval.store import IndexStore
    from router.llm.assets import packaged_gguf_path

    settings = Settings(home=copy_home)
    index = IndexStore(copy_home).load()
    report = distill(index, copy_home, progress=False, use_teacher=False, settings=settings,
                     max_per_route=4, eval_ratio=0.5)
    assert report.eval >= 4
    adapter = _zero_adapter(tmp_path / "adapter", packaged_gguf_path(settings.cache_dir))
    metrics = evaluate_adapter(adapter, settings)
    for key in ("route_accuracy", "expansion_accuracy", "rewrite_validity", "answer_accuracy",
                "signals_route_accuracy", "signals_answer_accuracy", "cascade_agreement"):
        assert 0.0 <= metrics[key] <= 1.0, (key, metrics)
    assert (adapter / "adapter.gguf").is_file()  # exported for llama.cpp on the way
    # SignalRouter on rows distilled from the same index: a sanity floor for the harness.
    assert metrics["signals_route_accuracy"] >= 0.5, metrics


def test_answer_correct_per_route():
    from finetune.gate import answer_correct

    fact = {"route": "fact", "answer": "单笔采购金额超过10,000元的，须签订正式合同"}
    assert answer_correct(fact, {"route": "fact", "answer": "超过10000元须签合同"})
    assert not answer_correct(fact, {"route": "fact", "answer": "超过3000元须签协议"})
    assert not answer_correct(fact, {"route": "refuse", "answer": "知识库中没有"})
    assert answer_correct({"route": "refuse"}, {"route": "refuse", "answer": "没有"})
    assert not answer_correct({"route": "refuse"}, {"route": "rag", "answer": "答"})
    assert answer_correct({"route": "rag"}, {"route": "rag", "answer": "先申请，再审批"})
    gl = {"route": "glossary", "terms": {"PM": "产品经理/项目经理"}}
    assert answer_correct(gl, {"route": "glossary", "answer": "PM：产品经理；项目经理"})
