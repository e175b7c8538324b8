"""LoRA training with a small hand-written loop (no ``Trainer``), resumable from checkpoints.

``train(config, dataset, out_dir)`` reads a chat dataset (see ``finetune/data.py``), trains a
peft LoRA adapter on the base model and writes into ``out_dir``:

- ``adapter_config.json`` + ``adapter_model.safetensors`` (the peft adapter; the weights of
  the best eval step when early stopping is on),
- ``train_manifest.json`` (base model, data hash, config, metrics, timings),
- ``checkpoints/step-N/`` every ``checkpoint_every`` steps (adapter, optimizer, scheduler,
  RNG and loop state); a later call with ``resume=True`` continues from the newest one.

The loss is summed over answer tokens and divided by the number of answer tokens in the
whole accumulation window, so gradient accumulation gives the same update as one big batch.
Logits are computed only at positions that have a label: with a 152k-token vocabulary the
output layer is a large share of the work, and prompts are most of every sequence.
"""

from __future__ import annotations

import functools
import json
import math
import os
import random
import shutil
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

from finetune.data import (
    IGNORE_INDEX,
    Example,
    batch_indices,
    collate,
    count_label_tokens,
    load_dataset,
    pack_examples,
    tokenize_all,
)
from knowledge.core.errors import ConfigError, KBError
from knowledge.core.files import atomic_write_json
from finetune.base_model import resolve_base_model, base_gguf_path
from config.settings import get_settings
from router import adapters as shipped_adapters
from tqdm.auto import tqdm

MANIFEST_NAME = "train_manifest.json"
CHECKPOINTS = "checkpoints"
_STATE_JSON = "trainer_state.json"
_STATE_PT = "state.pt"
_BEST = "best_adapter.safetensors"


# --- configuration --------------------------------------------------------------------------
class TrainConfig(BaseModel):
    """Everything a training run needs. Defaults come from the ``finetune`` settings section,
    then a YAML file, then explicit overrides (see :meth:`load`)."""

    model_config = ConfigDict(extra="forbid")

    base_model: str = ""  # HF folder or .gguf; empty = the packaged Qwen2.5-Coder-0.5B-Instruct
    lora_r: int = Field(8, ge=1)
    lora_alpha: float = Field(16, gt=0)
    lora_dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: list[str] = ["q_proj", "v_proj"]
    # Adapt only the top N transformer layers (0 = all). Backpropagation then stops there, so
    # a step costs about half as much on CPU; routing is decided near the top anyway.
    lora_top_layers: int = Field(0, ge=0)
    learning_rate: float = Field(2e-4, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    epochs: int = Field(1, ge=1)
    max_steps: int = Field(0, ge=0)  # optimizer steps; 0 = run `epochs` epochs
    batch_size: int = Field(8, ge=1)
    grad_accum: int = Field(1, ge=1)
    warmup_ratio: float = Field(0.1, ge=0, le=1)
    max_grad_norm: float = Field(1.0, ge=0)  # 0 = no clipping
    max_seq_len: int = Field(512, ge=8)
    packing: bool = False
    eval_ratio: float = Field(0.1, ge=0, lt=1)
    eval_every: int = Field(50, ge=0)  # optimizer steps; 0 = only at the end
    eval_batch_size: int = Field(0, ge=0)  # 0 = batch_size
    early_stopping_patience: int = Field(3, ge=0)  # evals without improvement; 0 = off
    early_stopping_min_delta: float = Field(0.0, ge=0)
    checkpoint_every: int = Field(100, ge=0)  # optimizer steps; 0 = no checkpoints
    keep_checkpoints: int = Field(2, ge=1)
    seed: int = 0
    device: Literal["auto", "cuda", "mps", "cpu"] = "auto"
    bf16: bool | None = None  # None = where the device computes bf16 natively (see use_bf16)
    gradient_checkpointing: bool = False
    cpu_threads: int = Field(0, ge=0)  # torch CPU threads; 0 = torch's default (all cores)
    init_adapter: str = ""  # peft adapter folder to start from ("base" = the shipped router adapter)
    progress: bool = True

    @classmethod
    def load(
        cls, path: str | Path | None = None, overrides: dict[str, Any] | None = None, settings: Any = None
    ) -> "TrainConfig":
        """Settings ``finetune`` section, then the YAML file (top level or its ``finetune:``
        mapping), then ``overrides``. Unknown keys raise ``ConfigError``."""
        if settings is None:
            settings = get_settings()
        data: dict[str, Any] = dict(settings.finetune.model_dump())
        if path:
            data.update(_read_config_file(Path(path)))
        data.update({k: v for k, v in (overrides or {}).items() if v is not None})
        unknown = sorted(set(data) - set(cls.model_fields))
        if unknown:
            raise ConfigError(f"unknown training setting(s) {unknown}; known: {sorted(cls.model_fields)}")
        try:
            return cls(**data)
        except Exception as exc:  # pydantic's ValidationError, re-raised as ours
            raise ConfigError(f"invalid training config: {exc}") from None

    def resume_key(self) -> dict[str, Any]:
        """The settings a checkpoint must share with the run that resumes it."""
        return self.model_dump(exclude={
            "progress", "device", "cpu_threads", "max_steps", "epochs", "eval_every", "checkpoint_every",
            "keep_checkpoints", "early_stopping_patience",
        })


def _read_config_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"training config {path} is not a file")
    with open(path, encoding="utf-8") as fh:
        data = yaml.safe_load(fh) or {}
    if isinstance(data, dict) and isinstance(data.get("finetune"), dict):
        data = data["finetune"]
    if not isinstance(data, dict):
        raise ConfigError(f"training config {path}: expected a mapping, got {type(data).__name__}")
    return data


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """``["lora_r=16", "target_modules=[q_proj,k_proj]"]`` → typed values via YAML.

    >>> parse_overrides(["lora_r=16", "packing=true", "target_modules=[q_proj, k_proj]"])
    {'lora_r': 16, 'packing': True, 'target_modules': ['q_proj', 'k_proj']}
    """
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {pair!r} is not KEY=VALUE")
        out[key.strip()] = yaml.safe_load(value) if value.strip() else ""
    return out


