"""RGB (Chinese) noise robustness and refusal of the product's retrieve-then-generate path.

For each query of ``rgb/zh_refine_public.jsonl`` a set of passages is built from its
positive passages mixed with negative ones (noise ratio 0, 0.4, 0.8 of ``--passages``,
default 5, as in the RGB paper), and answered by the product's rag path without an index
(:func:`router.passages.answer_over_passages`: configured embedder ranks the passages, the
router's refusal gate, ``build_rag_messages``, the configured generator, the number
verifier and the engine's refusal rules). Accuracy = an acceptable answer string appears
in the output. With negatives only, the refusal rate is the share of answers that refuse.

    python benchmarks/rgb_noise.py                       # llama_cpp, 30 queries per setting
    python benchmarks/rgb_noise.py --generator extractive --limit 100

The data is read from ``../shared/evaldata/`` (never copied into the repository); when it
is absent the benchmark prints a message and exits 0.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
DEFAULT_DATA = REPO.parent / "shared" / "evaldata" / "rgb" / "zh_refine_public.jsonl"


def load_rgb(path: Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def answer_groups(answer: Any) -> list[list[str]]:
    """RGB answers: a list of acceptable strings, or a list of such lists (all parts needed).

    >>> answer_groups(["12人", "十二人"])
    [['12人', '十二人']]
    >>> answer_groups([["A"], ["B", "b"]])
    [['A'], ['B', 'b']]
    """
    if isinstance(answer, str):
        return [[answer]]
    if answer and all(isinstance(a, list) for a in answer):
        return [[str(x) for x in a] for a in answer]
    return [[str(a) for a in answer]]


def passage_set(item: dict[str, Any], n: int, noise: float | None, rng: random.Random) -> list[str]:
    """``n`` passages, ``ceil(n*noise)`` of them negative, shuffled; ``noise=None`` = negatives only.

    >>> item = {"positive": ["p1", "p2", "p3"], "negative": ["n1", "n2", "n3"]}
    >>> sorted(passage_set(item, 4, 0.5, random.Random(0)))
    ['n1', 'n2', 'p1', 'p2']
    >>> sorted(passage_set(item, 2, None, random.Random(0)))
    ['n1', 'n2']
    """
    if noise is None:
        docs = list(item.get("negative", [])[:n])
    else:
        neg = math.ceil(n * noise)
        docs = list(item.get("positive", [])[: n - neg]) + list(item.get("negative", [])[:neg])
    rng.shuffle(docs)
    return docs


def run_setting(engine: Any, items: list[dict[str, Any]], n: int, noise: float | None, seed: int) -> dict[str, Any]:
    from api.evaluation.metrics import answer_correct, looks_like_refusal
    from router.passages import answer_over_passages

    correct = refused = errors = 0
    reasons: dict[str, int] = {}
    t0 = time.perf_counter()
    for item in items:
        rng = random.Random(f"{seed}-{item['id']}")
        docs = passage_set(item, n, noise, rng)
        try:
            ans = answer_over_passages(engine, item["query"], docs)
        except Exception as exc:  # one failing query counts as wrong, the run goes on
            errors += 1
            print(f"  query {item['id']}: {type(exc).__name__}: {exc}", file=sys.stderr)
            continue
        did_refuse = looks_like_refusal(ans.answer, ans.route)
        refused += did_refuse
        if did_refuse:
            reasons[ans.reason or "refused"] = reasons.get(ans.reason or "refused", 0) + 1
        if not did_refuse and answer_correct(ans.answer, answer_groups(item["answer"])):
            correct += 1
    seconds = time.perf_counter() - t0
    k = len(items)
    return {"noise": noise, "n": k, "accuracy": round(correct / k, 4) if k else None,
            "refusal_rate": round(refused / k, 4) if k else None, "errors": errors,
            "seconds": round(seconds, 1), "s_per_query": round(seconds / k, 2) if k else None,
            "refusal_reasons": reasons}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--generator", help="llm backend (default: the configured one, llama_cpp)")
    p.add_argument("--limit", type=int, default=30, help="queries per setting (default 30)")
    p.add_argument("--passages", type=int, default=5)
    p.add_argument("--noise", default="0,0.4,0.8", help="comma-separated noise ratios")
    p.add_argument("--no-refusal", action="store_true", help="skip the negatives-only setting")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args(argv)

    if not args.data.is_file():
        print(f"rgb_noise: skipped, {args.data} not found (RGB zh_refine data is not in the repository)")
        return 0
    from config import get_settings
    from router.passages import passage_engine

    settings = get_settings()
    if args.generator:
        settings = settings.model_copy(update={"llm": settings.llm.model_copy(update={"backend": args.generator})})
    items = load_rgb(args.data)[: args.limit]
    t_load = time.perf_counter()
    engine = passage_engine(settings)
    load_s = time.perf_counter() - t_load
    settings_run: list[float | None] = [float(x) for x in args.noise.split(",") if x.strip()]
    if not args.no_refusal:
        settings_run.append(None)
    results = []
    for noise in settings_run:
        label = "negatives only" if noise is None else f"noise {noise:g}"
        res = run_setting(engine, items, args.passages, noise, args.seed)
        results.append(res)
        acc = "" if noise is None else f"accuracy={res['accuracy']}  "
        print(f"  {label:<15} n={res['n']:<4} {acc}refused={res['refusal_rate']}  "
              f"{res['seconds']} s ({res['s_per_query']} s/query)", file=sys.stderr)
    gen = getattr(engine.generator, "name", "?")
    parts = [f"acc@{r['noise']:g}={r['accuracy']:.3f}" for r in results if r["noise"] is not None]
    parts += [f"refusal(neg only)={r['refusal_rate']:.3f}" for r in results if r["noise"] is None]
    total = sum(r["seconds"] for r in results)
    print(f"rgb_noise zh: generator={gen} embedder={engine.index.embedder.name} n={len(items)}/setting "
          f"passages={args.passages} " + " ".join(parts) + f" time={total:.0f}s (+{load_s:.0f}s load)")
    if args.json:
        args.json.write_text(json.dumps({"generator": gen, "results": results}, ensure_ascii=False, indent=1),
                             encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
