"""A small thread-safe memo with a size bound, for values derived from files or chunks that do
not change under their key (a file's hash by path, size and mtime; a chunk's units by its text)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class BoundedMemo(Generic[V]):
    """``get(key, compute)``: the stored value, or ``compute()`` stored under ``key``.

    ``compute`` runs outside the lock (two threads may both compute a missing key; both get an
    equal value). Past ``limit`` entries the memo starts again from empty: no LRU bookkeeping on
    the hot path, and the bound holds.

    >>> memo = BoundedMemo(limit=2)
    >>> memo.get("a", lambda: 1), memo.get("a", lambda: 2)
    (1, 1)
    >>> _ = memo.get("b", lambda: 3); _ = memo.get("c", lambda: 4); len(memo)
    1
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._data: dict[Hashable, V] = {}
        self._lock = threading.Lock()

    def get(self, key: Hashable, compute: Callable[[], V]) -> V:
        with self._lock:
            if key in self._data:
                return self._data[key]
        value = compute()
        with self._lock:
            if len(self._data) >= self.limit:
                self._data.clear()
            self._data[key] = value
        return value

    def __len__(self) -> int:
        with self._lock:
            return len(self._data)
