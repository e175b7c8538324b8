"""The embedder interface, its shared behaviour and the backend registry.

A backend implements one method, :meth:`Embedder.embed_batch`; batching, progress bars,
row normalisation and the single-query helper live here so every backend gets them.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any

import numpy as np

from knowledge.core.errors import KBError, ValidationError
from knowledge.core.registry import Registry
from tqdm.auto import tqdm

if TYPE_CHECKING:  # pragma: no cover
    from config.settings import Settings

KINDS = ("query", "passage")


class Embedder(ABC):
    """Turns texts into L2-normalised float32 vectors.

    Subclasses set ``name`` (registry name), ``dim`` and ``model_id`` (what the index
    manifest records, so an index built with another model is refused at load time), and
    may set ``max_batch`` when the backend caps the texts per request.
    """

    name: str = ""
    dim: int = 0
    model_id: str = ""
    max_batch: int | None = None

    @abstractmethod
    def embed_batch(self, texts: list[str], kind: str) -> np.ndarray:
        """Embed one batch; ``kind`` is "query" or "passage". Returns (n, dim) float32, unit rows."""

    # -- shared behaviour ------------------------------------------------------------
    def embed(
        self, texts: list[str], kind: str = "passage", batch_size: int = 32, progress: bool = False
    ) -> np.ndarray:
        """Embed any number of texts in batches (tqdm bar when ``progress``)."""
        check_kind(kind)
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        size = max(1, min(batch_size, self.max_batch or batch_size))
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        starts = range(0, len(texts), size)
        bar = _progress(len(texts), f"embed ({self.name})") if progress else None
        for start in starts:
            batch = texts[start : start + size]
            out[start : start + len(batch)] = self._checked(self.embed_batch(batch, kind), len(batch))
            if bar is not None:
                bar.update(len(batch))
        if bar is not None:
            bar.close()
        return out

    def embed_query(self, text: str) -> np.ndarray:
        """One query vector, shape (dim,)."""
        return self.embed([text], "query")[0]

    def describe(self) -> dict[str, Any]:
        """What an index manifest records about this embedder."""
        return {"name": self.name, "model": self.model_id, "dim": int(self.dim)}

    def _checked(self, vectors: np.ndarray, n: int) -> np.ndarray:
        # A backend returning the wrong shape would silently corrupt the index; fail loudly.
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.shape != (n, self.dim):
            raise KBError(
                f"embedder {self.name!r} returned shape {vectors.shape}, expected {(n, self.dim)}"
            )
        return vectors

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, model={self.model_id!r}, dim={self.dim})"


def check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValidationError(f"embedding kind must be one of {KINDS}, got {kind!r}")


def l2_normalise(vectors: np.ndarray) -> np.ndarray:
    """Scale rows to unit length (zero rows stay zero).

    >>> l2_normalise(np.array([[3.0, 4.0], [0.0, 0.0]])).tolist()
    [[0.6000000238418579, 0.800000011920929], [0.0, 0.0]]
    """
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms == 0, 1.0, norms)


def _progress(total: int, desc: str) -> Any:

    return tqdm(total=total, desc=desc, unit="text")


# -- registry ---------------------------------------------------------------------------
_REGISTRY: Registry[type[Embedder]] = Registry("embedder")
_CACHE: dict[tuple[str, str], Embedder] = {}
_LOCK = threading.RLock()  # re-entrant: a wrapper backend may get_embedder() its inner model


def register_embedder(name: str, cls: type[Embedder]) -> None:
    """Make ``cls`` available under ``name``; registering a name twice is an error."""
    _REGISTRY.register(name, cls)


def available_embedders() -> list[str]:
    return _REGISTRY.names()


def create_embedder(name: str, model: str = "", **kwargs: Any) -> Embedder:
    """A new embedder of the registered backend ``name`` (``model`` is backend-specific)."""
    return _REGISTRY.get(name)(model=model, **kwargs)


def get_embedder(settings: "Settings") -> Embedder:
    """The process-wide embedder for ``settings.retrieval`` (created once per (name, model))."""
    key = (settings.retrieval.embedder, settings.retrieval.embedder_model)
    with _LOCK:
        embedder = _CACHE.get(key)
        if embedder is None:
            # Created under the lock so two threads never load the same model twice.
            embedder = create_embedder(key[0], key[1])
            _CACHE[key] = embedder
    return embedder


def clear_embedder_cache() -> None:
    """Forget cached embedders (tests, or after changing the configured model)."""
    with _LOCK:
        _CACHE.clear()