# --- results ------------------------------------------------------------------------------
@dataclass
class TrainResult:
    adapter_dir: Path
    base_model: str
    data_hash: str
    steps: int
    total_steps: int
    train_loss: float | None
    eval_loss: float | None
    best_step: int | None
    stopped_early: bool
    resumed_from: int | None
    train_examples: int
    eval_examples: int
    dropped_examples: int
    tokens: int
    seconds: float
    device: str
    bf16: bool
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0

    def metrics(self) -> dict[str, float]:
        """Numbers the adapter gate can compare (lower-is-better names end in ``loss``)."""
        out = {"train_loss": self.train_loss, "eval_loss": self.eval_loss}
        return {k: float(v) for k, v in out.items() if v is not None}

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["adapter_dir"] = str(self.adapter_dir)
        d["tokens_per_s"] = self.tokens_per_s
        return d


@dataclass
class _LoopState:
    """Everything (besides tensors) a checkpoint needs to continue exactly where it stopped."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    tokens: int = 0
    seconds: float = 0.0
    best_eval: float | None = None
    best_step: int | None = None
    bad_evals: int = 0
    stopped_early: bool = False
    last_loss: float | None = None
    history: list[dict[str, Any]] = field(default_factory=list)


# --- device helpers ---------------------------------------------------------------------
def pick_device(name: str = "auto") -> str:
    """``cuda`` if available, then ``mps``, then ``cpu`` (or the device named)."""
    import torch  # deferred: heavy: torch, for training and embedding only

    if name != "auto":
        return name
    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


def use_bf16(device: str, wanted: bool | None) -> bool:
    """bf16 where the device computes it natively: CUDA cards that support it, and CPUs with
    AVX512-BF16 or AMX (a LoRA step on the 0.5B model ran 2x faster than float32 on such a
    CPU). Off on MPS and on other CPUs, where bf16 is emulated, unless asked for."""
    import torch  # deferred: heavy: torch, for training and embedding only

    if wanted is not None:
        return wanted
    if device.startswith("cuda"):
        return torch.cuda.is_bf16_supported()
    return device == "cpu" and cpu_has_native_bf16()


def cpu_has_native_bf16() -> bool:
    """True when /proc/cpuinfo lists ``avx512_bf16`` or ``amx_bf16`` (False elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="ignore") as fh:
            for line in fh:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


