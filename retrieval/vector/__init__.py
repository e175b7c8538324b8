"""Vector indexes behind one interface: FAISS (in process, the default) and Milvus (Lite file or
server). FAISS and pymilvus themselves are imported lazily, on first use."""

from .base import (
    VectorIndex,
    available_vector_indexes,
    create_vector_index,
    drop_saved_index,
    open_vector_index,
    register_vector_index,
    saved_backend,
    vector_index_class,
)
from .faiss_index import FaissIndex, choose_kind
from .milvus_index import MilvusIndex

register_vector_index("faiss", FaissIndex)
register_vector_index("milvus", MilvusIndex)

__all__ = [
    "FaissIndex",
    "MilvusIndex",
    "VectorIndex",
    "available_vector_indexes",
    "choose_kind",
    "create_vector_index",
    "drop_saved_index",
    "open_vector_index",
    "register_vector_index",
    "saved_backend",
    "vector_index_class",
]
