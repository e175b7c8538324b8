"""FAISS backend: exact inner product for small collections, HNSW or IVF for large ones.

``faiss`` is imported inside the methods so that ``import retrieval`` stays light.
Ids are the caller's, not FAISS's row order: flat and HNSW indexes are wrapped in
``IndexIDMap2``; IVF stores ids natively (an ID map over IVF breaks on removal, because IVF
does not renumber its entries the way the map assumes).
HNSW cannot remove vectors, so deletions there are tombstones filtered at search time
(the store rebuilds indexes per version, so tombstones never pile up).
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np

from knowledge.core.errors import ConfigError, IndexNotFoundError, KBError, MissingExtraError

from .base import META_FILE, VectorIndex, as_ids, as_matrix
from config.settings import get_settings

if TYPE_CHECKING:  # pragma: no cover
    from config.settings import RetrievalSettings, Settings

KINDS = ("flat", "hnsw", "ivf")
# Below this many queries one thread is faster: an OpenMP team's start-up and spin-waits cost
# more than the work, badly so on a busy machine (measured: 1.7 ms vs 56 ms for one query
# over 20k vectors with 2 threads on 2 shared cores).
SMALL_BATCH = 16
INDEX_FILE = "index.faiss"


def _faiss() -> Any:
    try:
        import faiss  # deferred: heavy: native FAISS library
    except ImportError as exc:  # pragma: no cover - faiss-cpu is a core dependency
        raise MissingExtraError("faiss-cpu", "all") from exc
    return faiss


def choose_kind(n: int, exact_max: int, ann: str) -> str:
    """Exact search up to ``exact_max`` vectors, the configured ANN structure above.

    >>> choose_kind(1000, 50000, "hnsw"), choose_kind(60000, 50000, "ivf")
    ('flat', 'ivf')
    """
    return "flat" if n <= exact_max else ann


def ivf_lists(n: int, wanted: int) -> int:
    """Number of IVF cells: as configured, but with at least 39 training points per cell
    (FAISS's own minimum for a sound k-means).

    >>> ivf_lists(1_000_000, 1024), ivf_lists(5000, 1024)
    (1024, 128)
    """
    return max(1, min(wanted, n // 39))


def ann_params(settings: "RetrievalSettings") -> dict[str, Any]:
    """The FaissIndex keyword arguments that ``retrieval.*`` settings define
    (``ivf_nprobe: 0`` means automatic)."""
    return {
        "hnsw_m": settings.hnsw_m, "ef_construction": settings.hnsw_ef_construction,
        "ef_search": settings.hnsw_ef_search, "ivf_nlist": settings.ivf_nlist,
        "nprobe": settings.ivf_nprobe or None,
    }


class FaissIndex(VectorIndex):
    """A FAISS index over unit vectors; ``kind`` is "flat", "hnsw" or "ivf"."""

    name = "faiss"
    updatable = True  # a saved index is a file: a new version can start from a copy of it

    def __init__(
        self,
        dim: int,
        kind: str = "flat",
        hnsw_m: int = 32,
        ivf_nlist: int = 1024,
        ef_construction: int = 40,
        ef_search: int = 128,
        nprobe: int | None = None,
    ):
        if kind not in KINDS:
            raise ConfigError(f"retrieval.ann: unknown FAISS index kind {kind!r}; known: {KINDS}")
        self.dim, self.kind = int(dim), kind
        self.hnsw_m, self.ivf_nlist = hnsw_m, ivf_nlist
        self.ef_construction, self.ef_search, self.nprobe = ef_construction, ef_search, nprobe
        self._index: Any = None  # created on first add (IVF needs its training vectors)
        self._deleted: set[int] = set()

    @classmethod
    def build(
        cls,
        ids: np.ndarray,
        vectors: np.ndarray,
        settings: "RetrievalSettings | None" = None,
        kind: str | None = None,
        **kwargs: Any,
    ) -> "FaissIndex":
        """An index over ``vectors``, its kind chosen from the settings and the collection size."""
        if settings is None:
            settings = get_settings().retrieval
        vectors = np.asarray(vectors, dtype=np.float32)
        dim = vectors.shape[1] if vectors.ndim == 2 else 0
        kind = kind or choose_kind(len(vectors), settings.exact_max, settings.ann)
        params = {**ann_params(settings), **kwargs}
        index = cls(dim, kind, **params)
        index.add(ids, vectors)
        return index

    @classmethod
    def create(cls, ids: np.ndarray, vectors: np.ndarray, settings: "Settings", *, kind: str,
               name: str = "", directory: Path | None = None,
               metadata: Sequence[dict[str, Any]] | None = None,
               texts: Sequence[str] | None = None) -> "FaissIndex":
        """Store entry point: FAISS keeps no metadata and no text (BM25 stays in process)."""
        return cls.build(ids, vectors, settings.retrieval, kind=kind)

    # -- VectorIndex -------------------------------------------------------------------
    def add(self, ids: np.ndarray, vectors: np.ndarray,
            metadata: Sequence[dict[str, Any]] | None = None) -> None:
        """Add vectors under new ids (an id already present would be stored twice)."""
        matrix = as_matrix(vectors, self.dim)
        ids = as_ids(ids, len(matrix))
        if len(matrix) == 0:
            return
        if self._deleted and not self._deleted.isdisjoint(ids.tolist()):
            # The deleted vector is still in the HNSW graph under that id: adding it again
            # would make the id answer for two vectors.
            raise KBError("cannot re-add ids deleted from an HNSW index; rebuild the index instead")
        if self._index is None:
            self._index = self._create(matrix)
        self._index.add_with_ids(matrix, ids)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        matrix = as_matrix(queries, self.dim)
        if self._index is None or k <= 0 or len(self) == 0:
            return (np.full((len(matrix), max(k, 0)), -np.inf, np.float32),
                    np.full((len(matrix), max(k, 0)), -1, np.int64))
        self._tune()
        fetch = min(k + len(self._deleted), self._index.ntotal)
        with _threads(1 if len(matrix) < SMALL_BATCH else None):
            scores, ids = self._index.search(matrix, fetch)
        if self._deleted:
            scores, ids = self._drop_deleted(scores, ids, k)
        return _pad(scores[:, :k], ids[:, :k], k)

    def delete(self, ids: np.ndarray) -> int:
        ids = as_ids(ids)
        if self._index is None or len(ids) == 0:
            return 0
        if self.kind == "hnsw":
            present = set(ids.tolist()) - self._deleted
            # Only ids that exist become tombstones.
            present &= set(self._stored_ids().tolist())
            self._deleted |= present
            return len(present)
        faiss = _faiss()
        return int(self._index.remove_ids(faiss.IDSelectorBatch(ids)))

    def save(self, directory: Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        if self._index is not None:
            _faiss().write_index(self._index, str(directory / INDEX_FILE))
        meta = {
            "backend": self.name, "kind": self.kind, "dim": self.dim, "hnsw_m": self.hnsw_m,
            "ivf_nlist": self.ivf_nlist, "ef_construction": self.ef_construction,
            "ef_search": self.ef_search, "nprobe": self.nprobe, "deleted": sorted(self._deleted),
            "count": len(self),
        }
        (directory / META_FILE).write_text(json.dumps(meta), encoding="utf-8")

    @classmethod
    def open(cls, directory: Path, settings: "Settings") -> "FaissIndex":
        """Store entry point: the saved index with this configuration's search widths."""
        return cls.load(directory, settings.retrieval)

    @classmethod
    def load(cls, directory: Path, settings: "RetrievalSettings | None" = None) -> "FaissIndex":
        """Read an index written by :meth:`save`. With ``settings``, its search-time knobs
        (``hnsw_ef_search``, ``ivf_nprobe``) replace the saved ones: they need no rebuild."""
        directory = Path(directory)
        meta_path = directory / META_FILE
        if not meta_path.is_file():
            raise IndexNotFoundError(f"no FAISS index in {directory} ({META_FILE} missing)")
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        index = cls(
            meta["dim"], meta["kind"], hnsw_m=meta["hnsw_m"], ivf_nlist=meta["ivf_nlist"],
            ef_construction=meta["ef_construction"], ef_search=meta["ef_search"], nprobe=meta["nprobe"],
        )
        if (directory / INDEX_FILE).is_file():
            index._index = _faiss().read_index(str(directory / INDEX_FILE))
        index._deleted = set(meta.get("deleted", []))
        if settings is not None:
            index.ef_search, index.nprobe = settings.hnsw_ef_search, settings.ivf_nprobe or None
        return index

    def __len__(self) -> int:
        return 0 if self._index is None else int(self._index.ntotal) - len(self._deleted)

    def ids(self) -> np.ndarray:
        """The ids currently searchable (tombstoned ones excluded)."""
        if self._index is None:
            return np.zeros(0, dtype=np.int64)
        stored = self._stored_ids()
        if not self._deleted:
            return stored
        return stored[~np.isin(stored, np.fromiter(self._deleted, np.int64, len(self._deleted)))]

    @property
    def tombstones(self) -> int:
        """Deleted vectors still occupying the (HNSW) graph."""
        return len(self._deleted)

    def __repr__(self) -> str:
        return f"FaissIndex(kind={self.kind!r}, dim={self.dim}, n={len(self)})"

    # -- internals ---------------------------------------------------------------------
    def _create(self, first: np.ndarray) -> Any:
        faiss = _faiss()
        if self.kind == "flat":
            inner = faiss.IndexFlatIP(self.dim)
        elif self.kind == "hnsw":
            inner = faiss.IndexHNSWFlat(self.dim, self.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            inner.hnsw.efConstruction = self.ef_construction
        else:
            nlist = ivf_lists(len(first), self.ivf_nlist)
            quantizer = faiss.IndexFlatIP(self.dim)
            inner = faiss.IndexIVFFlat(quantizer, self.dim, nlist, faiss.METRIC_INNER_PRODUCT)
            inner.train(first)
            return inner
        return faiss.IndexIDMap2(inner)

    def _tune(self) -> None:
        faiss = _faiss()
        inner = self._index if self.kind == "ivf" else faiss.downcast_index(self._index.index)
        if self.kind == "hnsw":
            inner.hnsw.efSearch = self.ef_search
        elif self.kind == "ivf":
            # ivf_nprobe 0 = automatic: an eighth of the cells, at least 32 (slow past ~100k vectors;
            # the shipped 16 is measured in benchmarks/scale.py).
            inner.nprobe = min(inner.nlist, self.nprobe or max(32, inner.nlist // 8))

    def _stored_ids(self) -> np.ndarray:
        faiss = _faiss()
        if self.kind != "ivf":
            return faiss.vector_to_array(self._index.id_map).astype(np.int64)
        invlists = faiss.extract_index_ivf(self._index).invlists
        parts = [
            faiss.rev_swig_ptr(invlists.get_ids(i), invlists.list_size(i)).copy()
            for i in range(invlists.nlist) if invlists.list_size(i)
        ]
        return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)

    def _drop_deleted(self, scores: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        out_s = np.full((len(ids), k), -np.inf, np.float32)
        out_i = np.full((len(ids), k), -1, np.int64)
        for row in range(len(ids)):
            keep = [j for j, i in enumerate(ids[row]) if i >= 0 and int(i) not in self._deleted][:k]
            out_s[row, : len(keep)] = scores[row, keep]
            out_i[row, : len(keep)] = ids[row, keep]
        return out_s, out_i


@contextlib.contextmanager
def _threads(n: int | None) -> Iterator[None]:
    """Run FAISS with ``n`` OpenMP threads (None: leave as is), restoring the setting after."""
    if n is None:
        yield
        return
    faiss = _faiss()
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(n)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def _pad(scores: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """FAISS pads short result lists with id -1; make the score -inf there too."""
    if scores.shape[1] < k:
        extra = k - scores.shape[1]
        scores = np.pad(scores, ((0, 0), (0, extra)), constant_values=-np.inf)
        ids = np.pad(ids, ((0, 0), (0, extra)), constant_values=-1)
    scores = np.where(ids < 0, -np.inf, scores).astype(np.float32)
    return scores, ids.astype(np.int64)
