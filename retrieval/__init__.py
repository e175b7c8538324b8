"""Retrieval: embedders, FAISS and BM25 indexes, hybrid search, the versioned index store.

Import-light on purpose: ``import retrieval`` loads neither torch nor faiss. The main names
are resolved on first use::

    from retrieval import IndexStore
    index = IndexStore(home).load()
    hits = index.search("出差住宿标准")
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "IndexStore": "retrieval.store",
    "BuildReport": "retrieval.store",
    "KnowledgeIndex": "retrieval.index",
    "Hit": "retrieval.index",
    "FactHit": "retrieval.index",
    "Embedder": "retrieval.embedders",
    "create_embedder": "retrieval.embedders",
    "get_embedder": "retrieval.embedders",
    "register_embedder": "retrieval.embedders",
    "BM25Index": "retrieval.bm25",
    "tokenize": "retrieval.bm25",
    "rrf": "retrieval.hybrid",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'retrieval' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
