"""BM25 answered by the vector backend (Milvus full-text search) behind the local BM25's API.

:class:`~retrieval.index.KnowledgeIndex` asks its lexical side for ``search(query, k)`` (best
rows with their scores), ``score_ids(query, rows)`` and ``len``. The local
:class:`~retrieval.bm25.BM25Index` holds the whole term matrix in the process; this adapter
sends the query's BM25 tokens (:func:`retrieval.bm25.tokenize`, the same ones the chunks were
indexed with) to the backend and maps the backend's ids back to chunk rows.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .bm25 import tokenize
from retrieval.vector.milvus_index import token_string


class BackendBM25:
    """Lexical search delegated to a vector index whose ``full_text`` is True."""

    def __init__(self, index: Any, row_of_id: dict[int, int], ids_of_rows: Sequence[int]):
        self.index = index
        self._row = row_of_id          # backend id -> chunk row
        self._ids = list(ids_of_rows)  # chunk row -> backend id

    def search(self, query: str, k: int) -> list[tuple[int, float]]:
        hits = self.index.lexical_search(_query_tokens(query), k)
        return [(self._row[i], s) for i, s in hits if i in self._row]

    def score_ids(self, query: str, rows: Sequence[int]) -> np.ndarray:
        wanted = [self._ids[r] for r in rows]
        scores = self.index.lexical_scores(_query_tokens(query), wanted)
        return np.array([scores.get(i, 0.0) for i in wanted], dtype=np.float32)

    def __len__(self) -> int:
        return len(self.index)


def _query_tokens(query: str) -> str:

    return token_string(tokenize(query), distinct=True)
