"""Answer latency and quality of the rag path sized to the budget, against the old path, in one run.

The same questions are answered twice by the same engine code over the same index and the same
packaged model (llama_cpp, 0.5B):

* **old** — what the rag path did before: the generator reads the whole top-k chunks
  (``llm.rag_context: chunks``) and may write up to ``llm.max_tokens`` (no cap by question kind);
* **new** — the default: it reads only the evidence sentences and table rows that bear on the
  question (``llm.rag_context: units``) and its answer length is capped by the question's kind.

Reported per route taken: p50/p95 of the whole answer, time to the first streamed text (TTFT),
prompt tokens of the generation, answer correctness on the questions' expected groups, and numbers
found nowhere in the knowledge base (must be 0). Glossary, fact and refusal answers do not generate
and are timed too (with retrieval). Ratios are new/old on the same questions.

    python benchmarks/answer_latency.py                       # demo, 8 questions per expected route
    python benchmarks/answer_latency.py --kbs demo hospital --per-route 6
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def pct(xs: list[float], q: float) -> float | None:
    """Linear-interpolated percentile (``q`` in 0..100); None when empty."""
    from knowledge.core.numeric import percentile

    return percentile(xs, q)


def one(engine: Any, q: dict[str, Any]) -> dict[str, Any]:
    """Answer ``q`` streaming: total time, time to the first text, the final answer object."""
    t0 = time.perf_counter()
    first = None
    final = None
    for event in engine.answer_stream(q["question"], q.get("history") or None, stream=True):
        if event["type"] == "delta" and event["text"] and first is None:
            first = time.perf_counter() - t0
        elif event["type"] == "final":
            final = event["answer"]
    total = time.perf_counter() - t0
    return {"total_ms": total * 1000, "ttft_ms": (first if first is not None else total) * 1000,
            "answer": final.to_dict()}


def prompt_tokens(engine: Any, q: dict[str, Any]) -> int:
    """Tokens of the generator's prompt for this question (0 when it does not generate)."""
    from router.compose import select_units
    from router.llm.prompts import build_rag_messages

    choice, signals = engine.decide(q["question"], q.get("history") or None)
    if choice.route != "rag" or signals.evidence is None:
        return 0
    if engine.settings.llm.rag_context == "units":
        passages, _, _ = engine._passages_of(select_units(signals.evidence))
    else:
        passages = [h.chunk.text for h in signals.hits]
    messages = build_rag_messages(signals.rewritten_query, passages, signals.lang)
    tokens = getattr(engine.generator, "tokens", None)
    return len(tokens(messages)[0]) if tokens else sum(len(m["content"]) for m in messages) // 2


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kbs", nargs="*", default=["demo"])
    ap.add_argument("--per-route", type=int, default=8, help="questions per expected route and knowledge base")
    ap.add_argument("--cache", type=Path, default=Path(os.environ.get("KB_SUITE_CACHE", "/tmp/kb-suite")))
    ap.add_argument("--json", type=Path, help="write the per-question rows here")
    args = ap.parse_args(argv)

    from benchmarks.kb_suite import build_home, kb_paths
    from config.settings import Settings
    from api.evaluation.assistant import load_questions, score_output
    from api.evaluation.metrics import KBNumbers
    from retrieval.store import IndexStore
    from router.engine import Engine
    from router.llm import create_generator

    base = Settings()
    llm_settings = base.llm.model_copy(update={"backend": "llama_cpp"})
    generator = create_generator(base.model_copy(update={"llm": llm_settings}))
    rows: list[dict[str, Any]] = []
    for name in args.kbs:
        home = build_home(name, args.cache, base)
        s = base.model_copy(update={"home": home, "llm": llm_settings})
        index = IndexStore(home, s).load()
        kb = KBNumbers.from_index(index)
        questions = load_questions(kb_paths(name)[2])
        by_route: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for q in questions:
            if q["route"] and len(by_route[q["route"]]) < args.per_route and not q["history"]:
                by_route[q["route"]].append(q)
        sample = [q for qs in by_route.values() for q in qs]
        paths = {
            "old": s.model_copy(update={"llm": llm_settings.model_copy(update={"rag_context": "chunks",
                                                                                "cap_by_kind": False})}),
            "new": s,
        }
        engines = {k: Engine(v, index, generator=generator) for k, v in paths.items()}
        engines["new"].answer("预热")  # load the model once, outside the timings
        for q in sample:
            row: dict[str, Any] = {"kb": name, "id": q["id"], "expected_route": q["route"]}
            for path, engine in engines.items():
                r = one(engine, q)
                scored = score_output(q, r["answer"], index, kb, engine.verifier)
                row[path] = {"route": r["answer"]["route"], "total_ms": round(r["total_ms"]),
                             "ttft_ms": round(r["ttft_ms"]), "prompt_tokens": prompt_tokens(engine, q),
                             "correct": scored["correct"],
                             "unsupported": sum(not n["supported"] for n in scored["numbers"])}
            rows.append(row)
            print(json.dumps(row, ensure_ascii=False), file=sys.stderr)
    report(rows)
    if args.json:
        args.json.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    return 0


def report(rows: list[dict[str, Any]]) -> None:
    def f(v: Any, d: int = 0) -> str:
        return "-" if v is None else f"{v:.{d}f}"

    print(f"\n{'route (new)':<10}{'n':>4}{'old p50':>9}{'old p95':>9}{'new p50':>9}{'new p95':>9}{'ratio':>7}"
          f"{'TTFT old':>10}{'TTFT new':>10}{'tok old':>9}{'tok new':>9}")
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        groups[r["new"]["route"]].append(r)
    for route, rs in sorted(groups.items()):
        old = [r["old"]["total_ms"] for r in rs]
        new = [r["new"]["total_ms"] for r in rs]
        ratio = (statistics.median(new) / statistics.median(old)) if old and statistics.median(old) else None
        tok_old = [r["old"]["prompt_tokens"] for r in rs if r["old"]["prompt_tokens"]]
        tok_new = [r["new"]["prompt_tokens"] for r in rs if r["new"]["prompt_tokens"]]
        print(f"{route:<10}{len(rs):>4}{f(pct(old, 50)):>9}{f(pct(old, 95)):>9}{f(pct(new, 50)):>9}{f(pct(new, 95)):>9}"
              f"{f(ratio, 2):>7}{f(pct([r['old']['ttft_ms'] for r in rs], 50)):>10}"
              f"{f(pct([r['new']['ttft_ms'] for r in rs], 50)):>10}"
              f"{f(statistics.mean(tok_old) if tok_old else None):>9}{f(statistics.mean(tok_new) if tok_new else None):>9}")
    for path in ("old", "new"):
        flags = [r[path]["correct"] for r in rows if r[path]["correct"] is not None]
        unsupported = sum(r[path]["unsupported"] for r in rows)
        print(f"{path}: answer correctness {sum(flags)}/{len(flags)} = {sum(flags) / max(1, len(flags)):.2f}, "
              f"numbers found nowhere in the knowledge base: {unsupported}")


if __name__ == "__main__":
    sys.exit(main())