# --- model --------------------------------------------------------------------------------
def load_lora_model(base_dir: Path, config: TrainConfig, device: str, bf16: bool) -> Any:
    """The base model with a fresh LoRA adapter on ``device`` (base weights frozen)."""
    import torch  # deferred: heavy: torch, for training and embedding only
    from peft import LoraConfig, get_peft_model  # deferred: heavy: peft, training only
    from transformers import AutoModelForCausalLM  # deferred: heavy: transformers, training only

    # The frozen base is stored in bf16 when training in bf16 (no per-step weight casts);
    # peft keeps the LoRA weights in float32.
    dtype = torch.bfloat16 if bf16 else torch.float32
    model = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=dtype)
    model.config.use_cache = False
    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    n_layers = int(getattr(model.config, "num_hidden_layers", 0) or 0)
    top = config.lora_top_layers
    layers = list(range(max(0, n_layers - top), n_layers)) if top and n_layers and top < n_layers else None
    lora = LoraConfig(
        task_type="CAUSAL_LM",
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=list(config.target_modules),
        layers_to_transform=layers,
        bias="none",
    )
    try:
        with warnings.catch_warnings():  # peft asks transformers a deprecated question; not ours to fix
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")
            model = get_peft_model(model, lora)
    except ValueError as exc:  # e.g. target modules not found in the base model
        raise ConfigError(f"finetune.target_modules={config.target_modules}: {exc}") from None
    if config.init_adapter:
        _load_initial_adapter(model, config)
    return model.to(device)


def initial_adapter_dir(name: str) -> Path:
    """The folder of ``init_adapter``: ``"base"`` is the router adapter shipped with the project."""
    if name == "base":
        return shipped_adapters.BASE_ADAPTER_DIR
    return Path(name)


def _load_initial_adapter(model: Any, config: TrainConfig) -> None:
    """Start from an existing adapter's weights (fine-tuning the shipped base adapter for one
    company needs far fewer steps than training from zero). Its rank and targets must match."""
    from peft import set_peft_model_state_dict  # deferred: heavy: peft, training only
    from safetensors.torch import load_file  # deferred: adapter files only

    folder = initial_adapter_dir(config.init_adapter)
    weights, cfg_path = folder / "adapter_model.safetensors", folder / "adapter_config.json"
    if not weights.is_file() or not cfg_path.is_file():
        raise ConfigError(f"init_adapter {config.init_adapter!r}: no peft adapter in {folder}")
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    top = config.lora_top_layers
    layers = cfg.get("layers_to_transform") or []
    if top and len(layers) != top:
        raise ConfigError(f"init_adapter {folder} adapts {len(layers) or 'all'} layers, not the top {top}")
    if int(cfg.get("r", -1)) != config.lora_r or sorted(cfg.get("target_modules") or []) != sorted(config.target_modules):
        raise ConfigError(f"init_adapter {folder}: rank {cfg.get('r')} on {cfg.get('target_modules')} does not match "
                          f"lora_r={config.lora_r} on {config.target_modules}")
    set_peft_model_state_dict(model, load_file(str(weights)))


