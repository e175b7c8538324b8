"""LoRA router vs. rule router (``signals``) on every test knowledge base, held-out ones named.

For each knowledge base of ``benchmarks/kbs/splits.json`` (ingested and indexed as a user would,
cached like kb_suite.py), every labelled question — with its conversation history where it has
one — goes through the engine's decision step (terminology layer, retrieval, evidence, route; no
generation) once per router. Reported per knowledge base and router: route accuracy, the share
of routes the two routers agree on, accuracy by question kind (plain / user-style kinds), and
the decision latency p50/p95 (the ``route`` stage: everything before generation).

The LoRA router is the published adapter of the knowledge base when there is one, else the base
adapter shipped in ``router/adapters/base/`` (trained on the dev knowledge bases only: its figures
on ``dev`` are on questions it was trained from; only ``heldout`` ones say how it transfers).

    HF_HUB_OFFLINE=1 python benchmarks/lora_router_eval.py                 # every knowledge base
    HF_HUB_OFFLINE=1 python benchmarks/lora_router_eval.py --split heldout
    HF_HUB_OFFLINE=1 python benchmarks/lora_router_eval.py --throughput     # + CPU training speed

``--throughput`` adds the training throughput of our loop on this machine against a plain HF
``Trainer`` + peft run on the same rows (``benchmarks/train_router.py --baseline``); the GPU
comparison is ``python benchmarks/train_router.py --gpu`` on a machine that has one.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROUTERS = ("signals", "lora")


def _pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def evaluate_kb(name: str, cache: Path, limit: int | None = None) -> dict[str, Any]:
    """Both routers' decisions on one knowledge base's labelled questions."""
    from api.evaluation.assistant import load_questions
    from benchmarks.kb_suite import build_home, kb_paths
    from config.settings import Settings
    from retrieval.store import IndexStore
    from router.engine import Engine, Timer
    from router.llm.extractive import ExtractiveGenerator

    base = Settings()
    home = build_home(name, cache, base)
    questions = [q for q in load_questions(kb_paths(name)[2]) if q.get("route")][:limit]
    index = IndexStore(home, base.model_copy(update={"home": home})).load()
    out: dict[str, Any] = {"questions": len(questions), "routers": {}}
    routes: dict[str, list[str]] = {}
    for backend in ROUTERS:
        settings = base.model_copy(update={"home": home, "router": base.router.model_copy(update={"backend": backend})})
        engine = Engine(settings, index, generator=ExtractiveGenerator())
        serving = {"backend": backend, "version": getattr(engine.router, "version", None),
                   "disabled": getattr(engine.router, "disabled_reason", "")}
        taken, ms, by_kind = [], [], {}
        for q in questions:
            timer = Timer()
            choice, _ = engine.decide(q["question"], q.get("history") or None, timer)
            taken.append(choice.route)
            ms.append(timer.ms["route"] + timer.ms.get("retrieve", 0.0))
            kind = q.get("kind", "plain")
            hit = choice.route == q["route"]
            k = by_kind.setdefault(kind, [0, 0])
            k[0] += hit
            k[1] += 1
        routes[backend] = taken
        correct = sum(t == q["route"] for t, q in zip(taken, questions))
        out["routers"][backend] = {
            "route_accuracy": round(correct / max(1, len(questions)), 3),
            "by_kind": {k: round(v[0] / v[1], 3) for k, v in sorted(by_kind.items())},
            "decision_ms_p50": round(statistics.median(ms), 1) if ms else 0.0,
            "decision_ms_p95": round(_pct(ms, 0.95), 1),
            "serving": {**serving, "calls": dict(getattr(engine.router, "calls", {}))},
        }
        close = getattr(engine, "close", None)
        if callable(close):
            close()
    same = sum(a == b for a, b in zip(routes["signals"], routes["lora"]))
    out["agreement"] = round(same / max(1, len(questions)), 3)
    out["lora_right_signals_wrong"] = sum(b == q["route"] != a for a, b, q in zip(routes["signals"], routes["lora"],
                                                                                   questions))
    out["signals_right_lora_wrong"] = sum(a == q["route"] != b for a, b, q in zip(routes["signals"], routes["lora"],
                                                                                   questions))
    return out


def main(argv: list[str] | None = None) -> int:
    from benchmarks.kb_suite import splits

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--split", choices=["dev", "heldout", "all"], default="all")
    ap.add_argument("--kbs", nargs="*")
    ap.add_argument("--limit", type=int)
    ap.add_argument("--cache", type=Path, default=Path(os.environ.get("KB_SUITE_CACHE", "/tmp/kb-suite")))
    ap.add_argument("--throughput", action="store_true", help="also measure CPU training throughput vs HF Trainer")
    ap.add_argument("--out", type=Path, help="write the results as JSON here")
    args = ap.parse_args(argv)

    split_of = splits()
    names = args.kbs or [n for n, s in split_of.items() if args.split in ("all", s)]
    results: dict[str, Any] = {"knowledge_bases": {}}
    print(f"{'knowledge base':<14} {'split':<8} {'n':>3}  {'signals':>7} {'lora':>6} {'agree':>6}  "
          f"{'lora+':>5} {'lora-':>5}  {'ms p50/p95 signals':>19} {'ms p50/p95 lora':>16}")
    for name in names:
        t0 = time.perf_counter()
        r = evaluate_kb(name, args.cache, args.limit)
        r["split"] = split_of.get(name, "?")
        r["seconds"] = round(time.perf_counter() - t0, 1)
        results["knowledge_bases"][name] = r
        s, lo = r["routers"]["signals"], r["routers"]["lora"]
        print(f"{name:<14} {r['split']:<8} {r['questions']:>3}  {s['route_accuracy']:>7.3f} {lo['route_accuracy']:>6.3f} "
              f"{r['agreement']:>6.3f}  {r['lora_right_signals_wrong']:>5} {r['signals_right_lora_wrong']:>5}  "
              f"{s['decision_ms_p50']:>9.0f}/{s['decision_ms_p95']:<9.0f} {lo['decision_ms_p50']:>7.0f}/"
              f"{lo['decision_ms_p95']:<8.0f}", flush=True)
    for name, r in results["knowledge_bases"].items():
        kinds = sorted(set(r["routers"]["signals"]["by_kind"]) | set(r["routers"]["lora"]["by_kind"]))
        cells = ", ".join(f"{k} {r['routers']['signals']['by_kind'].get(k, 0):.2f}/"
                          f"{r['routers']['lora']['by_kind'].get(k, 0):.2f}" for k in kinds)
        print(f"  {name} by kind (signals/lora): {cells}")
    print(f"  lora serving: {json.dumps(next(iter(results['knowledge_bases'].values()))['routers']['lora']['serving'], ensure_ascii=False)[:300]}"
          if results["knowledge_bases"] else "")
    if args.throughput:
        from benchmarks import train_router

        tp_out = Path("/tmp/lora_router_eval_throughput.json")
        train_router.main(["--baseline", "--steps", "3", "--batch", "4", "--seq-len", "256", "--out", str(tp_out)])
        results["throughput"] = json.loads(tp_out.read_text(encoding="utf-8"))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, ensure_ascii=False, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
