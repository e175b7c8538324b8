"""Time to the first streamed words of rag answers: text released as it is generated (number-free
text at once, a sentence with a number after its verification; ``llm.stream_release: text``, the
default) against whole verified sentences only (``sentence``, the old behaviour), in one run, on the
same questions, index and packaged model.

    python benchmarks/first_token.py                       # demo, the rag questions of its eval set
    python benchmarks/first_token.py --kbs demo hospital --limit 8

Prints per knowledge base and overall: p50 of the first streamed text and of the whole answer for
each mode, and the ratio text/sentence. Each question is answered once unmeasured first, so both
modes read a warm prompt cache, and the order of the two modes alternates per question.
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
sys.path.insert(0, str(REPO / "benchmarks"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _stream_times(engine: Any, question: str, history: list[dict[str, str]] | None) -> tuple[float | None, float, str]:
    """(seconds to the first delta, seconds to the final answer, route) of one streamed answer."""
    t0 = time.perf_counter()
    first = None
    route = ""
    for event in engine.answer_stream(question, history, stream=True):
        if event["type"] == "delta" and first is None and event["text"].strip():
            first = time.perf_counter() - t0
        if event["type"] == "final":
            route = event["answer"].route
    return first, time.perf_counter() - t0, route


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kbs", nargs="*", default=["demo"])
    ap.add_argument("--limit", type=int, default=8, help="rag questions per knowledge base")
    ap.add_argument("--cache", type=Path, default=Path(os.environ.get("KB_SUITE_CACHE", "/tmp/kb-suite")))
    ap.add_argument("--threads", type=int, default=1, help="llm.n_threads (the free cores)")
    args = ap.parse_args()

    from kb_suite import build_home, kb_paths  # noqa: E402 - benchmarks/ is on the path
    from config.settings import Settings
    from retrieval.store import IndexStore
    from router.engine import Engine
    from router.llm import create_generator

    rows: dict[str, list[dict[str, Any]]] = {}
    generator = None
    for name in args.kbs:
        home = build_home(name, args.cache, Settings())
        settings = Settings(home=home)
        settings.llm.n_threads = args.threads
        generator = generator or create_generator(settings)
        index = IndexStore(home, settings).load()
        engines = {}
        for mode in ("sentence", "text"):
            s = settings.model_copy(deep=True)
            s.llm.stream_release = mode
            engines[mode] = Engine(s, index, generator=generator)
        _, _, questions = kb_paths(name)
        qs = [json.loads(line) for line in questions.read_text(encoding="utf-8").splitlines() if line.strip()]
        qs = [q for q in qs if q.get("route") == "rag"][: args.limit]
        for i, q in enumerate(qs):
            # One unmeasured answer first: both modes then find the prompt in llama.cpp's cache
            # alike (otherwise the second mode always reads a warm prompt).
            engines["text"].answer(q["question"], q.get("history"))
            order = ("sentence", "text") if i % 2 == 0 else ("text", "sentence")
            row: dict[str, Any] = {"id": q["id"]}
            for mode in order:
                first, total, route = _stream_times(engines[mode], q["question"], q.get("history"))
                row[mode] = {"first_s": first, "total_s": total, "route": route}
            rows.setdefault(name, []).append(row)
            print(json.dumps(row, ensure_ascii=False), flush=True)

    def p50(rs: list[dict[str, Any]], mode: str, key: str) -> float | None:
        xs = [r[mode][key] for r in rs if r[mode][key] is not None and r[mode]["route"] == "rag"]
        return round(statistics.median(xs), 3) if xs else None

    print(f"\n{'knowledge base':16} {'n':>3} {'first sent.':>12} {'first text':>11} {'ratio':>6} "
          f"{'whole sent.':>12} {'whole text':>11}")
    every = [r for rs in rows.values() for r in rs]
    for name, rs in [*rows.items(), ("overall", every)]:
        fs, ft = p50(rs, "sentence", "first_s"), p50(rs, "text", "first_s")
        ws, wt = p50(rs, "sentence", "total_s"), p50(rs, "text", "total_s")
        ratio = round(ft / fs, 2) if fs and ft else None
        print(f"{name:16} {len(rs):>3} {fs!s:>12} {ft!s:>11} {ratio!s:>6} {ws!s:>12} {wt!s:>11}")


if __name__ == "__main__":
    main()
