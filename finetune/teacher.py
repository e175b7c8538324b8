"""The teacher LLM for distillation: a prompt-hash answer cache and API-key rotation.

* :class:`TeacherCache` keeps every teacher answer in ``KB_HOME/datasets/.teacher_cache.jsonl``
  keyed by the sha256 of the prompt (messages + generation settings), so rerunning a
  distillation costs no teacher call at all.
* :class:`RotatingTeacher` spreads calls over several generators (one per API key, from
  comma-separated ``DASHSCOPE_API_KEY`` / ``KB_LLM_API_KEY``); a key that hits a rate limit
  (a ``GenerationError`` mentioning 429 or "rate") rests for ``cooldown_s`` while the others
  carry on.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable

from knowledge.core.errors import ConfigError, GenerationError
from router.llm import create_generator

log = logging.getLogger(__name__)
CACHE_NAME = ".teacher_cache.jsonl"


def prompt_key(messages: list[dict[str, str]], max_tokens: int, temperature: float, model: str = "") -> str:
    """Cache key of one teacher call.

    >>> prompt_key([{"role": "user", "content": "hi"}], 8, 0.0)[:12]
    'b7f4bb2ece50'
    """
    blob = json.dumps({"m": messages, "n": max_tokens, "t": temperature, "model": model},
                      ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class TeacherCache:
    """Append-only JSONL of ``{"key", "answer"}`` lines, loaded into a dict once."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._data: dict[str, str] = {}
        if self.path.is_file():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    row = json.loads(line)
                    self._data[row["key"]] = row["answer"]
                except (json.JSONDecodeError, KeyError, TypeError):
                    continue  # a line cut by an interrupted run is simply not cached

    def get(self, key: str) -> str | None:
        return self._data.get(key)

    def put(self, key: str, answer: str) -> None:
        self._data[key] = answer
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"key": key, "answer": answer}, ensure_ascii=False) + "\n")

    def __len__(self) -> int:
        return len(self._data)


def is_rate_limit(exc: Exception) -> bool:
    """A rate-limit error from any backend (they report it in the message).

    >>> is_rate_limit(GenerationError("HTTP 429 Too Many Requests")), is_rate_limit(GenerationError("boom"))
    (True, False)
    """
    text = str(exc).lower()
    return "429" in text or "rate" in text or "throttl" in text


class RotatingTeacher:
    """Calls one of several generators; rate-limited ones cool down, the rest carry on."""

    def __init__(self, generators: list[Any], cooldown_s: float = 60.0, max_wait_s: float = 300.0,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep):
        if not generators:
            raise ConfigError("the teacher needs at least one generator")
        self.generators = list(generators)
        self.cooldown_s = cooldown_s
        self.max_wait_s = max_wait_s
        self.clock, self.sleep = clock, sleep
        self.resting_until = [0.0] * len(self.generators)
        self.next = 0
        self.calls = 0
        self.rate_limited = 0
        self._lock = threading.Lock()

    def _pick(self) -> int | None:
        now = self.clock()
        n = len(self.generators)
        for step in range(n):
            i = (self.next + step) % n
            if self.resting_until[i] <= now:
                self.next = (i + 1) % n
                return i
        return None

    def generate(self, messages: list[dict[str, str]], *, max_tokens: int, temperature: float) -> str:
        waited = 0.0
        while True:
            with self._lock:
                i = self._pick()
                if i is None:
                    wait = max(0.0, min(self.resting_until) - self.clock())
                else:
                    wait = 0.0
            if i is None:
                if waited + wait > self.max_wait_s:
                    raise GenerationError(f"every teacher key is rate-limited; waited {waited:.0f} s")
                self.sleep(wait)
                waited += wait
                continue
            try:
                self.calls += 1
                return self.generators[i].generate(messages, max_tokens=max_tokens, temperature=temperature)
            except GenerationError as exc:
                if not is_rate_limit(exc):
                    raise
                self.rate_limited += 1
                log.warning("teacher key #%d rate-limited (%s); resting %.0f s", i, exc, self.cooldown_s)
                with self._lock:
                    self.resting_until[i] = self.clock() + self.cooldown_s


def split_keys(value: str | None) -> list[str]:
    """Comma-separated API keys.

    >>> split_keys(" a, b ,,c")
    ['a', 'b', 'c']
    """
    return [k.strip() for k in (value or "").split(",") if k.strip()]


def build_teacher(settings: Any, cooldown_s: float = 60.0) -> RotatingTeacher:
    """One generator per API key for the configured backend (``settings.llm.backend``).

    Remote backends get one instance per key in ``DASHSCOPE_API_KEY`` (dashscope) or
    ``KB_LLM_API_KEY`` (everything else); the local model is one instance, loaded once.
    """

    env = "DASHSCOPE_API_KEY" if settings.llm.backend == "dashscope" else "KB_LLM_API_KEY"
    keys = split_keys(os.environ.get(env))
    if len(keys) <= 1:
        return RotatingTeacher([create_generator(settings)], cooldown_s)
    generators = []
    saved = os.environ.get(env)
    try:
        for key in keys:
            # Each backend reads its key from the environment through settings; build one per key.
            os.environ[env] = key
            generators.append(create_generator(settings))
    finally:
        if saved is None:
            os.environ.pop(env, None)
        else:
            os.environ[env] = saved
    return RotatingTeacher(generators, cooldown_s)


class CachedTeacher:
    """A teacher behind the prompt-hash cache; counts calls and cache hits."""

    def __init__(self, teacher: Any, cache: TeacherCache, model: str = ""):
        self.teacher, self.cache, self.model = teacher, cache, model
        self.calls = 0
        self.hits = 0

    def generate(self, messages: list[dict[str, str]], *, max_tokens: int = 160, temperature: float = 0.0) -> str:
        key = prompt_key(messages, max_tokens, temperature, self.model)
        cached = self.cache.get(key)
        if cached is not None:
            self.hits += 1
            return cached
        self.calls += 1
        answer = self.teacher.generate(messages, max_tokens=max_tokens, temperature=temperature)
        self.cache.put(key, answer)
        return answer
