"""Fixtures of the router tests: a second company's knowledge base (the hospital), indexed once."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def hospital_engine(tmp_path_factory):
    from config.settings import Settings
    from retrieval.store import IndexStore
    from router.indexing import build_index
    from router.engine import Engine
    from router.llm.extractive import ExtractiveGenerator

    kb = REPO / "benchmarks" / "kbs" / "hospital"
    home = tmp_path_factory.mktemp("hospital")
    settings = Settings(home=home)
    store = IndexStore(home, settings)
    store.ingest(sorted((kb / "docs").iterdir()))
    for g in sorted((kb / "glossary").iterdir()):
        store.add_glossary(g)
    build_index(store, full=True)
    return Engine(settings, store.load(), generator=ExtractiveGenerator())
