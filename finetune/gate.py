"""The adapter gate of ``kb train``: task metrics of a trained router adapter.

(Evaluating the whole assistant, ``kb eval``, is :mod:`api.evaluation.assistant`, not this.)

``evaluate_adapter(adapter_dir, settings)`` exports the adapter to a llama.cpp GGUF, serves
it with :class:`router.lora.LoRARouter` and scores it on the eval split of the current
distilled dataset: ``route_accuracy``, ``expansion_accuracy`` (ambiguous terms only),
``rewrite_validity`` (the rewritten query equals the dataset's), ``answer_accuracy`` (the
whole engine answering with the adapter as its router, see :func:`answer_correct`), and
the cascade numbers ``cascade_threshold`` / ``cascade_agreement`` (how often SignalRouter
and the adapter agree where SignalRouter is at least that confident) that the router reads
from the published manifest.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from finetune.datasets import current_dataset
from retrieval.store import IndexStore
from router.adapters.gguf import ADAPTER_GGUF, write_gguf_adapter
from router.engine import Engine
from router.llm.assets import packaged_gguf_path
from router.llm.extractive import ExtractiveGenerator
from router.lora import LoRARouter
from router.lora_format import resolution_label

CASCADE_THRESHOLD = 0.9


_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def answer_correct(meta: dict[str, Any], answer: dict[str, Any]) -> bool:
    """Did the engine's answer do what the dataset row asks? glossary: every gold meaning is
    in the answer; fact: every number of the grounded fact is; rag: answered (not refused);
    refuse: refused.

    >>> answer_correct({"route": "fact", "answer": "单笔超过3000元需签协议"}, {"route": "fact", "answer": "3000元"})
    True
    >>> answer_correct({"route": "glossary", "terms": {"PM": "产品经理/项目经理"}}, {"route": "glossary",
    ...                 "answer": "PM：项目经理"})
    False
    """
    route, text = answer.get("route"), answer.get("answer", "")
    if meta["route"] == "refuse":
        return route == "refuse"
    if route == "refuse":
        return False
    if meta["route"] == "glossary":
        return all(part in text for label in meta.get("terms", {}).values() for part in label.split("/"))
    if meta["route"] == "fact":
        flat = text.replace(",", "")
        return all(n in _NUMBER.findall(flat) for n in _NUMBER.findall(meta.get("answer", "").replace(",", "")))
    return bool(text.strip())


def score_rows(engine: Any, router: Any, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per question: gold and predicted route / ambiguous-term labels for both routers, and
    the whole pipeline's answer with each of them as the engine's router (each decision is
    made once and answered from)."""
    piped = Engine(engine.settings, engine.index, generator=engine.generator, router=router)
    rows = []
    for rec in records:
        meta = rec["meta"]
        question = meta["question"]
        rule, signals = engine.decide(question)
        lora, lora_signals = piped.decide(question)
        terms = [(meta["terms"][m.term], resolution_label(rl, m)) for m, rl in zip(signals.matches, lora.terms)
                 if len(m.entry.meanings) > 1 and m.term in meta["terms"]]
        answer = _final(piped.answer_decided(question, lora, lora_signals, stream=False))
        rule_answer = _final(engine.answer_decided(question, rule, signals, stream=False))
        rows.append({"gold": meta["route"], "signals": rule.route, "signals_conf": rule.confidence,
                     "lora": lora.route, "terms": terms,
                     "rewrite_ok": answer["rewritten_query"] == meta.get("query", question),
                     "answer_ok": answer_correct(meta, answer),
                     "signals_answer_ok": answer_correct(meta, rule_answer)})
    return rows


def _final(events: Any) -> dict[str, Any]:
    """The answer dict of an engine event stream."""
    return next(e["answer"] for e in events if e["type"] == "final").to_dict()


def metrics_from_rows(rows: list[dict[str, Any]], threshold: float = CASCADE_THRESHOLD) -> dict[str, float]:
    """Route/expansion accuracy and the cascade agreement.

    >>> metrics_from_rows([{"gold": "rag", "lora": "rag", "signals": "rag", "signals_conf": 0.95,
    ...                     "terms": [("项目经理", "项目经理")]}])["expansion_accuracy"]
    1.0
    """
    n = len(rows) or 1
    terms = [t for r in rows for t in r["terms"]]
    sure = [r for r in rows if r["signals_conf"] >= threshold]
    return {
        "route_accuracy": sum(r["lora"] == r["gold"] for r in rows) / n,
        "expansion_accuracy": sum(g == p for g, p in terms) / len(terms) if terms else 1.0,
        "signals_route_accuracy": sum(r["signals"] == r["gold"] for r in rows) / n,
        "rewrite_validity": sum(r.get("rewrite_ok", False) for r in rows) / n,
        "answer_accuracy": sum(r.get("answer_ok", False) for r in rows) / n,
        "signals_answer_accuracy": sum(r.get("signals_answer_ok", False) for r in rows) / n,
        "cascade_threshold": threshold,
        "cascade_agreement": sum(r["signals"] == r["lora"] for r in sure) / len(sure) if sure else 0.0,
    }


def evaluate_adapter(adapter_dir: str | Path, settings: Any) -> dict[str, float]:
    """Metrics of the adapter in ``adapter_dir`` on the current dataset's eval split."""
    adapter_dir = Path(adapter_dir)
    eval_file = current_dataset(settings.home) / "eval.jsonl"
    records = [json.loads(line) for line in eval_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    records = [r for r in records if "meta" in r]
    if not records:
        return {}
    manifest = json.loads((adapter_dir / "train_manifest.json").read_text(encoding="utf-8"))
    base = Path(manifest.get("base_gguf") or packaged_gguf_path(settings.cache_dir))
    gguf = write_gguf_adapter(adapter_dir, adapter_dir / ADAPTER_GGUF, base)
    # The reference router is always SignalRouter, whatever the serving backend is set to.
    signals_settings = settings.model_copy(update={"router": settings.router.model_copy(update={"backend": "signals"})})
    engine = Engine(signals_settings, IndexStore(settings.home, settings).load(), generator=ExtractiveGenerator())
    router = LoRARouter(engine.routes, base_gguf=base, adapter_gguf=gguf, n_ctx=768)
    if router.llm is None:
        return {"route_accuracy": 0.0, "expansion_accuracy": 0.0}
    return metrics_from_rows(score_rows(engine, router, records))
