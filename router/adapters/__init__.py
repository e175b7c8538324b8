"""Router adapters that ship with the project (data, not code).

``base/`` holds the base router adapter: a LoRA of the packaged Qwen2.5-Coder-0.5B trained on the
development knowledge bases (``benchmarks/build_router_adapter.py``), as a peft folder and as a
llama.cpp GGUF, with its ``manifest.json``. ``router.backend: lora`` serves it on a knowledge base
that has no adapter of its own; ``kb train`` fine-tunes it for one.
"""

from __future__ import annotations

from pathlib import Path

BASE_ADAPTER_DIR = Path(__file__).resolve().parent / "base"

__all__ = ["BASE_ADAPTER_DIR"]
