"""Local generation with llama.cpp (llama-cpp-python) from any GGUF file.

The default model is the packaged Qwen2.5-Coder-0.5B-Instruct GGUF
(:func:`router.llm.assets.packaged_gguf_path`). The chat template comes from the
GGUF's own metadata, so any chat model in GGUF form works.

Generation goes through :class:`router.llm.llama_batch.BatchScheduler`: one thread owns a
context of ``llm.parallel`` sequences and decodes every running request together, so
concurrent callers share each decode step instead of waiting in one line, and no lock is
held across a stream's ``yield``. The loaded ``Llama`` (its own small context) stays
available to other users of the same weights through :meth:`LlamaCppGenerator.exclusive`.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Hashable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from knowledge.core.errors import ConfigError, GenerationError, MissingExtraError
from router.llm.assets import packaged_gguf_path
from router.llm.base import Generator, Message, register_generator
from router.llm.llama_batch import BatchScheduler
from router.llm.prompts import fit_messages

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from llama_cpp import Llama

    from config.settings import Settings


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def resolve_threads(n_threads: int) -> int:
    """``0`` means every core this process may use.

    >>> resolve_threads(3)
    3
    >>> resolve_threads(0) == available_cores()
    True
    """
    return n_threads if n_threads > 0 else available_cores()


def prompt_budget(n_ctx: int, max_tokens: int) -> int:
    """Prompt tokens that leave room for the answer in an ``n_ctx`` window: ``max_tokens`` of
    it, but never more than half the window (a huge ``max_tokens`` must not starve the prompt).

    >>> prompt_budget(4096, 256), prompt_budget(512, 4096)
    (3838, 254)
    """
    return n_ctx - 2 - min(max_tokens, n_ctx // 2)  # 2: the scheduler's own margin (llama_batch)


class LlamaCppGenerator(Generator):
    """A GGUF chat model run in-process by llama.cpp, with continuous batching.

    ``parallel`` sequences are decoded together (each with ``n_ctx`` tokens of context);
    at most ``max_queue`` further prompts wait, and a prompt whose estimated wait exceeds
    ``max_wait_s`` is refused with :class:`knowledge.core.errors.OverloadedError`.
    """

    name = "llama_cpp"

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        n_ctx: int = 4096,
        n_threads: int = 0,
        n_threads_batch: int = 0,
        seed: int = 0,
        verbose: bool = False,
        cache_dir: Path | None = None,
        parallel: int = 4,
        max_queue: int = 16,
        max_wait_s: float = 60.0,
        wait_factor: float = 1.5,
        latency_factor: float = 3.0,
        prefill_chunk: int = 256,
        max_retry_after_s: float = 60.0,
        **llama_kwargs: Any,
    ) -> None:

        path = Path(model_path) if model_path else packaged_gguf_path(cache_dir)
        if not path.is_file():
            raise ConfigError(f"llm.model_path {str(path)!r} is not a file")
        self.model_path = path
        self.seed = seed
        self.n_ctx = n_ctx
        threads = resolve_threads(n_threads)
        self._lock = threading.RLock()
        # Generation runs in the scheduler's context; the Llama's own one serves tokenizing and
        # any other user of the same weights (see ``exclusive``).
        self._llm = _load(path, n_ctx=n_ctx, n_threads=threads, seed=seed, verbose=verbose,
                          **llama_kwargs)
        self._format = _chat_formatter(self._llm)
        self.scheduler = BatchScheduler(self._llm, parallel=parallel, n_ctx_seq=n_ctx, n_threads=threads,
                                        n_threads_batch=resolve_threads(n_threads_batch or threads),
                                        max_queue=max_queue, max_wait_s=max_wait_s, wait_factor=wait_factor,
                                        latency_factor=latency_factor, prefill_chunk=prefill_chunk,
                                        max_retry_after_s=max_retry_after_s)

    @property
    def llm(self) -> Llama:
        """The underlying ``llama_cpp.Llama`` (use it inside :meth:`exclusive`)."""
        return self._llm

    @property
    def lock(self) -> threading.RLock:
        """Serialises direct uses of :attr:`llm`'s own context, per call."""
        return self._lock

    @contextmanager
    def exclusive(self) -> Iterator[Llama]:
        """The loaded ``Llama`` for one call of another user of the same weights (e.g. a
        router scoring with them); generation in the scheduler's context goes on meanwhile."""
        with self._lock:
            yield self._llm

    @classmethod
    def from_settings(cls, settings: Settings) -> LlamaCppGenerator:
        llm = settings.llm
        return cls(llm.model_path or None, n_ctx=llm.n_ctx, n_threads=llm.n_threads,
                   n_threads_batch=llm.n_threads_batch, cache_dir=settings.cache_dir, parallel=llm.parallel,
                   max_queue=llm.max_queue, max_wait_s=llm.max_queue_wait_s, wait_factor=llm.max_queue_wait_factor,
                   latency_factor=llm.max_latency_factor, max_retry_after_s=llm.max_retry_after_s)

    @classmethod
    def cache_key(cls, settings: Settings) -> Hashable:
        llm = settings.llm
        model = llm.model_path or f"packaged:{settings.cache_dir}"
        return (model, llm.n_ctx, resolve_threads(llm.n_threads), llm.parallel)

    def stats(self) -> dict[str, Any]:
        """Scheduler counters (queue, slots, rejections) for metrics."""
        return self.scheduler.snapshot()

    def tokens(self, messages: list[Message]) -> tuple[list[int], list[str]]:
        """The prompt tokens of ``messages`` in the model's chat template, and its stop strings."""
        result = self._format(messages=messages)
        stops = result.stop if isinstance(result.stop, list) else [result.stop] if result.stop else []
        with self._lock:
            toks = self._llm.tokenize(result.prompt.encode("utf-8"), add_bos=not result.added_special,
                                      special=True)
        return list(toks), [s for s in stops if s]

    def generate(
        self,
        messages: list[Message],
        *,
        max_tokens: int,
        temperature: float,
        stop: list[str] | None = None,
    ) -> str:
        return "".join(self.stream(messages, max_tokens=max_tokens, temperature=temperature, stop=stop))

    def stream(
        self,
        messages: list[Message],
        *,
        max_tokens: int,
        temperature: float,
        stop: list[str] | None = None,
    ) -> Iterator[str]:
        toks, stops = self.tokens(messages)
        budget = prompt_budget(self.n_ctx, max_tokens)
        if len(toks) > budget:
            # Too long for the window: drop the lowest-ranked passages, then clip (never a 502).
            messages = fit_messages(messages, lambda ms: len(self.tokens(ms)[0]), budget)
            before, (toks, stops) = len(toks), self.tokens(messages)
            log.warning("prompt of %d tokens cut to %d for the %d-token window (llm.n_ctx)", before, len(toks),
                        self.n_ctx)
        try:
            job = self.scheduler.submit(toks, max_tokens=max_tokens, temperature=temperature,
                                        stops=list(stop or []) + stops, seed=self.seed)
        except GenerationError as exc:
            raise GenerationError(f"llama.cpp ({self.model_path.name}): {exc}") from exc
        return self.scheduler.pieces(job)

    def close(self) -> None:
        """Stop the scheduler thread and free its context."""
        self.scheduler.close()


