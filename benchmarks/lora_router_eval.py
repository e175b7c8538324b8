"""LoRA router vs. SignalRouter on the demo knowledge base (CPU, a budget of minutes).

Distils a dataset from the demo KB (glossary + facts + the local packaged model as teacher
on a few chunks), trains a LoRA adapter (r=8 on q/v, short sequences) on CPU, exports it to a
llama.cpp GGUF, then reports for LoRARouter, SignalRouter and the cascade:

* route accuracy and expansion accuracy on the held-out eval split of the distilled data;
* route accuracy on knowledge/demo/eval_questions.jsonl (never trained on);
* route agreement between the two routers, and decision latency p50/p95 per tier.

    HF_HUB_OFFLINE=1 python benchmarks/lora_router_eval.py --steps 80 --max-chunks 10

Everything lands in ``--home`` (default /tmp/lora_router_home); reruns reuse the index, the
teacher cache and (same data + config) the training checkpoints.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def build_index(home: Path) -> Any:
    from knowledge.demo import DOCS_DIR, GLOSSARY_DIR
    from retrieval.store import IndexStore

    store = IndexStore(home)
    if store.current_version() is None:
        store.add_documents(sorted(p for p in DOCS_DIR.iterdir() if p.is_file()))
        for g in sorted(GLOSSARY_DIR.iterdir()):
            if g.is_file():
                store.add_glossary(g)
        store.build(full=True)
    return store.load()


def pct(values: list[float], q: float) -> float | None:
    from knowledge.core.numeric import percentile

    return round(percentile(values, q), 1) if values else None


def run_case(engine: Any, lora: Any, question: str) -> dict[str, Any]:
    t0 = time.perf_counter()
    _, signals = engine.decide(question)
    t1 = time.perf_counter()
    sig = engine.router.decide(signals)
    t2 = time.perf_counter()
    lo = lora._decide_lora(signals) if lora.llm is not None else sig
    t3 = time.perf_counter()
    from router.lora_format import resolution_label

    amb = {m.term: (m, r) for m, r in zip(signals.matches, signals.terms) if len(m.entry.meanings) > 1}
    lora_amb = {m.term: r for m, r in zip(signals.matches, lo.terms) if len(m.entry.meanings) > 1}
    return {
        "question": question, "signals": sig.route, "signals_conf": sig.confidence, "lora": lo.route,
        "lora_conf": lo.confidence,
        "sig_terms": {t: resolution_label(r, m) for t, (m, r) in amb.items()},
        "lora_terms": {t: resolution_label(lora_amb[t], amb[t][0]) for t in lora_amb},
        "ms_signals_pipeline": (t1 - t0) * 1000, "ms_signals_decide": (t2 - t1) * 1000,
        "ms_lora_decide": (t3 - t2) * 1000,
    }


def summarize(rows: list[dict[str, Any]], cascade_threshold: float) -> dict[str, Any]:
    n = len(rows)
    if not n:
        return {}
    acc = lambda key: round(sum(r[key] == r["gold"] for r in rows) / n, 4)  # noqa: E731
    casc = [r["signals"] if r["signals_conf"] >= cascade_threshold else r["lora"] for r in rows]
    exp = [(t, g, r) for r in rows for t, g in (r.get("gold_terms") or {}).items() if t in r["sig_terms"]]
    out = {
        "n": n,
        "route_accuracy": {"signals": acc("signals"), "lora": acc("lora"),
                           "cascade": round(sum(c == r["gold"] for c, r in zip(casc, rows)) / n, 4)},
        "agreement": round(sum(r["signals"] == r["lora"] for r in rows) / n, 4),
        "cascade_share_signals": round(sum(r["signals_conf"] >= cascade_threshold for r in rows) / n, 4),
        # The cascade's "measured agreement": how often the two routers agree when the
        # signals are confident (the rows the cascade would answer without the adapter).
        "agreement_at_threshold": _agreement_at(rows, cascade_threshold),
        "latency_ms": {
            "signals_pipeline(terms+retrieval)": {"p50": pct([r["ms_signals_pipeline"] for r in rows], 50),
                                                  "p95": pct([r["ms_signals_pipeline"] for r in rows], 95)},
            "signals_decide": {"p50": pct([r["ms_signals_decide"] for r in rows], 50),
                               "p95": pct([r["ms_signals_decide"] for r in rows], 95)},
            "lora_decide": {"p50": pct([r["ms_lora_decide"] for r in rows], 50),
                            "p95": pct([r["ms_lora_decide"] for r in rows], 95)},
        },
        "confusion_lora": _confusion(rows, "lora"), "confusion_signals": _confusion(rows, "signals"),
    }
    if exp:
        out["expansion_accuracy"] = {
            "n_terms": len(exp),
            "signals": round(sum(r["sig_terms"].get(t) == g for t, g, r in exp) / len(exp), 4),
            "lora": round(sum(r["lora_terms"].get(t) == g for t, g, r in exp) / len(exp), 4),
        }
    return out


def _agreement_at(rows: list[dict[str, Any]], threshold: float) -> float | None:
    sure = [r for r in rows if r["signals_conf"] >= threshold]
    return round(sum(r["signals"] == r["lora"] for r in sure) / len(sure), 4) if sure else None


def _confusion(rows: list[dict[str, Any]], key: str) -> dict[str, dict[str, int]]:
    from api.evaluation.metrics import confusion_matrix

    return confusion_matrix([(r["gold"], r[key]) for r in rows])


def _drop_rule_hint() -> None:
    """Both the distiller and the router build prompts through evidence_from_signals; wrap it
    so neither sees the rule router's verdict (this process only)."""
    import router.lora as lora_mod
    import router.lora_format as fmt

    original = fmt.evidence_from_signals

    def without_hint(*a: Any, **kw: Any) -> dict[str, Any]:
        return {**original(*a, **kw), "hint": None}

    fmt.evidence_from_signals = without_hint
    lora_mod.evidence_from_signals = without_hint


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--home", default="/tmp/lora_router_home")
    p.add_argument("--steps", type=int, default=80)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--max-len", type=int, default=288)
    p.add_argument("--max-chunks", type=int, default=10)
    p.add_argument("--max-per-route", type=int, default=240)
    p.add_argument("--hard-repeat", type=int, default=1, help="repeat rows where the rules are wrong N times")
    p.add_argument("--no-hint", action="store_true",
                   help="experiment: leave the rule router's verdict out of the prompt (training and serving)")
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--cascade-threshold", type=float, default=0.9)
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "lora_router_eval.json"))
    args = p.parse_args()

    from config.settings import Settings
    from finetune.distill import distill
    from router.adapters.gguf import write_gguf_adapter
    from finetune.train import TrainConfig, train
    from router.engine import Engine
    from router.llm.assets import packaged_gguf_path
    from router.llm.extractive import ExtractiveGenerator
    from router.lora import LoRARouter

    if args.no_hint:
        _drop_rule_hint()
    home = Path(args.home)
    settings = Settings(home=home)
    timings: dict[str, float] = {}
    t = time.perf_counter()
    index = build_index(home)
    timings["index_s"] = round(time.perf_counter() - t, 1)

    t = time.perf_counter()
    report = distill(index, home, max_chunks=args.max_chunks, progress=True, settings=settings,
                     max_per_route=args.max_per_route, hard_repeat=args.hard_repeat)
    timings["distill_s"] = round(time.perf_counter() - t, 1)
    print(json.dumps(report.to_dict(), ensure_ascii=False), file=sys.stderr)

    config = TrainConfig.load(None, {"max_steps": args.steps, "batch_size": args.batch, "max_seq_len": args.max_len,
                                     "lora_r": 8, "lora_alpha": 16, "target_modules": ["q_proj", "v_proj"],
                                     "learning_rate": args.lr, "eval_every": 0, "checkpoint_every": 20,
                                     "early_stopping_patience": 0, "device": "cpu"}, settings)
    run_dir = home / "train_runs" / f"{report.version}-s{args.steps}-b{args.batch}"
    t = time.perf_counter()
    result = train(config, report.path, run_dir, resume=True)
    timings["train_s"] = round(time.perf_counter() - t, 1)
    base = packaged_gguf_path(settings.cache_dir)
    adapter = write_gguf_adapter(run_dir, run_dir / "adapter.gguf", base)

    engine = Engine(settings, index, generator=ExtractiveGenerator())
    t = time.perf_counter()
    lora = LoRARouter(engine.routes, base_gguf=base, adapter_gguf=adapter, n_ctx=768, version=run_dir.name)
    timings["lora_load_s"] = round(time.perf_counter() - t, 1)

    held = [json.loads(line) for line in open(report.path / "eval.jsonl", encoding="utf-8")]
    rows_held = []
    for i, rec in enumerate(held):
        if i % 20 == 0:
            print(f"held-out {i}/{len(held)}", file=sys.stderr, flush=True)
        row = run_case(engine, lora, rec["meta"]["question"])
        row.update(gold=rec["meta"]["route"], gold_terms=rec["meta"]["terms"])
        rows_held.append(row)
    demo = [json.loads(line) for line in open(REPO / "knowledge" / "demo" / "eval_questions.jsonl", encoding="utf-8")]
    # Templated distillation can write a demo question word for word ("AM是什么意思？"):
    # those are reported apart, the rest is the honest held-out measure.
    seen = {json.loads(line)["meta"]["question"] for line in open(report.path / "train.jsonl", encoding="utf-8")}
    rows_demo = []
    for i, q in enumerate(demo):
        if not q.get("route"):
            continue
        if i % 20 == 0:
            print(f"demo {i}/{len(demo)}", file=sys.stderr, flush=True)
        row = run_case(engine, lora, q["question"])
        row.update(gold=q["route"], gold_terms=None, in_train=q["question"] in seen)
        rows_demo.append(row)

    out = {
        "dataset": report.to_dict(),
        "train": {k: v for k, v in result.to_dict().items() if k != "history"},
        "timings": timings,
        "held_out_split": summarize(rows_held, args.cascade_threshold),
        "demo_eval_questions": summarize(rows_demo, args.cascade_threshold),
        "demo_eval_questions_unseen": summarize([r for r in rows_demo if not r["in_train"]], args.cascade_threshold),
        "cascade_threshold": args.cascade_threshold,
        "args": vars(args),
    }
    # Store and (gate permitting) publish the adapter with the numbers the cascade reads.
    from router.adapters import AdapterStore

    held_sum = out["held_out_split"]
    metrics = {"route_accuracy": held_sum["route_accuracy"]["lora"],
               "expansion_accuracy": (held_sum.get("expansion_accuracy") or {}).get("lora", 0.0),
               "demo_route_accuracy": out["demo_eval_questions"]["route_accuracy"]["lora"],
               "cascade_threshold": args.cascade_threshold,
               "cascade_agreement": held_sum["agreement_at_threshold"] or 0.0,
               **result.metrics()}
    store = AdapterStore(home)
    out["published"] = store.admit(run_dir, metrics, ["route_accuracy", "expansion_accuracy"])
    out["adapter_version"] = store.version_names()[-1]
    # End to end: the engine picks the published adapter through settings.router.backend.
    lora_settings = Settings(home=home, router=settings.router.model_copy(update={"backend": "lora"}))
    if store.current():
        e2e = Engine(lora_settings, index, generator=ExtractiveGenerator())
        choice, _ = e2e.decide("交付中心的PM负责什么？")
        out["engine_backend_lora_sample"] = {"route": choice.route, "reason": choice.reason,
                                             "rewritten_query": choice.rewritten_query}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, ensure_ascii=False, indent=1, default=str), encoding="utf-8")
    (Path(args.out).with_suffix(".rows.jsonl")).write_text(
        "\n".join(json.dumps(r, ensure_ascii=False) for r in rows_held + rows_demo), encoding="utf-8")
    for name in ("held_out_split", "demo_eval_questions", "demo_eval_questions_unseen"):
        s = out[name]
        print(f"{name}: n={s['n']} route_acc={s['route_accuracy']} agreement={s['agreement']} "
              f"expansion={s.get('expansion_accuracy')} latency={s['latency_ms']}")
    print(f"train: steps={result.steps} eval_loss={result.eval_loss} train_loss={result.train_loss} "
          f"seconds={result.seconds:.0f}; timings={timings}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
