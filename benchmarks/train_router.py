"""LoRA training throughput: our loop on CPU, and ours vs. a plain HF ``Trainer`` on a GPU.

CPU (default): the packaged Qwen2.5-Coder-0.5B (``--model random`` for a same-shape
random-weight copy), our training step (answer-only logits, AdamW, grad clipping), synthetic
chat-like rows whose last 10-30 % are the answer. Prints s/step and tokens/s (real tokens,
padding excluded), medians over the measured steps::

    HF_HUB_OFFLINE=1 python benchmarks/train_router.py --steps 5 --batch 4 --seq-len 256

GPU (``--gpu``): a random-weight Qwen2.5-0.5B-shaped model (hidden 896, 24 layers, 14 heads,
2 kv heads, intermediate 4864, vocab 151936), sequence length 512, bf16, the same examples
(lengths spread over 64..512) trained two ways in one run:

- baseline: ``transformers.Trainer`` + peft, fp32 weights with ``bf16=True`` autocast,
  batches padded to the longest row, everything else at its defaults;
- ours: examples packed into 512-token rows (block-diagonal attention via reset
  ``position_ids``), frozen base weights stored in bf16, ``torch.compile`` on the decoder,
  logits only at answer positions, fused AdamW, larger batches.

It prints both medians and the speed-up in real tokens/s::

    python benchmarks/train_router.py --gpu

``--gpu --device cpu --tiny --no-compile`` runs the same GPU code path on a tiny model
(a smoke test for machines without a GPU).

Routing latency per tier (``--routing``): the demo knowledge base's 110 eval questions through
(1) the terminology layer + retrieval, (2) the rule router, (3) the LoRA router in llama.cpp
(``--adapter`` GGUF; default a same-shape r=8 q/v adapter with B = 0, which costs the same to
run as a trained one) and (4) the cascade (rules answer when confident, else LoRA); p50/p95
of each, on this machine's cores::

    HF_HUB_OFFLINE=1 python benchmarks/train_router.py --routing [--adapter adapter.gguf]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from finetune.data import IGNORE_INDEX, Example, collate, pack_examples  # noqa: E402

QWEN_05B = dict(hidden_size=896, num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
                intermediate_size=4864, vocab_size=151936, tie_word_embeddings=True)
TINY = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            intermediate_size=128, vocab_size=4096, tie_word_embeddings=True)
PAD_ID = 0


# --- data ----------------------------------------------------------------------------------------
def synthetic_examples(n: int, min_len: int, max_len: int, vocab: int, seed: int = 0) -> list[Example]:
    """Rows of random token ids whose last 10-30 % are the answer (as in router training:
    long prompt, short answer). Lengths uniform in [min_len, max_len]."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        length = rng.randint(min_len, max_len)
        ids = [rng.randrange(1, vocab) for _ in range(length)]
        answer = max(2, int(length * rng.uniform(0.1, 0.3)))
        labels = [IGNORE_INDEX] * (length - answer) + ids[length - answer :]
        out.append(Example(ids, labels))
    return out


# --- models ----------------------------------------------------------------------------------------
def build_model(args: argparse.Namespace, device: str, dtype: Any) -> Any:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    if args.model == "packaged" and not args.gpu:
        from finetune.base_model import resolve_base_model

        model = AutoModelForCausalLM.from_pretrained(str(resolve_base_model("")), dtype=dtype)
    else:
        config = Qwen2Config(**(TINY if args.tiny else QWEN_05B))
        with torch.device(device):
            model = Qwen2ForCausalLM(config)
        model.to(dtype)
    model.config.use_cache = False
    lora = LoraConfig(task_type="CAUSAL_LM", r=args.lora_r, lora_alpha=2 * args.lora_r, lora_dropout=0.05,
                      target_modules=args.target_modules.split(","))
    return get_peft_model(model, lora).to(device)


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _peak_gb(device: str) -> float | None:
    import torch

    return round(torch.cuda.max_memory_allocated() / 2**30, 2) if device.startswith("cuda") else None


def _summary(times: list[float], tokens: list[int], batch: int, extra: dict[str, Any]) -> dict[str, Any]:
    return {"s_per_step": statistics.median(times), "tokens_per_s": sum(tokens) / sum(times),
            "median_step_tokens_per_s": statistics.median(t / s for t, s in zip(tokens, times)),
            "tokens_per_step": statistics.median(tokens), "batch": batch, "steps": len(times), **extra}


