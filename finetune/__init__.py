"""Offline fine-tuning: data → LoRA training → evaluation gate → published adapter.

Modules (import them directly; this package imports nothing heavy):

- ``finetune.data``       JSONL (Alpaca / ShareGPT / messages) → chat messages → answer-only labels, packing
- ``finetune.base_model`` the base model as a HF folder (the packaged GGUF is dequantised once)
- ``finetune.train``      ``TrainConfig`` and ``train()``: peft LoRA with a resumable hand-written loop
- ``finetune.adapters``   ``AdapterStore``: versions, the gate, atomic publish and rollback
- ``finetune.export``     merged HF weights, llama.cpp LoRA GGUF (+ validation), merged GGUF
- ``finetune.cli``        ``kb train`` and ``kb adapters ...``
"""
