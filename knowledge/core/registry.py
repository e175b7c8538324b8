"""One registry for every pluggable part (loaders, OCR engines, embedders, vector indexes,
generators, routers, disambiguators, admin jobs).

Modelled on peft's explicit ``register_...`` calls: a backend is added by one call in the
package that owns it, a second registration of a name is an error (replacing a backend must be
deliberate, never the side effect of an import order), and looking up an unknown name raises
:class:`~knowledge.core.errors.UnknownComponentError` listing what is known.

>>> shapes = Registry("shape")
>>> shapes.register("square", 4)
4
>>> shapes.get("square"), shapes.names(), "square" in shapes
(4, ['square'], True)
>>> shapes.register("square", 5)
Traceback (most recent call last):
knowledge.core.errors.KBError: shape 'square' is already registered (4)
>>> shapes.get("circle")
Traceback (most recent call last):
knowledge.core.errors.UnknownComponentError: unknown shape 'circle'; known: square
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from knowledge.core.errors import KBError, UnknownComponentError

T = TypeVar("T")


def _describe(value: object) -> str:
    return getattr(value, "__qualname__", None) or repr(value)


class Registry(Generic[T]):
    """Named components of one kind (``kind`` appears in error messages)."""

    def __init__(self, kind: str, check: Callable[[str, T], None] | None = None):
        self.kind = kind
        self._check = check
        self._items: dict[str, T] = {}

    def register(self, name: str, value: T) -> T:
        """Add ``value`` under ``name`` and return it; a name registered twice is an error."""
        if not name:
            raise KBError(f"{self.kind} name must not be empty")
        if self._check is not None:
            self._check(name, value)
        if name in self._items:
            raise KBError(f"{self.kind} {name!r} is already registered ({_describe(self._items[name])})")
        self._items[name] = value
        return value

    def decorator(self, name: str) -> Callable[[T], T]:
        """``@registry.decorator("name")`` registers the decorated object."""
        return lambda value: self.register(name, value)

    def unregister(self, name: str) -> None:
        """Remove ``name`` (no error when it is not registered)."""
        self._items.pop(name, None)

    def get(self, name: str) -> T:
        """The component registered as ``name``."""
        try:
            return self._items[name]
        except KeyError:
            raise UnknownComponentError(self.kind, name, list(self._items)) from None

    def copy(self) -> "Registry[T]":
        """An independent registry with the same entries (tests register into a copy)."""
        other: Registry[T] = Registry(self.kind, self._check)
        other._items = dict(self._items)
        return other

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)
