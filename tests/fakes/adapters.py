"""A zero-initialised peft LoRA folder for the packaged Qwen2.5-Coder-0.5B (B = 0, so the adapted
model equals the base): tests of the adapter plumbing, not of accuracy."""

from __future__ import annotations

import json
from pathlib import Path


def zero_lora_adapter(folder: Path, layers: int = 2, r: int = 4) -> Path:
    """q_proj/v_proj LoRA tensors of the first ``layers`` blocks in peft's layout."""
    import numpy as np
    from safetensors.numpy import save_file

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    tensors = {}
    for i in range(layers):
        for mod, out in (("q_proj", 896), ("v_proj", 128)):
            key = f"base_model.model.model.layers.{i}.self_attn.{mod}"
            tensors[f"{key}.lora_A.weight"] = rng.normal(0, 0.02, (r, 896)).astype(np.float32)
            tensors[f"{key}.lora_B.weight"] = np.zeros((out, r), dtype=np.float32)
    save_file(tensors, str(folder / "adapter_model.safetensors"))
    (folder / "adapter_config.json").write_text(json.dumps(
        {"peft_type": "LORA", "r": r, "lora_alpha": 2 * r, "target_modules": ["q_proj", "v_proj"]}))
    return folder
