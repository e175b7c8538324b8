"""The ``Generator`` interface and its registry.

A generator turns chat messages into text. Backends implement ONE method,
:meth:`Generator.generate`; backends that can stream also override
:meth:`Generator.stream`. Choosing a backend is a settings string
(``llm.backend``) looked up in the registry::

    register_generator("echo", EchoGenerator)
    gen = create_generator(settings)          # settings.llm.backend == "echo"
    gen.generate([{"role": "user", "content": "hi"}], max_tokens=8, temperature=0)

Local models are expensive to load, so :func:`create_generator` keeps one
instance per :meth:`Generator.cache_key` for the life of the process.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Hashable, Iterator
from typing import TYPE_CHECKING, Any

from knowledge.core.errors import KBError
from knowledge.core.registry import Registry

if TYPE_CHECKING:
    from config.settings import Settings

Message = dict[str, str]


class Generator(ABC):
    """Chat-completion backend. Subclasses set ``name`` and implement :meth:`generate`."""

    name: str = ""

    @abstractmethod
    def generate(
        self,
        messages: list[Message],
        *,
        max_tokens: int,
        temperature: float,
        stop: list[str] | None = None,
    ) -> str:
        """Return the assistant's reply to ``messages`` (OpenAI-style role/content dicts)."""

    def stream(
        self,
        messages: list[Message],
        *,
        max_tokens: int,
        temperature: float,
        stop: list[str] | None = None,
    ) -> Iterator[str]:
        """Yield the reply in pieces; joined they equal :meth:`generate`'s text.

        The default yields the whole reply at once; streaming backends override it.
        """
        yield self.generate(messages, max_tokens=max_tokens, temperature=temperature, stop=stop)

    @classmethod
    def from_settings(cls, settings: Settings) -> Generator:
        """Build the backend from the ``llm`` settings section (default: no arguments)."""
        return cls()

    @classmethod
    def cache_key(cls, settings: Settings) -> Hashable | None:
        """Key under which :func:`create_generator` keeps the instance; ``None`` = build anew.

        Local-model backends return the settings that decide which weights are loaded,
        so the model is loaded once per process.
        """
        return None


def _check_generator(name: str, cls: Any) -> None:
    if not (isinstance(cls, type) and issubclass(cls, Generator)):
        raise KBError(f"generator {name!r}: {cls!r} is not a Generator subclass")


_REGISTRY: Registry[type[Generator]] = Registry("generator", check=_check_generator)
_INSTANCES: dict[Hashable, Generator] = {}
# One lock for the instance cache: two threads asking for the same model must not load it twice.
_INSTANCES_LOCK = threading.Lock()


def register_generator(name: str, cls: type[Generator]) -> None:
    """Register a generator class under ``name``; a second registration of a name is an error."""
    _REGISTRY.register(name, cls)


def registered_generators() -> list[str]:
    """Names of the registered backends, sorted."""
    return _REGISTRY.names()


def generator_class(name: str) -> type[Generator]:
    """The class registered as ``name`` (``UnknownComponentError`` when there is none)."""
    return _REGISTRY.get(name)


def create_generator(settings: Settings) -> Generator:
    """The generator named by ``settings.llm.backend`` (cached when the backend has a cache key)."""
    cls = generator_class(settings.llm.backend)
    key = cls.cache_key(settings)
    if key is None:
        return cls.from_settings(settings)
    full_key: Any = (settings.llm.backend, key)
    with _INSTANCES_LOCK:
        if full_key not in _INSTANCES:
            _INSTANCES[full_key] = cls.from_settings(settings)
        return _INSTANCES[full_key]


def clear_generator_cache() -> None:
    """Forget cached instances (tests; reloading a model after its file changed)."""
    with _INSTANCES_LOCK:
        _INSTANCES.clear()
