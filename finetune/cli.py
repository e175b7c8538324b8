"""``kb train`` and ``kb adapters ...``: thin wrappers over finetune.train / finetune.adapters.

``api/cli.py`` calls :func:`register` with its sub-parser collection; each command is a
function ``(args) -> exit code``. Heavy imports (torch, transformers) happen inside them.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

from core.errors import ConfigError


def register(subparsers: Any) -> None:
    """Add ``train`` and ``adapters`` to an argparse sub-parser collection."""
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


# --- kb train -----------------------------------------------------------------------------
def cmd_train(args: argparse.Namespace) -> int:
    from config.settings import get_settings
    from finetune.adapters import DEFAULT_KEY_METRICS, AdapterStore
    from finetune.train import TrainConfig, parse_overrides, train

    settings = get_settings()
    overrides = parse_overrides(args.set)
    if args.max_steps is not None:
        overrides["max_steps"] = args.max_steps
    config = TrainConfig.load(args.config, overrides, settings)
    dataset = Path(args.dataset) if args.dataset else current_dataset(settings.home)
    out = Path(args.out) if args.out else default_run_dir(settings.home, dataset, config)
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


def current_dataset(home: Path) -> Path:
    """The published distilled dataset (``home/datasets/current`` names its version folder)."""
    pointer = Path(home) / "datasets" / "current"
    if not pointer.is_file():
        raise ConfigError(f"no distilled dataset under {Path(home) / 'datasets'}: run `kb distill` "
                          "first or pass --dataset FILE.jsonl")
    folder = pointer.parent / pointer.read_text(encoding="utf-8").strip()
    if not folder.is_dir():
        raise ConfigError(f"{pointer} names {folder.name!r}, which does not exist")
    return folder


def default_run_dir(home: Path, dataset: Path, config: Any) -> Path:
    """Run folder keyed by data and config, so rerunning the same command resumes."""
    from finetune.data import data_hash, dataset_files

    train_files, eval_files = dataset_files(dataset)
    key = json.dumps(config.resume_key(), sort_keys=True, default=str)
    cfg_hash = hashlib.sha256(key.encode("utf-8")).hexdigest()[:8]
    return Path(home) / "train_runs" / f"{data_hash(train_files + eval_files)[:12]}-{cfg_hash}"


def evaluate_hook(adapter_dir: Path, settings: Any) -> dict[str, float]:
    """Task metrics for the gate from ``finetune.evaluate.evaluate_adapter(adapter_dir,
    settings)`` when that module exists (the router evaluation); otherwise none."""
    if importlib.util.find_spec("finetune.evaluate") is None:
        return {}
    from finetune import evaluate

    fn = getattr(evaluate, "evaluate_adapter", None)
    return dict(fn(adapter_dir, settings)) if fn else {}


# --- kb adapters ----------------------------------------------------------------------------
def cmd_adapters(args: argparse.Namespace) -> int:
    from config.settings import get_settings
    from finetune.adapters import AdapterStore

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
    from finetune import export

    version = args.version or store.current()
    if not version:
        raise ConfigError("no adapter version given and none is published")
    folder = store.path(version)
    if not (args.gguf or args.merged_gguf or args.merged_hf):
        raise ConfigError("say what to export: --gguf PATH, --merged-gguf PATH and/or --merged-hf DIR")
    base = args.base_gguf or store.manifest(version).get("base_gguf")
    if args.gguf:
        path = export.write_gguf_adapter(folder, args.gguf, base)
        print(f"wrote LoRA GGUF {path} (validated against {base})")
    if args.merged_gguf:
        path = export.merge_into_gguf(folder, args.merged_gguf, base)
        print(f"wrote merged GGUF {path}")
    if args.merged_hf:
        path = export.merge_adapter(folder, args.merged_hf)
        print(f"wrote merged weights to {path}")
    return 0
