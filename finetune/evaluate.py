"""Task metrics of a trained router adapter, for the ``kb train`` gate.

``evaluate_adapter(adapter_dir, settings)`` exports the adapter to a llama.cpp GGUF, serves
it with :class:`router.lora.LoRARouter` and scores it on the eval split of the current
distilled dataset: ``route_accuracy``, ``expansion_accuracy`` (ambiguous terms only), and
the cascade numbers ``cascade_threshold`` / ``cascade_agreement`` (how often SignalRouter
and the adapter agree where SignalRouter is at least that confident) that the router reads
from the published manifest.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CASCADE_THRESHOLD = 0.9


def label_of(resolution: Any, match: Any) -> str:
    """The router label of a resolution: the chosen meaning, or all of them when undecided."""
    from router.lora_format import all_meanings_label, meaning_label

    ms = match.entry.meanings
    if len(ms) > 1 and not resolution.decided:
        return all_meanings_label(ms)
    chosen = [m for m in ms if (m.english, m.chinese) == (resolution.expansion, resolution.meaning)]
    return meaning_label(chosen[0] if chosen else ms[0]) if ms else ""


def score_rows(engine: Any, router: Any, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per question: gold and predicted route / ambiguous-term labels for both routers."""
    rows = []
    for rec in records:
        meta = rec["meta"]
        _, signals = engine.decide(meta["question"])
        sig = engine.router.decide(signals)
        lora = router._decide_lora(signals)
        amb = [(m, rs, rl) for m, rs, rl in zip(signals.matches, signals.terms, lora.terms)
               if len(m.entry.meanings) > 1 and m.term in meta["terms"]]
        rows.append({"gold": meta["route"], "signals": sig.route, "signals_conf": sig.confidence,
                     "lora": lora.route,
                     "terms": [(meta["terms"][m.term], label_of(rl, m)) for m, _rs, rl in amb]})
    return rows


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
        "cascade_threshold": threshold,
        "cascade_agreement": sum(r["signals"] == r["lora"] for r in sure) / len(sure) if sure else 0.0,
    }


def evaluate_adapter(adapter_dir: str | Path, settings: Any) -> dict[str, float]:
    """Metrics of the adapter in ``adapter_dir`` on the current dataset's eval split."""
    from finetune.cli import current_dataset
    from finetune.export import write_gguf_adapter
    from retrieval.store import IndexStore
    from router.engine import Engine
    from router.llm.assets import packaged_gguf_path
    from router.llm.extractive import ExtractiveGenerator
    from router.lora import LoRARouter

    adapter_dir = Path(adapter_dir)
    eval_file = current_dataset(settings.home) / "eval.jsonl"
    records = [json.loads(line) for line in eval_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    records = [r for r in records if "meta" in r]
    if not records:
        return {}
    manifest = json.loads((adapter_dir / "train_manifest.json").read_text(encoding="utf-8"))
    base = Path(manifest.get("base_gguf") or packaged_gguf_path(settings.cache_dir))
    gguf = write_gguf_adapter(adapter_dir, adapter_dir / "adapter.gguf", base)
    # The reference router is always SignalRouter, whatever the serving backend is set to.
    signals_settings = settings.model_copy(update={"router": settings.router.model_copy(update={"backend": "signals"})})
    engine = Engine(signals_settings, IndexStore(settings.home).load(), generator=ExtractiveGenerator())
    router = LoRARouter(engine.routes, base_gguf=base, adapter_gguf=gguf, n_ctx=768)
    if router.llm is None:
        return {"route_accuracy": 0.0, "expansion_accuracy": 0.0}
    return metrics_from_rows(score_rows(engine, router, records))