def _chat_formatter(llm: Any) -> Any:
    """The chat formatter ``create_chat_completion`` would use for this GGUF."""
    from llama_cpp import llama_chat_format as cf  # deferred: heavy: loads the native llama.cpp library

    template = (getattr(llm, "metadata", None) or {}).get("tokenizer.chat_template")
    if not template:
        return cf.format_chatml

    def text_of(token: int) -> str:
        return llm._model.token_get_text(token) if token != -1 else ""

    eos, bos = llm.token_eos(), llm.token_bos()
    return cf.Jinja2ChatFormatter(template=template, eos_token=text_of(eos), bos_token=text_of(bos),
                                  stop_token_ids=[eos])


def _load(path: Path, **kwargs: Any) -> Llama:
    try:
        from llama_cpp import Llama  # deferred: heavy: loads the native llama.cpp library
    except ImportError as exc:  # pragma: no cover - llama-cpp-python is a core dependency
        raise MissingExtraError("llama-cpp-python", "server") from exc
    try:
        return Llama(model_path=str(path), **kwargs)
    except ValueError as exc:  # llama-cpp-python reports unreadable model files as ValueError
        raise ConfigError(f"llm.model_path {str(path)!r} could not be loaded by llama.cpp: {exc}") from exc


register_generator(LlamaCppGenerator.name, LlamaCppGenerator)
