"""Answer generation backends behind one small interface.

    from router.llm import create_generator, build_rag_messages
    gen = create_generator(settings)                      # llm.backend picks the backend
    msgs = build_rag_messages(question, passages, "zh")
    text = gen.generate(msgs, max_tokens=256, temperature=0.1)

Backends (registered on import; their heavy libraries load only when one is built):
``llama_cpp`` (local GGUF, default the packaged Qwen2.5-Coder-0.5B-Instruct),
``openai`` (any OpenAI-compatible server), ``dashscope`` (Alibaba Cloud Qwen),
``extractive`` (no model: quotes the best passage sentences).
"""

from __future__ import annotations

from router.llm import dashscope_gen, extractive, llama_cpp, openai_compat  # noqa: F401  (registration)
from router.llm.assets import packaged_gguf_path
from router.llm.base import (
    Generator,
    clear_generator_cache,
    create_generator,
    generator_class,
    register_generator,
    registered_generators,
)
from router.llm.extractive import ExtractiveGenerator, compose
from router.llm.prompts import (
    REFUSAL_EN,
    REFUSAL_ZH,
    build_rag_messages,
    detect_language,
    is_refusal,
    parse_rag_messages,
    refusal_for,
)

__all__ = [
    "REFUSAL_EN",
    "REFUSAL_ZH",
    "ExtractiveGenerator",
    "Generator",
    "build_rag_messages",
    "clear_generator_cache",
    "compose",
    "create_generator",
    "detect_language",
    "generator_class",
    "is_refusal",
    "packaged_gguf_path",
    "parse_rag_messages",
    "refusal_for",
    "register_generator",
    "registered_generators",
]
