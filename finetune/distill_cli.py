"""``kb distill``: build a versioned router training set from the published index."""

from __future__ import annotations

import argparse
import json
from typing import Any


def register(subparsers: Any) -> None:
    """Add ``distill`` to an argparse sub-parser collection."""
    s = subparsers.add_parser("distill", help="distil router training data (glossary, facts, teacher LLM on chunks)")
    s.add_argument("--seed", type=int, default=0, help="seed of the deterministic train/eval split")
    s.add_argument("--eval-ratio", type=float, default=0.15)
    s.add_argument("--max-chunks", type=int, help="only ask the teacher about this many chunks (evenly spaced)")
    s.add_argument("--max-per-route", type=int, default=240,
                   help="keep at most this many questions per route (0 = all); balances the routes")
    s.add_argument("--hard-repeat", type=int, default=1,
                   help="repeat training rows where the rule router's hint is wrong this many times")
    s.add_argument("--no-teacher", action="store_true", help="templated sources only (no LLM calls)")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(fn=cmd_distill)


def cmd_distill(args: argparse.Namespace) -> int:
    from config.settings import get_settings
    from finetune.distill import distill
    from retrieval.store import IndexStore

    settings = get_settings()
    index = IndexStore(settings.home).load()
    report = distill(index, settings.home, seed=args.seed, progress=not args.quiet, eval_ratio=args.eval_ratio,
                     max_chunks=args.max_chunks, use_teacher=not args.no_teacher, settings=settings,
                     max_per_route=args.max_per_route or None, hard_repeat=args.hard_repeat)
    print(json.dumps(report.to_dict(), ensure_ascii=False, indent=1))
    return 0
