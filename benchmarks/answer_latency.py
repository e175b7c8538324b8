"""Answer latency per route on the demo knowledge base, and of the route decision alone.

Builds the demo knowledge base into a temporary KB_HOME (or uses --home), then times
``Engine.answer`` for questions of every route from the demo evaluation set, once per local
generator backend (llama_cpp = the packaged 0.5B model, extractive = no LLM), and
``Engine.decide`` (terminology layer + retrieval + route decision) alone. Reports p50/p95
per route and the share of the total spent in each stage.

    python benchmarks/answer_latency.py [--per-route 8] [--backends llama_cpp,extractive]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def pct(xs: list[float], q: float) -> float:
    """Nearest-rank percentile. ``pct([1, 2, 3, 4], 0.5) == 2``."""
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[max(0, min(len(s) - 1, int(round(q * len(s) + 0.5)) - 1))]


def build_home(home: Path) -> None:
    from knowledge.demo import DOCS_DIR, GLOSSARY_DIR
    from retrieval.store import IndexStore

    store = IndexStore(home)
    store.add_documents(sorted(p for p in DOCS_DIR.iterdir() if p.is_file()))
    for g in sorted(GLOSSARY_DIR.iterdir()):
        if g.is_file():
            store.add_glossary(g)
    store.build()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--home", help="an indexed KB_HOME (default: build the demo into a temp folder)")
    ap.add_argument("--per-route", type=int, default=8, help="questions per expected route")
    ap.add_argument("--backends", default="llama_cpp,extractive")
    args = ap.parse_args()

    from config.settings import Settings
    from knowledge.demo import EVAL_QUESTIONS
    from retrieval.store import IndexStore
    from router.engine import Engine, Timer
    from router.llm import create_generator

    tmp = None
    if args.home:
        home = Path(args.home)
    else:
        tmp = tempfile.TemporaryDirectory()
        home = Path(tmp.name)
        t = time.perf_counter()
        build_home(home)
        print(f"built demo index in {time.perf_counter() - t:.1f} s", file=sys.stderr)

    questions = [json.loads(line) for line in open(EVAL_QUESTIONS, encoding="utf-8") if line.strip()]
    by_route: dict[str, list[str]] = defaultdict(list)
    for q in questions:
        if len(by_route[q["route"]]) < args.per_route:
            by_route[q["route"]].append(q["question"])
    sample = [q for qs in by_route.values() for q in qs]

    base = Settings(home=home)
    index = IndexStore(home).load()
    results: dict[str, dict] = {}

    # The route decision alone (terminology layer + retrieval + router), no generation.
    engine = Engine(base, index, generator=create_generator(base.model_copy(
        update={"llm": base.llm.model_copy(update={"backend": "extractive"})})))
    engine.decide("预热：jieba 词典与第一次编码")  # warm-up: jieba dictionary, first embed (not timed)
    decide_ms: list[float] = []
    for q in sample:
        t = time.perf_counter()
        engine.decide(q, timer=Timer())
        decide_ms.append((time.perf_counter() - t) * 1000)
    results["decision"] = {"n": len(decide_ms), "p50_ms": pct(decide_ms, 0.5), "p95_ms": pct(decide_ms, 0.95)}

    for backend in [b.strip() for b in args.backends.split(",") if b.strip()]:
        settings = base.model_copy(update={"llm": base.llm.model_copy(update={"backend": backend})})
        # A freshly loaded index: no query embeddings cached from the previous phase.
        engine = Engine(settings, IndexStore(home).load(), generator=create_generator(settings))
        engine.answer("预热：这是一个与知识库无关的问题吗？")  # warm-up: model load, not a timed question
        per_route: dict[str, list[float]] = defaultdict(list)
        stages: dict[str, float] = defaultdict(float)
        for q in sample:
            a = engine.answer(q)
            per_route[a.route].append(a.timings_ms["total"])
            for k, v in a.timings_ms.items():
                stages[k] += v
        total = stages.pop("total", 0.0) or 1.0
        results[backend] = {
            "routes": {r: {"n": len(v), "p50_ms": pct(v, 0.5), "p95_ms": pct(v, 0.95)} for r, v in per_route.items()},
            "stage_share": {k: round(v / total, 3) for k, v in stages.items()},
        }

    print(f"{'backend':<12}{'route':<10}{'n':>4}{'p50 ms':>10}{'p95 ms':>10}")
    d = results["decision"]
    print(f"{'(decision)':<12}{'-':<10}{d['n']:>4}{d['p50_ms']:>10.1f}{d['p95_ms']:>10.1f}")
    for backend, r in results.items():
        if backend == "decision":
            continue
        for route, v in sorted(r["routes"].items()):
            print(f"{backend:<12}{route:<10}{v['n']:>4}{v['p50_ms']:>10.1f}{v['p95_ms']:>10.1f}")
        share = ", ".join(f"{k} {v:.0%}" for k, v in r["stage_share"].items())
        print(f"{'':<12}stage share: {share}")
    print(json.dumps({"answer_latency": results, "cpus": os.cpu_count()}, ensure_ascii=False))
    if tmp:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