def answer_loss_sum(model: Any, batch: dict[str, Any]) -> Any:
    """Summed cross-entropy over answer tokens, computing logits only where labels exist."""
    import torch.nn.functional as F  # deferred: heavy: torch, for training and embedding only

    labels = batch["labels"]
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    target = labels[:, 1:]
    keep = target != IGNORE_INDEX
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    head = base.get_output_embeddings()
    body = getattr(base, "base_model", None)
    if head is None or body is None or body is base or getattr(base.config, "final_logit_softcapping", None):
        logits = model(**inputs, use_cache=False).logits[:, :-1]
        return F.cross_entropy(logits[keep].float(), target[keep], reduction="sum")
    hidden = body(**inputs, use_cache=False).last_hidden_state[:, :-1]
    logits = head(hidden[keep])
    return F.cross_entropy(logits.float(), target[keep], reduction="sum")


def _to(batch: dict[str, Any], device: str) -> dict[str, Any]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def evaluate_loss(model: Any, examples: list[Example], batch_size: int, pad_id: int, device: str,
                  bf16: bool) -> float | None:
    """Mean answer-token loss over ``examples`` (``None`` when there are none)."""
    import torch  # deferred: heavy: torch, for training and embedding only

    if not examples:
        return None
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad(), torch.autocast(device_type=_autocast_type(device), dtype=torch.bfloat16, enabled=bf16):
        for idx in batch_indices(len(examples), batch_size, seed=0, epoch=0, shuffle=False):
            batch = collate([examples[i] for i in idx], pad_id)
            n = count_label_tokens(batch)
            if n:
                total += float(answer_loss_sum(model, _to(batch, device)))
                count += n
    model.train(was_training)
    return total / count if count else None


def _autocast_type(device: str) -> str:
    return "cuda" if device.startswith("cuda") else ("mps" if device == "mps" else "cpu")


# --- checkpoints ----------------------------------------------------------------------
def latest_checkpoint(out_dir: Path) -> Path | None:
    """The newest complete ``checkpoints/step-N`` folder (complete = has its state file)."""
    root = Path(out_dir) / CHECKPOINTS
    found = []
    for p in root.glob("step-*") if root.is_dir() else []:
        suffix = p.name.split("-", 1)[1]
        if suffix.isdigit() and (p / _STATE_JSON).is_file():
            found.append((int(suffix), p))
    return max(found)[1] if found else None


def _rng_state() -> dict[str, Any]:
    import torch  # deferred: heavy: torch, for training and embedding only

    state = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    import torch  # deferred: heavy: torch, for training and embedding only

    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _trainable_state(model: Any) -> dict[str, Any]:
    from peft import get_peft_model_state_dict  # deferred: heavy: peft, training only

    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in get_peft_model_state_dict(model).items()}