# --- ours -----------------------------------------------------------------------------------------
def run_ours(args: argparse.Namespace, examples: list[Example], device: str) -> dict[str, Any]:
    import torch

    from finetune.train import answer_loss_sum

    from finetune.train import use_bf16

    on_gpu = args.gpu
    bf16 = use_bf16(device, {"auto": None, "on": True, "off": False}[args.bf16])
    # Frozen base weights in bf16 on the GPU (LoRA weights stay fp32: peft upcasts adapters).
    model = build_model(args, device, torch.bfloat16 if bf16 else torch.float32)
    model.train()
    if on_gpu and args.compile:
        model.get_base_model().model.compile(dynamic=False)
    rows = pack_examples(examples, args.seq_len) if (on_gpu or args.packing) else examples
    batch = args.batch
    width = args.seq_len if on_gpu else 8  # fixed shapes for the compiled graph
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, fused=device.startswith("cuda"))
    needed = (args.warmup + args.steps) * batch
    rows = (rows * (needed // max(1, len(rows)) + 1))[:needed]
    times, tokens, losses = [], [], []
    for step in range(args.warmup + args.steps):
        group = rows[step * batch : (step + 1) * batch]
        data = collate(group, PAD_ID, multiple_of=width)
        n = int((data["labels"][:, 1:] != IGNORE_INDEX).sum())
        data = {k: v.to(device, non_blocking=True) for k, v in data.items()}
        _sync(device)
        t0 = time.perf_counter()
        with torch.autocast(device_type="cuda" if device.startswith("cuda") else "cpu", dtype=torch.bfloat16,
                            enabled=bf16):
            loss = answer_loss_sum(model, data) / n
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        _sync(device)
        dt = time.perf_counter() - t0
        losses.append(float(loss.detach()))
        if step >= args.warmup:
            times.append(dt)
            tokens.append(sum(len(r) for r in group))
        if args.verbose:
            print(f"  ours step {step}: {dt:.3f}s loss {losses[-1]:.3f}", file=sys.stderr)
    out = _summary(times, tokens, batch, {"peak_gb": _peak_gb(device), "first_losses": losses[:3], "bf16": bf16,
                                          "packed": on_gpu or args.packing, "compiled": on_gpu and args.compile})
    del model, opt
    return out


# --- baseline: plain HF Trainer + peft ---------------------------------------------------------------
def run_baseline(args: argparse.Namespace, examples: list[Example], device: str) -> dict[str, Any]:
    import torch
    from transformers import Trainer, TrainerCallback, TrainingArguments

    model = build_model(args, device, torch.float32)
    times: list[float] = []
    tokens: list[int] = []
    padded: list[int] = []

    def pad_collator(features: list[dict[str, list[int]]]) -> dict[str, Any]:
        # What DataCollatorForSeq2Seq does: pad to the longest row (multiple of 8), -100 labels.
        width = -(-max(len(f["input_ids"]) for f in features) // 8) * 8
        ids = torch.full((len(features), width), PAD_ID, dtype=torch.long)
        labels = torch.full((len(features), width), IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros((len(features), width), dtype=torch.long)
        for i, f in enumerate(features):
            n = len(f["input_ids"])
            ids[i, :n], labels[i, :n], mask[i, :n] = torch.tensor(f["input_ids"]), torch.tensor(f["labels"]), 1
        tokens.append(int(mask.sum()))
        padded.append(mask.numel())
        return {"input_ids": ids, "labels": labels, "attention_mask": mask}

    class Timer(TrainerCallback):
        def on_step_begin(self, a: Any, state: Any, control: Any, **kw: Any) -> None:
            _sync(device)
            self.t0 = time.perf_counter()

        def on_step_end(self, a: Any, state: Any, control: Any, **kw: Any) -> None:
            _sync(device)
            times.append(time.perf_counter() - self.t0)

    data = [{"input_ids": e.input_ids, "labels": e.labels} for e in examples]
    with tempfile.TemporaryDirectory() as tmp:
        targs = TrainingArguments(
            output_dir=tmp, per_device_train_batch_size=args.baseline_batch,
            max_steps=args.warmup + args.steps, learning_rate=1e-4, bf16=device.startswith("cuda"),
            save_strategy="no", report_to=[], disable_tqdm=True,
            dataloader_num_workers=0, remove_unused_columns=False, use_cpu=not device.startswith("cuda"),
            seed=0,
        )
        Trainer(model=model, args=targs, train_dataset=data, data_collator=pad_collator,
                callbacks=[Timer()]).train()
    # The dataloader may collate one batch ahead; step i consumed batch i.
    times, step_tokens = times[args.warmup :], tokens[args.warmup : args.warmup + args.steps]
    out = _summary(times, step_tokens, args.baseline_batch,
                   {"peak_gb": _peak_gb(device), "packed": False, "compiled": False,
                    "real_token_share": sum(step_tokens) / sum(padded[args.warmup : args.warmup + args.steps])})
    del model
    return out


# --- main ---------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--gpu", action="store_true", help="ours vs HF Trainer baseline on a Qwen2.5-0.5B-shaped model")
    p.add_argument("--device", default="", help="default: cuda with --gpu, else cpu")
    p.add_argument("--model", choices=["packaged", "random"], default="packaged", help="CPU mode base model")
    p.add_argument("--tiny", action="store_true", help="tiny random model (smoke test of the code path)")
    p.add_argument("--seq-len", type=int, default=0, help="default 512 with --gpu, else 256")
    p.add_argument("--batch", type=int, default=0, help="our rows per step (default 32 with --gpu, else 4)")
    p.add_argument("--baseline-batch", type=int, default=8, help="Trainer's per-device batch size")
    p.add_argument("--baseline", action="store_true", help="CPU mode: also run the Trainer baseline")
    p.add_argument("--steps", type=int, default=0, help="measured steps (default 20 with --gpu, else 5)")
    p.add_argument("--warmup", type=int, default=-1, help="unmeasured steps first (default 5 with --gpu, else 1)")
    p.add_argument("--lora-r", type=int, default=8)
    p.add_argument("--target-modules", default="q_proj,v_proj")
    p.add_argument("--packing", action="store_true", help="CPU mode: pack rows too")
    p.add_argument("--no-compile", dest="compile", action="store_false")
    p.add_argument("--bf16", choices=["auto", "on", "off"], default="auto",
                   help="ours: auto = CUDA with bf16, or a CPU with AVX512-BF16/AMX")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    p.add_argument("--out", help="also write the results as JSON here")
    p.add_argument("--verbose", action="store_true")
    p.add_argument("--routing", action="store_true", help="routing latency per tier instead of training speed")
    p.add_argument("--adapter", help="--routing: LoRA adapter GGUF (default: same-shape zero adapter)")
    p.add_argument("--cascade-threshold", type=float, default=0.9)
    args = p.parse_args(argv)
    if args.routing:
        return routing_latency(args)

    import torch

    device = args.device or ("cuda" if args.gpu else "cpu")
    args.seq_len = args.seq_len or (512 if args.gpu else 256)
    args.batch = args.batch or (32 if args.gpu else 4)
    args.steps = args.steps or (20 if args.gpu else 5)
    args.warmup = args.warmup if args.warmup >= 0 else (5 if args.gpu else 1)
    if args.threads:
        torch.set_num_threads(args.threads)
    vocab = (TINY if args.tiny else QWEN_05B)["vocab_size"]
    # Enough examples that neither side repeats data within the measured steps.
    n_examples = max(args.baseline_batch * (args.warmup + args.steps), 64) * 2
    examples = synthetic_examples(n_examples, min(64, args.seq_len // 4), args.seq_len, vocab)
    result: dict[str, Any] = {
        "device": (torch.cuda.get_device_name() if device.startswith("cuda")
                   else f"cpu ({torch.get_num_threads()} threads)"),
        "model": "tiny random" if args.tiny else ("Qwen2.5-0.5B-shaped random" if args.gpu or args.model == "random"
                                                   else "packaged Qwen2.5-Coder-0.5B"),
        "seq_len": args.seq_len, "lora_r": args.lora_r, "target_modules": args.target_modules,
        "torch": torch.__version__,
    }
    if args.gpu or args.baseline:
        result["baseline"] = run_baseline(args, examples, device)
        _report("baseline (HF Trainer + peft)", result["baseline"])
        gc.collect()
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
    result["ours"] = _ours_fitting_memory(args, examples, device)
    _report("ours", result["ours"])
    if "baseline" in result:
        result["speedup_tokens_per_s"] = result["ours"]["tokens_per_s"] / result["baseline"]["tokens_per_s"]
        print(f"speed-up (real tokens/s): {result['speedup_tokens_per_s']:.2f}x")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1), encoding="utf-8")
    print(json.dumps(result, indent=1))
    return 0


def _ours_fitting_memory(args: argparse.Namespace, examples: list[Example], device: str) -> dict[str, Any]:
    """Run ours, halving the batch on CUDA out-of-memory (the default batch is sized for 80 GB)
    and falling back to eager mode if ``torch.compile`` fails (reported in the output)."""
    import torch

    while True:
        try:
            return run_ours(args, examples, device)
        except torch.cuda.OutOfMemoryError:
            if args.batch <= 1:
                raise
            args.batch //= 2
            print(f"out of memory; retrying ours with batch {args.batch}", file=sys.stderr)
        except Exception as exc:  # a torch.compile failure: measure eager rather than nothing
            if not (args.gpu and args.compile):
                raise
            args.compile = False
            print(f"torch.compile failed ({type(exc).__name__}: {exc}); retrying without it", file=sys.stderr)
        gc.collect()
        if device.startswith("cuda"):
            torch.cuda.empty_cache()


# --- routing latency ---------------------------------------------------------------------------------
def _zero_adapter_gguf(folder: Path, base: Path) -> Path:
    """r=8 LoRA on q_proj/v_proj of all 24 blocks with B = 0, exported for llama.cpp."""
    import numpy as np
    from safetensors.numpy import save_file

    from router.adapters.gguf import write_gguf_adapter

    rng = np.random.default_rng(0)
    tensors = {}
    for i in range(QWEN_05B["num_hidden_layers"]):
        for mod, out in (("q_proj", 896), ("v_proj", 128)):
            key = f"base_model.model.model.layers.{i}.self_attn.{mod}"
            tensors[f"{key}.lora_A.weight"] = rng.normal(0, 0.02, (8, 896)).astype(np.float32)
            tensors[f"{key}.lora_B.weight"] = np.zeros((out, 8), dtype=np.float32)
    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(folder / "adapter_model.safetensors"))
    (folder / "adapter_config.json").write_text(json.dumps(
        {"peft_type": "LORA", "r": 8, "lora_alpha": 16, "target_modules": ["q_proj", "v_proj"]}))
    return write_gguf_adapter(folder, folder / "adapter.gguf", base)


def routing_latency(args: argparse.Namespace) -> int:
    from config.settings import Settings
    from knowledge.demo import DOCS_DIR, GLOSSARY_DIR
    from retrieval.store import IndexStore
    from router.engine import Engine
    from router.llm.assets import packaged_gguf_path
    from router.llm.extractive import ExtractiveGenerator
    from router.lora import LoRARouter

    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        settings = Settings(home=home)
        store = IndexStore(home)
        store.add_documents(sorted(q for q in DOCS_DIR.iterdir() if q.is_file()))
        for g in sorted(GLOSSARY_DIR.iterdir()):
            store.add_glossary(g)
        store.build(full=True)
        engine = Engine(settings, store.load(), generator=ExtractiveGenerator())
        base = packaged_gguf_path(settings.cache_dir)
        adapter = Path(args.adapter) if args.adapter else _zero_adapter_gguf(home / "zero", base)
        lora = LoRARouter(engine.routes, base_gguf=base, adapter_gguf=adapter, version="bench")
        if lora.llm is None:
            print(f"LoRA router not loaded: {lora.disabled_reason}", file=sys.stderr)
            return 1
        questions = [json.loads(line)["question"] for line in
                     (ROOT / "knowledge" / "demo" / "eval_questions.jsonl").read_text(encoding="utf-8").splitlines()
                     if line.strip()]
        tiers: dict[str, list[float]] = {"terms+retrieval": [], "rules": [], "lora": [], "cascade": []}
        confident = 0
        for q in questions:
            t0 = time.perf_counter()
            _, signals = engine.decide(q)
            t1 = time.perf_counter()
            rule = engine.router.decide(signals)
            t2 = time.perf_counter()
            lora._decide_lora(signals, rule)
            t3 = time.perf_counter()
            tiers["terms+retrieval"].append((t1 - t0) * 1000)
            tiers["rules"].append((t2 - t1) * 1000)
            tiers["lora"].append((t3 - t2) * 1000)
            # The cascade's decision cost: rules always, the adapter only when they are unsure.
            confident += rule.confidence >= args.cascade_threshold
            tiers["cascade"].append((t2 - t1 + (0 if rule.confidence >= args.cascade_threshold else t3 - t2)) * 1000)
    result = {"questions": len(questions), "adapter": str(args.adapter or "zero (same shape)"),
              "threads": getattr(lora.llm, "n_threads", None), "cascade_threshold": args.cascade_threshold,
              "cascade_share_rules": round(confident / len(questions), 3),
              "ms": {k: {"p50": round(_pct(v, 50), 2), "p95": round(_pct(v, 95), 2)} for k, v in tiers.items()}}
    for k, v in result["ms"].items():
        print(f"{k:<16} p50 {v['p50']:8.2f} ms   p95 {v['p95']:8.2f} ms", file=sys.stderr)
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1), encoding="utf-8")
    print(json.dumps(result, indent=1))
    return 0


def _pct(values: list[float], q: float) -> float:
    return float(statistics.quantiles(values, n=100, method="inclusive")[q - 1]) if len(values) > 1 else values[0]


def _report(name: str, r: dict[str, Any]) -> None:
    mem = f", peak {r['peak_gb']} GB" if r.get("peak_gb") is not None else ""
    print(f"{name:<30} median {r['s_per_step']:.3f} s/step, {r['tokens_per_s']:.0f} tokens/s "
          f"(batch {r['batch']}, {r['tokens_per_step']:.0f} real tokens/step{mem})", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
