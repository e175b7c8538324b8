"""Local generation with llama.cpp (llama-cpp-python) from any GGUF file.

The default model is the packaged Qwen2.5-Coder-0.5B-Instruct GGUF
(:func:`router.llm.assets.packaged_gguf_path`). The chat template comes from the
GGUF's own metadata, so any chat model in GGUF form works.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Hashable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from knowledge.errors import ConfigError, GenerationError, MissingExtraError
from router.llm.assets import packaged_gguf_path
from router.llm.base import Generator, Message, register_generator

if TYPE_CHECKING:
    from llama_cpp import Llama

    from config.settings import Settings


def resolve_threads(n_threads: int) -> int:
    """``0`` means every core.

    >>> resolve_threads(3)
    3
    >>> resolve_threads(0) == (os.cpu_count() or 1)
    True
    """
    return n_threads if n_threads > 0 else (os.cpu_count() or 1)


class LlamaCppGenerator(Generator):
    """A GGUF chat model run in-process by llama.cpp.

    One llama.cpp context is not thread-safe, so calls are serialised with a lock;
    a stream holds the lock until it is exhausted or closed.
    """

    name = "llama_cpp"

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        n_ctx: int = 4096,
        n_threads: int = 0,
        seed: int = 0,
        verbose: bool = False,
        cache_dir: Path | None = None,
        **llama_kwargs: Any,
    ) -> None:
        path = Path(model_path) if model_path else packaged_gguf_path(cache_dir)
        if not path.is_file():
            raise ConfigError(f"llm.model_path {str(path)!r} is not a file")
        self.model_path = path
        self.seed = seed
        self._lock = threading.RLock()
        self._llm = _load(path, n_ctx=n_ctx, n_threads=resolve_threads(n_threads), seed=seed,
                          verbose=verbose, **llama_kwargs)

    @property
    def llm(self) -> Llama:
        """The underlying ``llama_cpp.Llama`` (hold :attr:`lock` while using it)."""
        return self._llm

    @property
    def lock(self) -> threading.RLock:
        """Serialises every use of :attr:`llm` (re-entrant, so callers may nest)."""
        return self._lock

    @classmethod
    def from_settings(cls, settings: Settings) -> LlamaCppGenerator:
        llm = settings.llm
        return cls(llm.model_path or None, n_ctx=llm.n_ctx, n_threads=llm.n_threads,
                   cache_dir=settings.cache_dir)

    @classmethod
    def cache_key(cls, settings: Settings) -> Hashable:
        llm = settings.llm
        model = llm.model_path or f"packaged:{settings.cache_dir}"
        return (model, llm.n_ctx, resolve_threads(llm.n_threads))

    def generate(
        self,
        messages: list[Message],
        *,
        max_tokens: int,
        temperature: float,
        stop: list[str] | None = None,
    ) -> str:
        with self._lock:
            try:
                result = self._llm.create_chat_completion(
                    messages=messages, max_tokens=max_tokens, temperature=temperature,
                    stop=stop or [], seed=self.seed,
                )
            except (RuntimeError, ValueError) as exc:  # e.g. prompt longer than n_ctx
                raise GenerationError(f"llama.cpp ({self.model_path.name}): {exc}") from exc
        return result["choices"][0]["message"].get("content") or ""

    def stream(
        self,
        messages: list[Message],
        *,
        max_tokens: int,
        temperature: float,
        stop: list[str] | None = None,
    ) -> Iterator[str]:
        with self._lock:
            try:
                chunks = self._llm.create_chat_completion(
                    messages=messages, max_tokens=max_tokens, temperature=temperature,
                    stop=stop or [], seed=self.seed, stream=True,
                )
                for chunk in chunks:
                    piece = chunk["choices"][0]["delta"].get("content")
                    if piece:
                        yield piece
            except (RuntimeError, ValueError) as exc:
                raise GenerationError(f"llama.cpp ({self.model_path.name}): {exc}") from exc


def _load(path: Path, **kwargs: Any) -> Llama:
    try:
        from llama_cpp import Llama
    except ImportError as exc:  # pragma: no cover - llama-cpp-python is a core dependency
        raise MissingExtraError("llama-cpp-python", "server") from exc
    try:
        return Llama(model_path=str(path), **kwargs)
    except ValueError as exc:  # llama-cpp-python reports unreadable model files as ValueError
        raise ConfigError(f"llm.model_path {str(path)!r} could not be loaded by llama.cpp: {exc}") from exc


register_generator(LlamaCppGenerator.name, LlamaCppGenerator)
