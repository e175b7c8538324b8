"""Adapter files for llama.cpp: write a peft LoRA adapter as a LoRA GGUF, and validate one.

:func:`validate_gguf_adapter` checks an adapter file against its base **before** anything
loads it: llama-cpp-python 0.3.36 segfaults on an invalid adapter instead of raising. Both the
serving side (:mod:`router.lora` validates before loading, and writes the GGUF of a published
adapter that lacks one with :func:`adapter_gguf_for`) and training (``kb train`` evaluates and
exports) use this module.

GGUF facts this relies on (verified against llama.cpp, see ``ARCHITECTURE.md``): ``general.type =
adapter``, ``adapter.type = lora``, ``adapter.lora.alpha`` (without it llama.cpp scales by 1,
not alpha/r); tensors named after the base tensor including ``.weight`` plus ``.lora_a`` /
``.lora_b``; A stored as (r, in) and B as (out, r), no transposes; llama-architecture GGUFs
permute the rows of attn_q / attn_k, so lora_b of those needs the same permutation.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load_file

from knowledge.core.errors import ConfigError, ValidationError
from knowledge.core.files import atomic_path
from router.adapters.gguf_header import read_gguf_header

# Architectures whose converter permutes q/k rows (llama.cpp's LlamaModel.permute).
PERMUTE_QK_ARCHS = {"llama"}
LORA_SUFFIXES = (".lora_a", ".lora_b")
ADAPTER_GGUF = "adapter.gguf"


# --- pure helpers ------------------------------------------------------------------------
def permute_qk(weights: Any, n_head: int, n_head_kv: int | None = None) -> Any:
    """Reorder rows the way llama-architecture GGUF converters do for attn_q / attn_k
    (rotary halves interleaved per head). Works on any (out, ...) numpy array.

    >>> permute_qk(np.arange(8).reshape(8, 1), n_head=1)[:, 0].tolist()
    [0, 4, 1, 5, 2, 6, 3, 7]
    """
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    rows = weights.shape[0]
    return (weights.reshape(n_head, 2, rows // n_head // 2, *weights.shape[1:])
            .swapaxes(1, 2)
            .reshape(weights.shape))


def peft_module_name(key: str) -> tuple[str, str]:
    """Split a peft state-dict key into (HF module name, "lora_A"|"lora_B").

    >>> peft_module_name("base_model.model.model.layers.3.self_attn.q_proj.lora_A.weight")
    ('model.layers.3.self_attn.q_proj', 'lora_A')
    """
    name = key[len("base_model.model."):] if key.startswith("base_model.model.") else key
    for part in ("lora_A", "lora_B"):
        marker = f".{part}."
        if marker in name:
            return name.split(marker)[0], part
    raise ValidationError(f"{key!r} is not a LoRA A/B tensor (DoRA, biases and embeddings are not supported)")


# --- reading adapters and GGUF files -----------------------------------------------------------
def read_peft_adapter(adapter_dir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    cfg_path = adapter_dir / "adapter_config.json"
    weights = adapter_dir / "adapter_model.safetensors"
    if not cfg_path.is_file() or not weights.is_file():
        raise ValidationError(f"{adapter_dir} is not a peft adapter (adapter_config.json / "
                              "adapter_model.safetensors missing)")
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    if cfg.get("peft_type", "LORA") != "LORA":
        raise ValidationError(f"{adapter_dir}: peft_type {cfg.get('peft_type')!r} is not LORA")
    for key in ("rank_pattern", "alpha_pattern"):
        if cfg.get(key):
            raise ValidationError(f"{adapter_dir}: {key} is not supported by llama.cpp adapters")
    if cfg.get("use_dora") or cfg.get("modules_to_save"):
        raise ValidationError(f"{adapter_dir}: DoRA / modules_to_save cannot be expressed as a llama.cpp LoRA")
    return cfg, load_file(str(weights))


def effective_alpha(cfg: dict[str, Any]) -> float:
    """The alpha llama.cpp needs so that its scale alpha/r equals peft's scale.

    >>> effective_alpha({"r": 8, "lora_alpha": 16})
    16.0
    >>> effective_alpha({"r": 16, "lora_alpha": 16, "use_rslora": True})  # peft scale 16/sqrt(16)
    64.0
    """
    r, alpha = float(cfg["r"]), float(cfg["lora_alpha"])
    return alpha * math.sqrt(r) if cfg.get("use_rslora") else alpha


def gguf_arch_info(base_gguf: Path) -> dict[str, Any]:
    header = read_gguf_header(base_gguf)
    arch = header.fields.get("general.architecture")
    if not arch:
        raise ValidationError(f"{base_gguf} has no general.architecture")
    return {
        "arch": arch,
        "n_blocks": int(header.fields.get(f"{arch}.block_count") or 0),
        "n_head": header.fields.get(f"{arch}.attention.head_count"),
        "n_head_kv": header.fields.get(f"{arch}.attention.head_count_kv"),
        "tensors": {name: info.shape for name, info in header.tensors.items()},
    }


def _gguf_base_name(module: str, arch: str, n_blocks: int) -> str:
    import gguf  # lazy: the gguf package (0.3 s to import) is needed only to write files

    arch_enum = next((k for k, v in gguf.MODEL_ARCH_NAMES.items() if v == arch), None)
    if arch_enum is None:
        raise ValidationError(f"gguf package does not know architecture {arch!r}")
    tmap = gguf.get_tensor_name_map(arch_enum, n_blocks)
    name = tmap.get_name(module + ".weight", try_suffixes=(".weight",))
    if name is None:
        raise ValidationError(f"no GGUF tensor for module {module!r} in architecture {arch!r}")
    return name


def lora_pairs(adapter_dir: Path, info: dict[str, Any]) -> tuple[dict[str, tuple[Any, Any]], float, dict[str, Any]]:
    """``{gguf base tensor name: (A (r,in), B (out,r))}`` with B already permuted where the
    architecture needs it, the llama.cpp alpha and the adapter config."""
    cfg, weights = read_peft_adapter(adapter_dir)
    found: dict[str, dict[str, Any]] = {}
    for key, value in weights.items():
        module, part = peft_module_name(key)
        found.setdefault(module, {})[part] = value
    pairs: dict[str, tuple[Any, Any]] = {}
    for module, parts in sorted(found.items()):
        if set(parts) != {"lora_A", "lora_B"}:
            raise ValidationError(f"{adapter_dir}: module {module} lacks {({'lora_A', 'lora_B'} - set(parts))}")
        name = _gguf_base_name(module, info["arch"], info["n_blocks"])
        a = np.asarray(parts["lora_A"], dtype=np.float32)
        b = np.asarray(parts["lora_B"], dtype=np.float32)
        if info["arch"] in PERMUTE_QK_ARCHS and name.split(".")[-2] in ("attn_q", "attn_k"):
            n_kv = info["n_head_kv"] if name.split(".")[-2] == "attn_k" else None
            b = permute_qk(b, int(info["n_head"]), int(n_kv) if n_kv else None)
        pairs[name] = (a, b)
    return pairs, effective_alpha(cfg), cfg


# --- GGUF adapter --------------------------------------------------------------------------
def write_gguf_adapter(adapter_dir: str | Path, out_path: str | Path, base_gguf: str | Path | None = None,
                       dtype: str = "f32") -> Path:
    """Write a peft LoRA adapter as a llama.cpp LoRA GGUF, then validate it against the base.

    ``base_gguf`` defaults to the ``base_gguf`` recorded in the adapter's
    ``train_manifest.json``. ``dtype`` is ``f32`` or ``f16``.
    """
    import gguf  # lazy: the gguf package (0.3 s to import) is needed only to write files

    adapter_dir, out_path = Path(adapter_dir), Path(out_path)
    base = base_gguf_for(adapter_dir, base_gguf)
    info = gguf_arch_info(base)
    pairs, alpha, cfg = lora_pairs(adapter_dir, info)
    if dtype not in ("f32", "f16"):
        raise ConfigError(f"GGUF adapter dtype {dtype!r}; use f32 or f16")
    np_dtype = np.float32 if dtype == "f32" else np.float16
    with atomic_path(out_path) as tmp:
        # GGUFWriter writes to a path; it writes into the temp file, which is validated before
        # it replaces ``out_path``, so an invalid adapter never lands where llama.cpp looks.
        writer = gguf.GGUFWriter(tmp, info["arch"])
        writer.add_type(gguf.GGUFType.ADAPTER)
        writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
        writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(alpha))
        for name, (a, b) in pairs.items():
            writer.add_tensor(f"{name}.lora_a", np.ascontiguousarray(a.astype(np_dtype)))
            writer.add_tensor(f"{name}.lora_b", np.ascontiguousarray(b.astype(np_dtype)))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        validate_gguf_adapter(tmp, base)
    return out_path


def base_gguf_for(adapter_dir: Path, base_gguf: str | Path | None) -> Path:
    if base_gguf is None:
        manifest = adapter_dir / "train_manifest.json"
        if manifest.is_file():
            base_gguf = json.loads(manifest.read_text(encoding="utf-8")).get("base_gguf")
    if not base_gguf:
        raise ConfigError(f"{adapter_dir}: no base GGUF given or recorded; pass the GGUF the adapter is for")
    base = Path(base_gguf)
    if not base.is_file():
        raise ConfigError(f"base GGUF {base} does not exist")
    return base


def validate_gguf_adapter(path: str | Path, base_gguf: str | Path) -> dict[str, Any]:
    """Check a LoRA GGUF against its base GGUF without loading either into llama.cpp.

    Checks: architecture equal to the base's, ``general.type = adapter``, ``adapter.type =
    lora``, a positive finite ``adapter.lora.alpha``, every tensor a ``<base>.lora_a`` /
    ``.lora_b`` of a 2-D base tensor, A and B in pairs of F32/F16 whose bytes lie inside the
    file, shapes A=(r,in), B=(out,r) with one rank throughout, and finite values. Raises
    ``ValidationError`` listing every problem; returns ``{"arch", "alpha", "rank",
    "targets"}`` when valid.
    """
    path, base_gguf = Path(path), Path(base_gguf)
    header = read_gguf_header(path)
    base = gguf_arch_info(base_gguf)
    fields, tensors = header.fields, header.tensors
    problems: list[str] = []
    arch = fields.get("general.architecture")
    if arch != base["arch"]:
        problems.append(f"general.architecture {arch!r} differs from the base's {base['arch']!r}")
    if fields.get("general.type") != "adapter":
        problems.append(f"general.type is {fields.get('general.type')!r}, expected 'adapter'")
    if fields.get("adapter.type") != "lora":
        problems.append(f"adapter.type is {fields.get('adapter.type')!r}, expected 'lora'")
    alpha = fields.get("adapter.lora.alpha")
    if not isinstance(alpha, (int, float)) or not math.isfinite(alpha) or alpha <= 0:
        problems.append(f"adapter.lora.alpha is {alpha!r}, expected a positive number")
    problems += [f"tensor {n!r} is not a .lora_a/.lora_b tensor" for n in tensors if not n.endswith(LORA_SUFFIXES)]
    targets = sorted({n[: -len(".lora_a")] for n in tensors if n.endswith(LORA_SUFFIXES)})
    ranks: set[int] = set()
    for target in targets:
        problems += _check_pair(path, header, target, base["tensors"], ranks)
    if not targets:
        problems.append("the adapter holds no LoRA tensors")
    if len(ranks) > 1:
        problems.append(f"mixed LoRA ranks {sorted(ranks)}")
    if problems:
        raise ValidationError(f"invalid LoRA GGUF {path} for base {base_gguf.name}: " + "; ".join(problems))
    return {"arch": arch, "alpha": float(alpha), "rank": ranks.pop(), "targets": targets}


def _check_pair(path: Path, header: Any, target: str, base: dict[str, list[int]], ranks: set[int]) -> list[str]:
    a, b = header.tensors.get(f"{target}.lora_a"), header.tensors.get(f"{target}.lora_b")
    if a is None or b is None:
        return [f"{target}: lora_a and lora_b must come in pairs"]
    if target not in base:
        return [f"{target}: no such tensor in the base model"]
    out: list[str] = []
    for t in (a, b):
        out += _check_data(path, header, t)
    # GGUF shapes are listed innermost first: base (in, out), A (in, r), B (r, out).
    bshape, ashape, b_shape = base[target], a.shape, b.shape
    if len(bshape) != 2 or len(ashape) != 2 or len(b_shape) != 2:
        return out + [f"{target}: expected 2-D tensors, got base {bshape}, A {ashape}, B {b_shape}"]
    if ashape[0] != bshape[0]:
        out.append(f"{target}.lora_a: input size {ashape[0]} != base {bshape[0]}")
    if b_shape[1] != bshape[1]:
        out.append(f"{target}.lora_b: output size {b_shape[1]} != base {bshape[1]}")
    if ashape[1] != b_shape[0]:
        out.append(f"{target}: rank of A ({ashape[1]}) != rank of B ({b_shape[0]})")
    ranks.add(ashape[1])
    return out


def _check_data(path: Path, header: Any, t: Any) -> list[str]:
    nbytes = t.nbytes()
    if t.ggml_type not in (0, 1) or nbytes is None:  # F32, F16
        return [f"{t.name}: ggml type {t.ggml_type}, expected F32 (0) or F16 (1)"]
    if t.offset + nbytes > header.file_size:
        return [f"{t.name}: data runs past the end of the file (truncated?)"]
    data = np.memmap(path, dtype=np.float32 if t.ggml_type == 0 else np.float16, mode="r", offset=t.offset,
                     shape=(nbytes // (4 if t.ggml_type == 0 else 2),))
    if not np.isfinite(data).all():
        return [f"{t.name}: holds NaN or infinite values"]
    return []




def adapter_gguf_for(folder: Path, base_gguf: Path) -> Path:
    """The llama.cpp GGUF of a published adapter folder, written once beside it when missing.

    ``folder`` is a version under the knowledge-base home (never the package's shipped
    adapter, which carries its GGUF); the file is written atomically, so a process killed
    mid-write leaves no truncated ``adapter.gguf`` for the next start to load.
    """
    path = Path(folder) / ADAPTER_GGUF
    if not path.is_file():
        write_gguf_adapter(folder, path, base_gguf)
    return path
