"""Router adapters as artifacts: the store of versioned adapters and their llama.cpp files.

Serving (:mod:`router.lora`) and training (``finetune``) share these modules, so neither
imports the other:

- :mod:`router.adapters.store` — :class:`AdapterStore`: ``KB_HOME/adapters/vNNNN/`` folders,
  each with its ``manifest.json``, the evaluation gate, atomic publish and rollback;
- :mod:`router.adapters.gguf` — a peft adapter written as a llama.cpp LoRA GGUF, and the
  validation every adapter file passes before llama.cpp loads it;
- :mod:`router.adapters.gguf_header` — a fast reader of GGUF headers.

``base/`` holds the base router adapter (data, not code): a LoRA of the packaged
Qwen2.5-Coder-0.5B trained on the development knowledge bases
(``benchmarks/build_router_adapter.py``), as a peft folder and as a llama.cpp GGUF, with its
``manifest.json``. ``router.backend: lora`` serves it on a knowledge base that has no adapter
of its own; ``kb train`` fine-tunes it for one. Serving never writes into the package: a GGUF
that must be produced goes beside the adapter version under ``KB_HOME``.
"""

from __future__ import annotations

from pathlib import Path

from router.adapters.store import DEFAULT_KEY_METRICS, AdapterStore, compare_metrics

BASE_ADAPTER_DIR = Path(__file__).resolve().parent / "base"

__all__ = ["BASE_ADAPTER_DIR", "DEFAULT_KEY_METRICS", "AdapterStore", "compare_metrics"]
