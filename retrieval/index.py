"""A published index version, loaded for searching: chunks, facts, glossary, vectors, BM25.

Nothing is embedded at load time except queries: vectors, vector-index structures and the
BM25 matrix are read from the version folder the store wrote. The vector backend is the one
the version was built with (its manifest says which: FAISS files in the folder, or Milvus
collections the folder names); with a Milvus backend that does full-text search, BM25 is
answered by Milvus too unless ``retrieval.milvus_full_text`` is ``local``.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from knowledge.core.errors import IndexNotFoundError, KBError
from knowledge.core.types import Chunk, Fact

from .bm25 import BM25Index
from .hybrid import rrf
from .vector import open_vector_index
from knowledge.glossary import Glossary
from config.settings import get_settings
from retrieval.lexical import BackendBM25

if TYPE_CHECKING:  # pragma: no cover
    from config.settings import RetrievalSettings, Settings
    from knowledge.glossary import Glossary

    from .embedders import Embedder

# Files of one version folder (the store writes them, this module reads them).
MANIFEST = "manifest.json"
CHUNKS = "chunks.jsonl"
FACTS = "facts.jsonl"
GLOSSARY = "glossary.json"
CHUNK_VECTORS = "chunk_vectors.npy"
FACT_VECTORS = "fact_vectors.npy"
CHUNK_FAISS = "faiss_chunks"
FACT_FAISS = "faiss_facts"
BM25_DIR = "bm25"


def vector_folder(backend: str, role: str) -> str:
    """The folder of a version's vector index: ``<backend>_<role>``.

    >>> vector_folder("faiss", "chunks"), vector_folder("milvus", "facts")
    ('faiss_chunks', 'milvus_facts')
    """
    return f"{backend}_{role}"


def vector_backend_of(manifest: dict[str, Any]) -> str:
    """The vector backend a version was built with (versions before backends were pluggable: faiss)."""
    return str(manifest.get("index", {}).get("vector", "faiss"))

QUOTE_CHARS = 300


@dataclass
class Hit:
    """One retrieved chunk. ``score`` is the ranking score of the search that produced it
    (RRF for hybrid); ``dense`` is always the query-chunk cosine; ``bm25`` is the chunk's
    BM25 score, None when no query word occurs in it."""

    chunk: Chunk
    score: float
    dense: float | None = None
    bm25: float | None = None

    def citation(self, max_chars: int = QUOTE_CHARS) -> dict[str, Any]:
        text = self.chunk.text.strip()
        quote = text if len(text) <= max_chars else text[: max_chars - 1] + "…"
        return {"source": self.chunk.source, "page": self.chunk.page,
                "chunk_id": self.chunk.chunk_id, "quote": quote}

    def to_dict(self) -> dict[str, Any]:
        return {"chunk": self.chunk.to_dict(), "score": self.score, "dense": self.dense, "bm25": self.bm25}


@dataclass
class FactHit:
    fact: Fact
    score: float  # cosine of the query with the fact's embedding text


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def vector_id(key: str) -> int:
    """The FAISS id of a chunk or fact: 63 bits of the sha256 of its id, stable across versions.

    >>> vector_id("3f2a9c1b7d4e-0000")
    3940228244873751808
    """
    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big") >> 1


def vector_ids(keys: list[str]) -> np.ndarray:
    return np.fromiter((vector_id(k) for k in keys), dtype=np.int64, count=len(keys))


def chunk_embedding_text(chunk: Chunk) -> str:
    """What is embedded for a chunk: its heading path, then its text (headings help retrieval).

    >>> chunk_embedding_text(Chunk("c", "a.md", "每天500元。", heading_path=["差旅", "住宿"]))
    '差旅 > 住宿\\n每天500元。'
    """
    heading = " > ".join(h.strip() for h in chunk.heading_path if h.strip())
    return f"{heading}\n{chunk.text}" if heading else chunk.text


def fact_embedding_text(fact: Fact) -> str:
    """What is embedded for a fact: ``subject：statement``.

    >>> fact_embedding_text(Fact("f", "住宿费每晚不超过500元", "住宿费", [], [], "a.md", "c"))
    '住宿费：住宿费每晚不超过500元'
    """
    return f"{fact.subject}：{fact.statement}" if fact.subject else fact.statement


class KnowledgeIndex:
    """Searchable view of one published version (see :meth:`IndexStore.load`)."""

    def __init__(
        self,
        path: Path,
        embedder: "Embedder",
        settings: "Settings | None" = None,
    ):
        if settings is None:
            settings = get_settings()
        self.path = Path(path)
        if not (self.path / MANIFEST).is_file():
            raise IndexNotFoundError(f"{self.path} is not an index version ({MANIFEST} missing)")
        self.manifest: dict[str, Any] = json.loads((self.path / MANIFEST).read_text(encoding="utf-8"))
        self.version: str = self.manifest.get("version", self.path.name)
        self.embedder = embedder
        self._cfg: RetrievalSettings = settings.retrieval
        self.chunks = [Chunk.from_dict(d) for d in read_jsonl(self.path / CHUNKS)]
        self.facts = [Fact.from_dict(d) for d in read_jsonl(self.path / FACTS)]
        self.glossary = _load_glossary(self.path / GLOSSARY)
        self.vector_backend = vector_backend_of(self.manifest)
        # With an external vector store the local copy only serves cosines of a few rows and
        # the router's sampled background: map it rather than read it (1.5 GB per million
        # 384-dim chunks stays in the page cache, shared by every worker on the machine).
        mmap = "r" if self.vector_backend != "faiss" else None
        self.chunk_vectors = np.load(self.path / CHUNK_VECTORS, mmap_mode=mmap)
        self.fact_vectors = np.load(self.path / FACT_VECTORS, mmap_mode=mmap)
        self.chunk_index = open_vector_index(self.path / vector_folder(self.vector_backend, "chunks"), settings)
        self.fact_index = open_vector_index(self.path / vector_folder(self.vector_backend, "facts"), settings)
        self._by_id = {c.chunk_id: c for c in self.chunks}
        self._facts_by_id = {f.fact_id: f for f in self.facts}
        # Vector ids are stable hashes of chunk/fact ids (so a new version can reuse an ANN
        # index); BM25 ids are row numbers.
        chunk_ids = vector_ids([c.chunk_id for c in self.chunks])
        self._chunk_row = {int(i): r for r, i in enumerate(chunk_ids.tolist())}
        self._fact_row = {vector_id(f.fact_id): r for r, f in enumerate(self.facts)}
        self.bm25: Any
        if self.chunk_index.full_text and self._cfg.milvus_full_text != "local":
            self.bm25 = BackendBM25(self.chunk_index, self._chunk_row, chunk_ids.tolist())
            self.lexical_engine = "milvus"
        else:
            self.bm25 = BM25Index.load(self.path / BM25_DIR)
            self.lexical_engine = "local"
        self._qcache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._qlock = threading.Lock()

    # -- searching ---------------------------------------------------------------------
    def search(self, query: str, k: int | None = None) -> list[Hit]:
        """Hybrid search: dense and BM25 candidates fused by reciprocal rank."""
        k = k or self._cfg.top_k
        if not query.strip() or not self.chunks:
            return []
        qv = self.query_vector(query)
        n = max(self._cfg.candidates, k)
        dense_ids = self._dense_rows(qv, n)
        lexical = self.bm25.search(query, n)
        fused = rrf([dense_ids, [i for i, _ in lexical]], k=self._cfg.rrf_k)[:k]
        return self._hits([i for i, _ in fused], [s for _, s in fused], query, qv, dict(lexical))

    def dense_search(self, query: str, k: int | None = None) -> list[Hit]:
        """Nearest chunks by cosine (score == dense)."""
        k = k or self._cfg.top_k
        if not query.strip() or not self.chunks:
            return []
        qv = self.query_vector(query)
        rows = self._dense_rows(qv, k)
        cos = self.chunk_vectors[rows] @ qv if rows else np.zeros(0)
        return self._hits(rows, cos.tolist(), query, qv, None)

    def bm25_search(self, query: str, k: int | None = None) -> list[Hit]:
        """Best chunks by BM25 (score == bm25); dense still carries the cosine."""
        k = k or self._cfg.top_k
        if not query.strip() or not self.chunks:
            return []
        lexical = self.bm25.search(query, k)
        qv = self.query_vector(query)
        return self._hits([i for i, _ in lexical], [s for _, s in lexical], query, qv, dict(lexical))

    def search_facts(self, query: str, k: int = 5) -> list[FactHit]:
        """Facts whose ``subject：statement`` embedding is closest to the query."""
        if not query.strip() or not self.facts:
            return []
        scores, ids = self.fact_index.search(self.query_vector(query)[None, :], k)
        rows = [(self._fact_row.get(int(i)), float(s)) for s, i in zip(scores[0], ids[0]) if i >= 0]
        return [FactHit(self.facts[r], s) for r, s in rows if r is not None]

    def query_vector(self, query: str) -> np.ndarray:
        """The query's embedding, cached: the router asks for the same query several times."""
        with self._qlock:
            cached = self._qcache.get(query)
            if cached is not None:
                self._qcache.move_to_end(query)
                return cached
        vector = self.embedder.embed_query(query)
        with self._qlock:
            self._qcache[query] = vector
            if len(self._qcache) > 256:
                self._qcache.popitem(last=False)
        return vector

    # -- lookups -----------------------------------------------------------------------
    def chunk(self, chunk_id: str) -> Chunk:
        try:
            return self._by_id[chunk_id]
        except KeyError:
            raise KBError(f"index {self.version} has no chunk {chunk_id!r}") from None

    def fact(self, fact_id: str) -> Fact:
        try:
            return self._facts_by_id[fact_id]
        except KeyError:
            raise KBError(f"index {self.version} has no fact {fact_id!r}") from None

    def __len__(self) -> int:
        return len(self.chunks)

    def __repr__(self) -> str:
        return f"KnowledgeIndex(version={self.version!r}, chunks={len(self.chunks)}, facts={len(self.facts)})"

    # -- internals -----------------------------------------------------------------------
    def _dense_rows(self, qv: np.ndarray, k: int) -> list[int]:
        _, ids = self.chunk_index.search(qv[None, :], k)
        rows = (self._chunk_row.get(int(i)) for i in ids[0] if i >= 0)
        return [r for r in rows if r is not None]

    def _hits(
        self, rows: list[int], scores: list[float], query: str, qv: np.ndarray,
        lexical: dict[int, float] | None,
    ) -> list[Hit]:
        if not rows:
            return []
        cos = self.chunk_vectors[rows] @ qv
        lexical = dict(lexical or {})
        missing = [r for r in rows if r not in lexical]
        if missing:
            lexical.update(zip(missing, self.bm25.score_ids(query, missing).tolist()))
        return [
            Hit(self.chunks[r], float(s), float(c), float(lexical[r]) if lexical[r] > 0 else None)
            for r, s, c in zip(rows, scores, cos)
        ]


def _load_glossary(path: Path) -> "Glossary":

    return Glossary.from_json(path) if path.is_file() else Glossary([])