def save_checkpoint(out_dir: Path, model: Any, optimizer: Any, scheduler: Any, state: _LoopState,
                    best: dict[str, Any] | None, meta: dict[str, Any], keep: int) -> Path:
    """Write ``checkpoints/step-N`` atomically (temp folder + rename), then prune old ones."""
    import torch  # deferred: heavy: torch, for training and embedding only
    from safetensors.torch import save_file  # deferred: adapter files only

    root = Path(out_dir) / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{state.step}"
    tmp = root / f".step-{state.step}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    model.save_pretrained(str(tmp / "adapter"))
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": _rng_state()},
               tmp / _STATE_PT)
    if best is not None:
        save_file(best, str(tmp / _BEST))
    _write_json(tmp / _STATE_JSON, {"loop": asdict(state), **meta})  # written last: marks completeness
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    steps = sorted((int(p.name.split("-")[1]), p) for p in root.glob("step-*") if p.name.split("-")[1].isdigit())
    for _, old in steps[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint(ckpt: Path, model: Any, optimizer: Any, scheduler: Any, meta: dict[str, Any]
                    ) -> tuple[_LoopState, dict[str, Any] | None]:
    """Restore adapter weights, optimizer, scheduler and RNG; returns loop state and best weights."""
    import torch  # deferred: heavy: torch, for training and embedding only
    from peft import set_peft_model_state_dict  # deferred: heavy: peft, training only
    from safetensors.torch import load_file  # deferred: adapter files only

    saved = json.loads((ckpt / _STATE_JSON).read_text(encoding="utf-8"))
    for key in ("data_hash", "resume_key"):
        if saved.get(key) != meta.get(key):
            raise KBError(
                f"checkpoint {ckpt} was made with another {key.replace('_', ' ')}; "
                "train into a new output folder or pass resume=False (kb train --no-resume)"
            )
    weights = load_file(str(ckpt / "adapter" / "adapter_model.safetensors"))
    set_peft_model_state_dict(model, weights)
    blob = torch.load(ckpt / _STATE_PT, map_location="cpu", weights_only=False)
    optimizer.load_state_dict(blob["optimizer"])
    scheduler.load_state_dict(blob["scheduler"])
    _set_rng_state(blob["rng"])
    best = load_file(str(ckpt / _BEST)) if (ckpt / _BEST).is_file() else None
    return _LoopState(**saved["loop"]), best


def _write_json(path: Path, data: Any) -> None:
    atomic_write_json(path, data)


# --- the loop -----------------------------------------------------------------------------
def train(
    config: TrainConfig,
    dataset_dir: str | Path,
    out_dir: str | Path,
    resume: bool = True,
    *,
    cache_dir: str | Path | None = None,
    on_step: Callable[[dict[str, Any]], None] | None = None,
) -> TrainResult:
    """Train a LoRA adapter on ``dataset_dir`` into ``out_dir`` (see the module docstring).

    ``on_step`` receives a dict per optimizer step (``step``, ``loss``, ``lr``, ...) — the
    admin job store uses it for progress.
    """
    import torch  # deferred: heavy: torch, for training and embedding only
    from transformers import get_cosine_schedule_with_warmup  # deferred: heavy: transformers, training only

    started = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    random.seed(config.seed)
    torch.manual_seed(config.seed)

    data = _prepare_data(config, Path(dataset_dir), cache_dir)
    train_ex, eval_ex, split = data.train, data.eval, data.split
    device = pick_device(config.device)
    if device == "cpu" and config.cpu_threads:
        # On a shared machine fewer threads than cores can be much faster (no spinning at barriers).
        torch.set_num_threads(config.cpu_threads)
    bf16 = use_bf16(device, config.bf16)
    model = load_lora_model(data.base_dir, config, device, bf16)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay,
                                  fused=device == "cuda")
    batches_per_epoch = math.ceil(len(train_ex) / config.batch_size)
    steps_per_epoch = math.ceil(batches_per_epoch / config.grad_accum)
    total_steps = config.max_steps or steps_per_epoch * config.epochs
    scheduler = get_cosine_schedule_with_warmup(optimizer, math.ceil(config.warmup_ratio * total_steps), total_steps)

    meta = {"data_hash": split.data_hash, "resume_key": config.resume_key()}
    state, best, resumed_from = _LoopState(), None, None
    ckpt = latest_checkpoint(out_dir) if resume else None
    if ckpt is not None:
        state, best = load_checkpoint(ckpt, model, optimizer, scheduler, meta)
        resumed_from = state.step
    elif not resume:
        shutil.rmtree(out_dir / CHECKPOINTS, ignore_errors=True)

    loop = _Loop(model, optimizer, scheduler, params, config, device, bf16, data.pad_id, train_ex, eval_ex,
                 total_steps, state, best, meta, out_dir, on_step)
    loop.run()
    if eval_ex and (not state.history or state.history[-1]["step"] != state.step):
        loop.evaluate()  # always judge the final weights too
    if loop.best is not None and state.best_step is not None and state.best_step != state.step:
        from peft import set_peft_model_state_dict  # deferred: heavy: peft, training only

        set_peft_model_state_dict(model, loop.best)  # keep the best eval weights, not the last
    model.save_pretrained(str(out_dir))
    result = TrainResult(
        adapter_dir=out_dir, base_model=str(data.base_dir), data_hash=split.data_hash, steps=state.step,
        total_steps=total_steps, train_loss=state.last_loss, eval_loss=state.best_eval,
        best_step=state.best_step, stopped_early=state.stopped_early, resumed_from=resumed_from,
        train_examples=data.n_train, eval_examples=len(split.eval) - data.dropped_eval,
        dropped_examples=data.dropped_train + data.dropped_eval,
        tokens=state.tokens, seconds=state.seconds, device=device, bf16=bf16, history=state.history,
    )
    _write_manifest(out_dir, config, result, split.files, Path(dataset_dir), time.perf_counter() - started)
    return result


