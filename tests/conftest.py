"""Session fixtures shared by every test package: an isolated KB_HOME and the demo index.

The demo knowledge base is indexed once per session with the real packaged embedder and
real FAISS; engines are built over it with the real components (the extractive generator
stands in for an LLM only where a test is about routing, not generation).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
for _key in ("KB_CONFIG", "KB_CHAT_API_KEY", "KB_ADMIN_API_KEY", "DASHSCOPE_API_KEY", "KB_LLM_API_KEY"):
    os.environ.pop(_key, None)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def demo_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A KB_HOME holding the demo documents and glossary, indexed once."""
    from knowledge.demo import DOCS_DIR, GLOSSARY_DIR
    from retrieval.store import IndexStore

    home = tmp_path_factory.mktemp("kb_home")
    store = IndexStore(home)
    store.add_documents(sorted(p for p in DOCS_DIR.iterdir() if p.is_file()))
    for g in sorted(GLOSSARY_DIR.iterdir()):
        if g.is_file():
            store.add_glossary(g)
    from router.indexing import build_index

    report = build_index(store, full=True)
    assert store.current_version() is not None, report
    return home


@pytest.fixture(scope="session")
def demo_settings(demo_home: Path):
    from config.settings import Settings

    return Settings(home=demo_home)


@pytest.fixture(scope="session")
def demo_index(demo_home: Path):
    from retrieval.store import IndexStore

    return IndexStore(demo_home).load()


@pytest.fixture(scope="session")
def extractive_engine(demo_settings, demo_index):
    """Engine over the demo index whose generator is the (real) extractive backend."""
    from router.engine import Engine
    from router.llm.extractive import ExtractiveGenerator

    return Engine(demo_settings, demo_index, generator=ExtractiveGenerator())


@pytest.fixture()
def copy_home(demo_home: Path, tmp_path: Path) -> Path:
    """A private, writable copy of the demo KB_HOME."""
    dst = tmp_path / "home"
    shutil.copytree(demo_home, dst, symlinks=True)
    return dst


@pytest.fixture()
def kb_env(copy_home: Path, monkeypatch):
    """KB_HOME pointing at a private copy of the demo, extractive generator, fresh settings."""
    from config import reset_settings
    from api.state import set_engine

    monkeypatch.setenv("KB_HOME", str(copy_home))
    monkeypatch.setenv("KB_LLM__BACKEND", "extractive")
    reset_settings()
    set_engine(None)
    yield copy_home
    set_engine(None)
    reset_settings()


# -- the same demo knowledge base on the Milvus backend (Milvus Lite file) -------------------
def milvus_settings(home: Path, **retrieval):
    """Settings for the Milvus backend on a Milvus Lite file under ``home``, with BM25 by Milvus'
    own full-text search (``auto`` would pick the in-process BM25 on Milvus Lite)."""
    from config.settings import LLMSettings, RetrievalSettings, Settings

    retrieval.setdefault("milvus_full_text", "milvus")
    return Settings(home=home, retrieval=RetrievalSettings(vector_backend="milvus", **retrieval),
                    llm=LLMSettings(backend="extractive"))


@pytest.fixture(scope="session")
def milvus_demo_home(demo_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the demo KB_HOME switched to ``vector_backend: milvus`` and reindexed: every
    document is unchanged, so its vectors are carried over and only the Milvus collections
    (in ``<home>/milvus.db``) are written."""
    from retrieval.store import IndexStore

    home = tmp_path_factory.mktemp("kb_home_milvus") / "home"
    shutil.copytree(demo_home, home, symlinks=True)
    from router.indexing import build_index

    report = build_index(IndexStore(home, milvus_settings(home)))
    assert report.ok and report.embedded_chunks == 0, report
    return home


@pytest.fixture(scope="session")
def milvus_demo_index(milvus_demo_home: Path):
    from retrieval.store import IndexStore

    return IndexStore(milvus_demo_home, milvus_settings(milvus_demo_home)).load()


@pytest.fixture(scope="session", params=["faiss", "milvus"])
def backend_index(request: pytest.FixtureRequest):
    """The demo index on each vector backend in turn (FAISS, then Milvus Lite)."""
    return request.getfixturevalue("demo_index" if request.param == "faiss" else "milvus_demo_index")
