"""The vector-index interface and its registry.

Ids are caller-chosen int64 numbers (the store uses stable hashes of chunk and fact ids), so
an index never needs to know what a vector stands for. A backend may keep a copy of a few
metadata fields per vector (source, page, a quote) for tools that read its storage directly;
search results are always ids.

A saved index is a folder holding ``index.json`` (``{"backend": name, ...}``); backends whose
data lives outside that folder (a Milvus collection) say where in it, and
:meth:`VectorIndex.drop_saved` releases that storage when the folder's version is pruned.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from knowledge.core.errors import IndexNotFoundError, KBError
from knowledge.core.registry import Registry

if TYPE_CHECKING:  # pragma: no cover
    from config.settings import Settings

META_FILE = "index.json"
#: Metadata a backend may store per vector: the chunk/fact id, its document, page and a quote.
METADATA_FIELDS = ("key", "source", "page", "text")


class VectorIndex(ABC):
    """Inner-product search over unit vectors (inner product == cosine)."""

    name: str = ""
    dim: int = 0
    #: True when a new version may start from a copy of the previous version's saved index
    #: (deleting what left, adding what came) instead of building from scratch.
    updatable: bool = False

    @abstractmethod
    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` per query row: (scores (q, k) float32, ids (q, k) int64; -1 pads missing)."""

    def add(self, ids: np.ndarray, vectors: np.ndarray,
            metadata: Sequence[dict[str, Any]] | None = None) -> None:
        """Add vectors under new ids; ``metadata`` (one dict per vector) is kept where the backend
        stores it (see :data:`METADATA_FIELDS`) and ignored elsewhere."""
        raise NotImplementedError(f"{type(self).__name__} cannot add vectors")

    def delete(self, ids: np.ndarray) -> int:
        raise NotImplementedError(f"{type(self).__name__} cannot delete vectors")

    def save(self, directory: Path) -> None:
        raise NotImplementedError(f"{type(self).__name__} cannot be saved")

    @classmethod
    def load(cls, directory: Path) -> "VectorIndex":
        raise NotImplementedError(f"{cls.__name__} cannot be loaded")

    # -- what the versioned store uses -------------------------------------------------
    @classmethod
    def create(cls, ids: np.ndarray, vectors: np.ndarray, settings: "Settings", *, kind: str,
               name: str, directory: Path, metadata: Sequence[dict[str, Any]] | None = None,
               texts: Sequence[str] | None = None) -> "VectorIndex":
        """A new index over ``vectors`` for one index version, to be saved into ``directory``.

        ``kind`` is "flat" (exact), "hnsw" or "ivf" (:func:`~retrieval.vector.choose_kind`);
        ``name`` is unique per version and role (``<version>_chunks``); ``texts`` are the
        BM25 token strings of chunks, for backends that do lexical search themselves.
        """
        index = cls(dim=vectors.shape[1] if np.ndim(vectors) == 2 else 0)  # type: ignore[call-arg]
        index.add(ids, vectors, metadata)
        return index

    @classmethod
    def open(cls, directory: Path, settings: "Settings") -> "VectorIndex":
        """Open a saved index for searching (``settings`` say where external storage is)."""
        return cls.load(directory)

    @classmethod
    def drop_saved(cls, directory: Path, settings: "Settings") -> None:
        """Release storage a saved index holds outside ``directory`` (nothing for files)."""

    @property
    def full_text(self) -> bool:
        """True when the backend also answers BM25 queries over the ``texts`` it was created
        with (``lexical_search`` / ``lexical_scores``, as the Milvus backend does)."""
        return False

    def stored_count(self) -> int:
        """Vectors as the storage counts them (validation; may cost a round trip)."""
        return len(self)

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


_REGISTRY: Registry[type[VectorIndex]] = Registry("vector index")


def register_vector_index(name: str, cls: type[VectorIndex]) -> None:
    """Make ``cls`` available under ``name``; registering a name twice is an error."""
    _REGISTRY.register(name, cls)


def available_vector_indexes() -> list[str]:
    return _REGISTRY.names()


def vector_index_class(name: str) -> type[VectorIndex]:
    return _REGISTRY.get(name)


def create_vector_index(name: str, dim: int, **kwargs: Any) -> VectorIndex:
    """A new, empty index of the registered backend ``name``."""
    return vector_index_class(name)(dim=dim, **kwargs)


def saved_backend(directory: Path) -> str:
    """The backend name a saved index folder records (``index.json``'s ``backend``)."""
    meta = Path(directory) / META_FILE
    if not meta.is_file():
        raise IndexNotFoundError(f"no vector index in {directory} ({META_FILE} missing)")
    return str(json.loads(meta.read_text(encoding="utf-8")).get("backend", "faiss"))


def open_vector_index(directory: Path, settings: "Settings") -> VectorIndex:
    """Open the saved index in ``directory`` with the backend it was built with."""
    return vector_index_class(saved_backend(directory)).open(Path(directory), settings)


def drop_saved_index(directory: Path, settings: "Settings") -> None:
    """Release a saved index's external storage (a no-op for file backends)."""
    vector_index_class(saved_backend(directory)).drop_saved(Path(directory), settings)