@dataclass
class _Data:
    split: Any
    base_dir: Path
    pad_id: int
    train: list[Example]
    eval: list[Example]
    n_train: int
    dropped_train: int
    dropped_eval: int


def _prepare_data(config: TrainConfig, dataset_dir: Path, cache_dir: str | Path | None) -> _Data:
    """Read, split, tokenise (and pack) the dataset with the base model's tokenizer."""

    split = load_dataset(dataset_dir, config.eval_ratio, config.seed)
    base_dir = resolve_base_model(config.base_model, cache_dir)
    tokenizer = _tokenizer(str(base_dir), _mtime(base_dir / "tokenizer.json"))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    train_ex, dropped = tokenize_all(tokenizer, split.train, config.max_seq_len)
    eval_ex, dropped_eval = tokenize_all(tokenizer, split.eval, config.max_seq_len)
    if not train_ex:
        raise KBError(f"no usable training example in {dataset_dir} (all {dropped} lost their answer to "
                      f"max_seq_len={config.max_seq_len})")
    n_train = len(train_ex)
    if config.packing:
        train_ex = pack_examples(train_ex, config.max_seq_len)
        eval_ex = pack_examples(eval_ex, config.max_seq_len) if eval_ex else eval_ex
    return _Data(split, base_dir, pad_id, train_ex, eval_ex, n_train, dropped, dropped_eval)


@functools.lru_cache(maxsize=2)
def _tokenizer(base_dir: str, mtime: float) -> Any:
    """The base model's tokenizer, loaded once per process (parsing it takes ~2 s); the
    file's mtime is part of the key so a replaced tokenizer is read again."""
    from transformers import AutoTokenizer  # deferred: heavy: transformers, training only

    return AutoTokenizer.from_pretrained(base_dir)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


