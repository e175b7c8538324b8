"""Merged exports of a trained adapter: merged HF weights, and a merged GGUF llama.cpp can load.

- :func:`merge_adapter` folds a peft LoRA adapter into its base (``merge_and_unload``) and
  saves a plain HF folder (with the tokenizer).
- :func:`merge_into_gguf` writes a new GGUF of the whole model for a GGUF base: the adapted
  weight matrices are dequantised, merged and stored as F16; every other tensor and all
  metadata (tokenizer, chat template) are copied byte for byte.

The adapter itself as a llama.cpp LoRA GGUF, and its validation, are artifacts that serving
uses too: :mod:`router.adapters.gguf`. For a Hugging Face base (no GGUF), convert the merged
folder with llama.cpp's own ``convert_hf_to_gguf.py`` (not shipped with the Python wheels, so
not run from here).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from knowledge.core.errors import ConfigError, ValidationError
from knowledge.core.files import atomic_dir, atomic_path
from router.adapters.gguf import base_gguf_for, gguf_arch_info, lora_pairs


def _field(reader: Any, key: str) -> Any:
    field = reader.get_field(key)
    return field.contents() if field is not None else None


# --- merged model (GGUF base) --------------------------------------------------------------
def merge_into_gguf(adapter_dir: str | Path, out_path: str | Path, base_gguf: str | Path | None = None) -> Path:
    """A full GGUF with the adapter merged in: adapted matrices become F16 ``W + s·B·A``
    (dequantised from the base); all other tensors and metadata are copied unchanged."""
    import gguf  # lazy: the gguf package (0.3 s to import) is needed only to write files

    adapter_dir, out_path = Path(adapter_dir), Path(out_path)
    base = base_gguf_for(adapter_dir, base_gguf)
    info = gguf_arch_info(base)
    pairs, alpha, cfg = lora_pairs(adapter_dir, info)
    scale = alpha / float(cfg["r"])
    reader = gguf.GGUFReader(str(base))
    merged = {}
    for t in reader.tensors:
        if t.name in pairs:
            a, b = pairs[t.name]
            w = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
            merged[t.name] = np.ascontiguousarray((w + scale * (b @ a)).astype(np.float16))
    missing = sorted(set(pairs) - set(merged))
    if missing:
        raise ValidationError(f"base GGUF {base} lacks adapted tensors {missing}")
    with atomic_path(out_path) as tmp:
        _copy_gguf(reader, tmp, info["arch"], merged)
    return out_path


def _copy_gguf(reader: Any, out: str, arch: str, replace: dict[str, Any]) -> None:
    import gguf  # lazy: the gguf package (0.3 s to import) is needed only to write files

    writer = gguf.GGUFWriter(out, arch=arch, endianess=reader.endianess)
    alignment = _field(reader, gguf.Keys.General.ALIGNMENT)
    if alignment is not None:
        writer.data_alignment = alignment
    for field in reader.fields.values():
        if field.name == gguf.Keys.General.ARCHITECTURE or field.name.startswith("GGUF."):
            continue  # written by GGUFWriter itself
        vtype = field.types[0]
        sub = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, field.contents(), vtype, sub_type=sub)
    for t in reader.tensors:
        if t.name in replace:
            arr = replace[t.name]
            writer.add_tensor_info(t.name, arr.shape, arr.dtype, arr.nbytes, gguf.GGMLQuantizationType.F16)
        else:
            writer.add_tensor_info(t.name, t.data.shape, t.data.dtype, t.data.nbytes, t.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for t in reader.tensors:
        writer.write_tensor_data(replace.get(t.name, t.data), tensor_endianess=reader.endianess)
    writer.close()


# --- merged model (HF) ------------------------------------------------------------------------
def merge_adapter(adapter_dir: str | Path, out_dir: str | Path, base_model: str | Path | None = None,
                  dtype: str = "bfloat16") -> Path:
    """Fold the adapter into its base with peft's ``merge_and_unload`` and save a plain HF
    folder (weights + tokenizer). ``base_model`` defaults to the folder recorded at training."""
    # lazy: torch, peft and transformers (extra "train"; several seconds to import)
    import torch
    from peft import PeftModel  # deferred: heavy: peft, training only
    from transformers import AutoModelForCausalLM, AutoTokenizer  # deferred: heavy: transformers, training only

    adapter_dir, out_dir = Path(adapter_dir), Path(out_dir)
    base = Path(base_model) if base_model else _base_dir_for(adapter_dir)
    torch_dtype = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}.get(dtype)
    if torch_dtype is None:
        raise ConfigError(f"merge dtype {dtype!r}; use bfloat16, float16 or float32")
    model = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32)
    merged = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    merged.to(torch_dtype)
    with atomic_dir(out_dir) as tmp:
        merged.save_pretrained(str(tmp))
        AutoTokenizer.from_pretrained(str(base)).save_pretrained(str(tmp))
    return out_dir


def _base_dir_for(adapter_dir: Path) -> Path:
    manifest = adapter_dir / "train_manifest.json"
    if manifest.is_file():
        recorded = json.loads(manifest.read_text(encoding="utf-8")).get("base_model_dir")
        if recorded and Path(recorded).is_dir():
            return Path(recorded)
    cfg = json.loads((adapter_dir / "adapter_config.json").read_text(encoding="utf-8"))
    recorded = cfg.get("base_model_name_or_path")
    if recorded and Path(recorded).is_dir():
        return Path(recorded)
    raise ConfigError(f"{adapter_dir}: cannot find its base model; pass base_model explicitly")
