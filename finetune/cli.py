"""``kb distill``, ``kb train`` and ``kb adapters ...``: the offline commands of the ``kb`` CLI.

This module is the one place the serving side reaches into ``finetune``: ``api/cli.py`` calls
:func:`register` with its sub-parser collection (the import checker allows exactly that edge,
see ``ARCHITECTURE.md``), and the admin API's retrain job runs these commands as ``kb``
subprocesses, never in the server. Each command is a function ``(args) -> exit code`` and, as
an entry point, reads the process settings itself. Heavy libraries (torch, transformers, peft)
load only when training or merging starts.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from config.settings import get_settings
from knowledge.core.errors import ConfigError
from knowledge.core.files import file_lock
from finetune import export
from finetune.data import data_hash, dataset_files
from finetune.datasets import current_dataset
from finetune.distill import distill
from finetune.gate import evaluate_adapter
from finetune.train import TrainConfig, parse_overrides, train
from retrieval.store import IndexStore
from router.adapters import DEFAULT_KEY_METRICS, AdapterStore
from router.adapters.gguf import write_gguf_adapter

COMMANDS = ("distill", "train", "adapters")


def register(subparsers: Any) -> None:
    """Add ``distill``, ``train`` and ``adapters`` to an argparse sub-parser collection."""
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

    s = subparsers.add_parser("train", help="train a LoRA adapter on the distilled dataset, gate and publish it")
    s.add_argument("--config", help="YAML with training settings (top level or a finetune: section)")
    s.add_argument("--dataset", help="JSONL file or dataset folder (default: the current distilled dataset)")
    s.add_argument("--out", help="run folder (default: KB_HOME/train_runs/<data+config hash>, so reruns resume)")
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one training setting, e.g. --set lora_r=16 (repeatable)")
    s.add_argument("--max-steps", type=int, help="stop after this many optimizer steps")
    s.add_argument("--no-resume", action="store_true", help="start over instead of resuming from a checkpoint")
    s.add_argument("--no-gate", action="store_true", help="train only; do not store or publish the adapter")
    s.add_argument("--key-metrics", help="comma-separated metrics the gate compares "
                   "(default: route_accuracy,expansion_accuracy,answer_accuracy when evaluated, else eval_loss)")
    s.set_defaults(fn=cmd_train)

    a = subparsers.add_parser("adapters", help="list, publish, roll back or export adapter versions")
    asub = a.add_subparsers(dest="acmd", required=True)
    x = asub.add_parser("list", help="every adapter version with status and metrics")
    x.add_argument("--json", action="store_true")
    x.set_defaults(fn=cmd_adapters)
    x = asub.add_parser("publish", help="make VERSION the current adapter (also a rejected one)")
    x.add_argument("version")
    x.set_defaults(fn=cmd_adapters)
    x = asub.add_parser("rollback", help="go back to the previously published adapter (or --to VERSION)")
    x.add_argument("--to", help="version to return to")
    x.set_defaults(fn=cmd_adapters)
    x = asub.add_parser("export", help="write llama.cpp / merged exports of a version")
    x.add_argument("version", nargs="?", help="default: the current adapter")
    x.add_argument("--gguf", help="write the adapter as a llama.cpp LoRA GGUF to this path")
    x.add_argument("--merged-gguf", help="write a merged full-model GGUF (GGUF bases only) to this path")
    x.add_argument("--merged-hf", help="write merged Hugging Face weights to this folder")
    x.add_argument("--base-gguf", help="base GGUF (default: the one recorded at training)")
    x.set_defaults(fn=cmd_adapters)


# --- kb distill ---------------------------------------------------------------------------
def cmd_distill(args: argparse.Namespace) -> int:
    settings = get_settings()
    index = IndexStore(settings.home, settings).load()
    report = distill(index, settings.home, seed=args.seed, progress=not args.quiet, eval_ratio=args.eval_ratio,
                     max_chunks=args.max_chunks, use_teacher=not args.no_teacher, settings=settings,
                     max_per_route=args.max_per_route or None, hard_repeat=args.hard_repeat)
    print(json.dumps(report.to_dict(), ensure_ascii=False, indent=1))
    return 0


# --- kb train -----------------------------------------------------------------------------
def cmd_train(args: argparse.Namespace) -> int:
    settings = get_settings()
    overrides = parse_overrides(args.set)
    if args.max_steps is not None:
        overrides["max_steps"] = args.max_steps
    config = TrainConfig.load(args.config, overrides, settings)
    dataset = Path(args.dataset) if args.dataset else current_dataset(settings.home)
    out = Path(args.out) if args.out else default_run_dir(settings.home, dataset, config)
    # Two trainings of the same data and config share a run folder (checkpoints, adapter):
    # the second waits for the first, then resumes its finished run instead of writing beside it.
    with run_lock(out):
        return _train_and_gate(args, settings, config, dataset, out)


def run_lock(run_dir: Path) -> Any:
    """The lock a training holds on its run folder for the whole run (``.<name>.lock`` beside it,
    across processes and threads)."""
    return file_lock(run_dir.parent / f".{run_dir.name}.lock")


def _train_and_gate(args: argparse.Namespace, settings: Any, config: Any, dataset: Path, out: Path) -> int:
    print(f"training on {dataset} into {out}", file=sys.stderr)
    result = train(config, dataset, out, resume=not args.no_resume)
    metrics = {**result.metrics(), **evaluate_hook(out, settings)}
    summary: dict[str, Any] = {"run_dir": str(out), "steps": result.steps, "metrics": metrics,
                               "tokens_per_s": round(result.tokens_per_s, 1),
                               "stopped_early": result.stopped_early}
    if not args.no_gate:
        keys = ([k.strip() for k in args.key_metrics.split(",") if k.strip()] if args.key_metrics
                else [k for k in DEFAULT_KEY_METRICS if k in metrics] or ["eval_loss"])
        store = AdapterStore(settings.home)
        published = store.admit(out, metrics, keys, rescore_current(store, out, metrics, settings))
        version = store.version_names()[-1]
        summary.update(version=version, status="published" if published else "rejected",
                       report=store.manifest(version)["report"])
    print(json.dumps(summary, ensure_ascii=False, indent=1, default=str))
    return 0


def rescore_current(store: Any, candidate: Path, metrics: dict[str, Any], settings: Any) -> dict[str, Any] | None:
    """The current adapter's task metrics on the candidate's eval data, when it was admitted
    with other data (``None``: same data, or nothing to compare)."""
    current = store.current()
    if not current or not any(k in metrics for k in ("route_accuracy", "expansion_accuracy")):
        return None
    manifest = store.manifest(current)
    cand = json.loads((Path(candidate) / "train_manifest.json").read_text(encoding="utf-8"))
    if manifest.get("data_hash") == cand.get("data_hash"):
        return None
    print(f"re-scoring the current adapter {current} on the new eval data", file=sys.stderr)
    return evaluate_hook(store.path(current), settings) or None


def default_run_dir(home: Path, dataset: Path, config: Any) -> Path:
    """Run folder keyed by data and config, so rerunning the same command resumes."""
    train_files, eval_files = dataset_files(dataset)
    key = json.dumps(config.resume_key(), sort_keys=True, default=str)
    cfg_hash = hashlib.sha256(key.encode("utf-8")).hexdigest()[:8]
    return Path(home) / "train_runs" / f"{data_hash(train_files + eval_files)[:12]}-{cfg_hash}"


def evaluate_hook(adapter_dir: Path, settings: Any) -> dict[str, float]:
    """Task metrics for the gate (:func:`finetune.gate.evaluate_adapter`; tests replace this)."""
    return dict(evaluate_adapter(adapter_dir, settings))


# --- kb adapters ----------------------------------------------------------------------------
def cmd_adapters(args: argparse.Namespace) -> int:
    store = AdapterStore(get_settings().home)
    if args.acmd == "list":
        return _list(store, args.json)
    if args.acmd == "publish":
        store.publish(args.version)
        print(f"published {args.version}")
        return 0
    if args.acmd == "rollback":
        version = store.rollback(args.to)
        print(f"current adapter is now {version}")
        return 0
    return _export(store, args)


def _list(store: Any, as_json: bool) -> int:
    versions = store.versions()
    if as_json:
        print(json.dumps(versions, ensure_ascii=False, indent=1, default=str))
        return 0
    if not versions:
        print("no adapters yet (run `kb train`)")
        return 0
    for m in versions:
        mark = "*" if m["current"] else " "
        metrics = ", ".join(f"{k}={v:.4g}" for k, v in sorted(m.get("metrics", {}).items())
                            if isinstance(v, (int, float)))
        print(f"{mark} {m['version']}  {m['status']:<9}  {m['created_at']}  data {m.get('data_hash', '')[:8]}  "
              f"{metrics}")
    return 0


def _export(store: Any, args: argparse.Namespace) -> int:
    version = args.version or store.current()
    if not version:
        raise ConfigError("no adapter version given and none is published")
    folder = store.path(version)
    if not (args.gguf or args.merged_gguf or args.merged_hf):
        raise ConfigError("say what to export: --gguf PATH, --merged-gguf PATH and/or --merged-hf DIR")
    base = args.base_gguf or store.manifest(version).get("base_gguf")
    if args.gguf:
        path = write_gguf_adapter(folder, args.gguf, base)
        print(f"wrote LoRA GGUF {path} (validated against {base})")
    if args.merged_gguf:
        path = export.merge_into_gguf(folder, args.merged_gguf, base)
        print(f"wrote merged GGUF {path}")
    if args.merged_hf:
        path = export.merge_adapter(folder, args.merged_hf)
        print(f"wrote merged weights to {path}")
    return 0