class _Loop:
    """The optimisation loop, split out of :func:`train` to keep each piece small."""

    def __init__(self, model: Any, optimizer: Any, scheduler: Any, params: list[Any], config: TrainConfig,
                 device: str, bf16: bool, pad_id: int, train_ex: list[Example], eval_ex: list[Example],
                 total_steps: int, state: _LoopState, best: dict[str, Any] | None, meta: dict[str, Any],
                 out_dir: Path, on_step: Callable[[dict[str, Any]], None] | None):
        self.model, self.optimizer, self.scheduler, self.params = model, optimizer, scheduler, params
        self.config, self.device, self.bf16, self.pad_id = config, device, bf16, pad_id
        self.train_ex, self.eval_ex, self.total_steps = train_ex, eval_ex, total_steps
        self.state, self.best, self.meta, self.out_dir, self.on_step = state, best, meta, out_dir, on_step

    def run(self) -> None:
        cfg, st = self.config, self.state
        self.model.train()
        bar = tqdm(total=self.total_steps, initial=st.step, desc="train", unit="step", disable=not cfg.progress)
        try:
            while st.step < self.total_steps and not st.stopped_early:
                batches = batch_indices(len(self.train_ex), cfg.batch_size, cfg.seed, st.epoch)
                while st.batch_in_epoch < len(batches) and st.step < self.total_steps and not st.stopped_early:
                    group = batches[st.batch_in_epoch : st.batch_in_epoch + cfg.grad_accum]
                    self._step(group)
                    st.batch_in_epoch += len(group)
                    bar.update(1)
                    bar.set_postfix(loss=f"{st.last_loss:.4f}", refresh=False)
                    self._after_step()
                if st.batch_in_epoch >= len(batches):
                    st.epoch, st.batch_in_epoch = st.epoch + 1, 0
        finally:
            bar.close()

    def _step(self, group: list[list[int]]) -> None:
        import torch  # deferred: heavy: torch, for training and embedding only

        t0 = time.perf_counter()
        batches = [collate([self.train_ex[i] for i in idx], self.pad_id) for idx in group]
        n_tokens = sum(count_label_tokens(b) for b in batches)
        total = 0.0
        for batch in batches:
            if not count_label_tokens(batch):
                continue
            with torch.autocast(device_type=_autocast_type(self.device), dtype=torch.bfloat16, enabled=self.bf16):
                loss = answer_loss_sum(self.model, _to(batch, self.device)) / n_tokens
            loss.backward()
            total += float(loss.detach())
        if self.config.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.params, self.config.max_grad_norm)
        lr = self.scheduler.get_last_lr()[0]
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        st = self.state
        st.step += 1
        st.last_loss = total
        st.tokens += sum(len(self.train_ex[i]) for idx in group for i in idx)
        st.seconds += time.perf_counter() - t0
        record = {"step": st.step, "loss": total, "lr": lr, "epoch": st.epoch}
        if self.on_step is not None:
            self.on_step({**record, "total_steps": self.total_steps})

    def _after_step(self) -> None:
        cfg, st = self.config, self.state
        if self.eval_ex and cfg.eval_every and st.step % cfg.eval_every == 0:
            self.evaluate()
        if cfg.checkpoint_every and (st.step % cfg.checkpoint_every == 0 or st.step == self.total_steps):
            save_checkpoint(self.out_dir, self.model, self.optimizer, self.scheduler, st, self.best, self.meta,
                            cfg.keep_checkpoints)

    def evaluate(self) -> float | None:
        cfg, st = self.config, self.state
        loss = evaluate_loss(self.model, self.eval_ex, cfg.eval_batch_size or cfg.batch_size, self.pad_id,
                             self.device, self.bf16)
        st.history.append({"step": st.step, "train_loss": st.last_loss, "eval_loss": loss})
        if loss is None:
            return None
        if st.best_eval is None or loss < st.best_eval - cfg.early_stopping_min_delta:
            st.best_eval, st.best_step, st.bad_evals = loss, st.step, 0
            self.best = _trainable_state(self.model)
        else:
            st.bad_evals += 1
            if cfg.early_stopping_patience and st.bad_evals >= cfg.early_stopping_patience:
                st.stopped_early = True
        return loss


def _write_manifest(out_dir: Path, config: TrainConfig, result: TrainResult, files: list[Path],
                    dataset: Path, wall: float) -> None:
    import peft  # deferred: heavy: peft, training only
    import torch  # deferred: heavy: torch, for training and embedding only
    import transformers  # deferred: heavy: transformers, training only


    gguf = base_gguf_path(config.base_model)
    manifest = {
        "base_model": config.base_model or "packaged:qwen2.5-coder-0.5b-instruct",
        "base_model_dir": result.base_model,
        "base_gguf": str(gguf) if gguf else None,
        "data_hash": result.data_hash,
        "dataset": str(dataset),
        "data_files": [str(f) for f in files],
        "config": config.model_dump(),
        "metrics": result.metrics(),
        "counts": {"train_examples": result.train_examples, "eval_examples": result.eval_examples,
                   "dropped_examples": result.dropped_examples},
        "steps": result.steps, "total_steps": result.total_steps, "best_step": result.best_step,
        "stopped_early": result.stopped_early, "resumed_from": result.resumed_from,
        "timings": {"train_s": round(result.seconds, 3), "wall_s": round(wall, 3),
                    "s_per_step": round(result.seconds / result.steps, 4) if result.steps else None,
                    "tokens": result.tokens, "tokens_per_s": round(result.tokens_per_s, 1)},
        "device": result.device, "bf16": result.bf16,
        "history": result.history,
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "peft": peft.__version__},
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    _write_json(out_dir / MANIFEST_NAME, manifest)
