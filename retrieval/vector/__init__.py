"""Vector indexes behind one interface (FAISS built in); FAISS itself is imported lazily."""

from .base import (
    VectorIndex,
    available_vector_indexes,
    create_vector_index,
    register_vector_index,
    vector_index_class,
)
from .faiss_index import FaissIndex, choose_kind

register_vector_index("faiss", FaissIndex)

__all__ = [
    "FaissIndex",
    "VectorIndex",
    "available_vector_indexes",
    "choose_kind",
    "create_vector_index",
    "register_vector_index",
    "vector_index_class",
]
