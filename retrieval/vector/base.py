"""The vector-index interface and its registry.

Ids are caller-chosen int64 numbers (the store uses row numbers of ``chunks.jsonl``), so an
index never needs to know what a vector stands for.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import numpy as np

from knowledge.errors import KBError, UnknownComponentError


class VectorIndex(ABC):
    """Inner-product search over unit vectors (inner product == cosine)."""

    name: str = ""
    dim: int = 0

    @abstractmethod
    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` per query row: (scores (q, k) float32, ids (q, k) int64; -1 pads missing)."""

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        raise NotImplementedError(f"{type(self).__name__} cannot add vectors")

    def delete(self, ids: np.ndarray) -> int:
        raise NotImplementedError(f"{type(self).__name__} cannot delete vectors")

    def save(self, directory: Path) -> None:
        raise NotImplementedError(f"{type(self).__name__} cannot be saved")

    @classmethod
    def load(cls, directory: Path) -> "VectorIndex":
        raise NotImplementedError(f"{cls.__name__} cannot be loaded")

    def __len__(self) -> int:
        return 0


def as_matrix(vectors: np.ndarray, dim: int) -> np.ndarray:
    """Vectors as a C-contiguous float32 (n, dim) matrix, the layout FAISS needs.

    >>> as_matrix(np.array([1, 0]), 2).shape
    (1, 2)
    """
    matrix = np.ascontiguousarray(np.atleast_2d(np.asarray(vectors, dtype=np.float32)))
    if matrix.ndim != 2 or matrix.shape[1] != dim:
        raise KBError(f"vectors must have shape (n, {dim}), got {np.shape(vectors)}")
    return matrix


def as_ids(ids: np.ndarray, n: int | None = None) -> np.ndarray:
    """Ids as a contiguous int64 vector (checked against ``n`` vectors)."""
    out = np.ascontiguousarray(np.asarray(ids, dtype=np.int64).reshape(-1))
    if n is not None and len(out) != n:
        raise KBError(f"got {len(out)} ids for {n} vectors")
    return out


_REGISTRY: dict[str, type[VectorIndex]] = {}


def register_vector_index(name: str, cls: type[VectorIndex]) -> None:
    """Make ``cls`` available under ``name``; registering a name twice is an error."""
    if name in _REGISTRY:
        raise KBError(f"vector index {name!r} is already registered ({_REGISTRY[name].__name__})")
    _REGISTRY[name] = cls


def available_vector_indexes() -> list[str]:
    return sorted(_REGISTRY)


def vector_index_class(name: str) -> type[VectorIndex]:
    cls = _REGISTRY.get(name)
    if cls is None:
        raise UnknownComponentError("vector index", name, list(_REGISTRY))
    return cls


def create_vector_index(name: str, dim: int, **kwargs: Any) -> VectorIndex:
    """A new, empty index of the registered backend ``name``."""
    return vector_index_class(name)(dim=dim, **kwargs)
