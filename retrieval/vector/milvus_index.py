"""Milvus backend (pymilvus): Milvus Lite from a local ``.db`` file, or a Milvus server/cluster.

One collection per index version and role (``<prefix>_<version>_chunks`` / ``_facts``), written
by the build and never changed after it. Publishing therefore stays the store's atomic
``current`` pointer switch; rolling back is pointing at an older version whose collections
still exist; pruning a version drops its collections. The version folder keeps a small
``index.json`` naming the collection, so readers never derive names themselves.

Each row holds the vector under the caller's int64 id plus citation metadata (chunk or fact
id, source, page, a quote), so other services can read a collection on their own. Chunk
collections can also carry BM25 full-text search: the store sends the chunk's *own* BM25
tokens (jieba search mode, stopwords and full-width folding from :func:`retrieval.bm25.tokenize`)
as a space-separated string, and Milvus runs BM25 over them with a tokenizer that only splits
on word boundaries (``whitespace`` on a server, ``standard`` on Milvus Lite, which has no
``whitespace`` tokenizer; tokens are made word-characters-only so both split them alike).
Lexical results thus match the in-process BM25 term for term; only IDF statistics may be
per segment (Milvus Lite says so of itself).

Which BM25 runs (``retrieval.milvus_full_text``): ``auto`` uses Milvus' full-text search on a
Milvus server that has the ``whitespace`` tokenizer (2.6+) and the in-process BM25 everywhere
else, including Milvus Lite: Lite can do it (``milvus`` forces it) but measured at 100,000
chunks its pure-Python BM25 took 860 ms a query against 1.2 ms in process, and once a
collection spans two segments its per-segment IDF changed every score
(``benchmarks/vector_backends.py``). ``local`` always uses the in-process BM25.

``pymilvus`` (and ``milvus-lite`` for a file URI) is imported on first use; the error names
the ``milvus`` extra.
"""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from knowledge.core.errors import ConfigError, IndexNotFoundError, KBError, MissingExtraError

from .base import META_FILE, VectorIndex, as_ids, as_matrix
from .faiss_index import ivf_lists
from config.settings import get_settings

if TYPE_CHECKING:  # pragma: no cover
    from config.settings import Settings

INSERT_BATCH = 2000
TEXT_BYTES = 4096          # quote kept per row (UTF-8 bytes; the whole chunk text fits)
TOKENS_BYTES = 65535       # Milvus' VARCHAR limit
KEY_BYTES = 256
SOURCE_BYTES = 1024
_NAME_RE = re.compile(r"[^A-Za-z0-9_]")

_clients: dict[tuple[str, str], Any] = {}
_clients_lock = threading.Lock()


def _pymilvus() -> Any:
    try:
        import pymilvus  # deferred: optional extra [milvus]
    except ImportError as exc:
        raise MissingExtraError("pymilvus", "milvus") from exc
    return pymilvus


def is_lite_uri(uri: str) -> bool:
    """A Milvus Lite file (a path ending in ``.db``) rather than a server address.

    >>> is_lite_uri("/srv/kb/milvus.db"), is_lite_uri("http://milvus:19530")
    (True, False)
    """
    return not re.match(r"^[a-z][a-z0-9+.-]*://|^unix:", uri) and uri.endswith(".db")


def collection_name(prefix: str, name: str) -> str:
    """A valid Milvus collection name (letters, digits, underscores) for ``prefix`` and ``name``.

    >>> collection_name("kb", "20261122T180102Z-a1b2c3_chunks")
    'kb_20261122T180102Z_a1b2c3_chunks'
    """
    return _NAME_RE.sub("_", f"{prefix}_{name}")[:255]


def full_text_support(server_version: str) -> tuple[bool, str]:
    """Whether a Milvus deployment can run BM25 over our tokens, and with which tokenizer.

    Milvus Lite 3.2+ has BM25 functions with a ``standard`` (word-boundary) tokenizer; a
    Milvus server needs the ``whitespace`` tokenizer, documented from 2.6 on.

    >>> full_text_support("milvus_lite-3.2.2"), full_text_support("v2.6.3"), full_text_support("v2.4.9")
    ((True, 'standard'), (True, 'whitespace'), (False, ''))
    """
    lite = server_version.startswith("milvus_lite")
    numbers = [int(n) for n in re.findall(r"\d+", server_version)[:2]] + [0, 0]
    major, minor = numbers[0], numbers[1]
    if lite:
        return ((major, minor) >= (3, 2), "standard")
    ok = (major, minor) >= (2, 6)
    return (ok, "whitespace" if ok else "")


def token_string(tokens: Sequence[str], distinct: bool = False) -> str:
    """BM25 tokens as Milvus' analyzer will split them: word characters only, space-separated
    (``distinct`` for queries: the in-process BM25 counts a repeated query word once).

    >>> token_string(["差旅费", "1.5", "am", "am"]), token_string(["am", "am"], distinct=True)
    ('差旅费 1_5 am am', 'am')
    """
    if distinct:
        tokens = list(dict.fromkeys(tokens))
    return " ".join(re.sub(r"\W", "_", t) for t in tokens if t)


def _clip(text: str, max_bytes: int) -> str:
    """``text`` cut to at most ``max_bytes`` of UTF-8 (never inside a character).

    >>> _clip("差旅费", 7)
    '差旅'
    """
    data = text.encode("utf-8")
    return text if len(data) <= max_bytes else data[:max_bytes].decode("utf-8", errors="ignore")


def client_for(uri: str, token: str = "") -> Any:
    """One shared client per URI and process (Milvus Lite allows one process per file)."""
    if not uri:
        raise ConfigError("retrieval.milvus_uri is empty (and no KB_HOME to put a Milvus Lite file in)")
    key = (uri, token)
    with _clients_lock:
        client = _clients.get(key)
        if client is not None:
            return client
        pymilvus = _pymilvus()
        lite = is_lite_uri(uri)
        if lite:
            Path(uri).parent.mkdir(parents=True, exist_ok=True)
        elif not re.match(r"^(https?|tcp|grpc)://|^unix:", uri):
            raise ConfigError(f"retrieval.milvus_uri={uri!r}: use a Milvus Lite file ending in .db "
                              "or a server address such as http://127.0.0.1:19530")
        try:
            client = pymilvus.MilvusClient(uri=uri, token=token)
        except Exception as exc:
            if lite:
                raise ConfigError(
                    f"cannot open the Milvus Lite file {uri} ({exc}). Milvus Lite serves one process "
                    "at a time: when another process (a running `kb serve`) holds the file, start a "
                    f"server on it (`milvus-lite server --data-dir {uri} --port 19530`) or use Milvus, "
                    "and set KB_RETRIEVAL__MILVUS_URI=http://127.0.0.1:19530"
                ) from exc
            raise ConfigError(f"cannot connect to Milvus at {uri} ({type(exc).__name__}: {exc})") from exc
        _clients[key] = client
        return client


def close_clients() -> None:
    """Close every shared client (tests; a process exit does it too)."""
    with _clients_lock:
        clients = list(_clients.values())
        _clients.clear()
    for client in clients:
        try:
            client.close()
        except Exception:  # noqa: BLE001 - closing is best effort
            pass


def _connection(settings: "Settings") -> tuple[str, str]:
    token = settings.milvus_token
    return settings.milvus_uri, token.get_secret_value() if token else ""


class MilvusIndex(VectorIndex):
    """Inner-product search in one Milvus collection (exact FLAT, HNSW or IVF_FLAT)."""

    name = "milvus"

    def __init__(self, dim: int, uri: str = "", collection: str = "", kind: str = "flat",
                 token: str = "", hnsw_m: int = 32, ivf_nlist: int = 1024, ef_construction: int = 40,
                 ef_search: int = 128, nprobe: int | None = None, full_text: bool = False,
                 analyzer: str = "", count: int = 0):
        if kind not in ("flat", "hnsw", "ivf"):
            raise ConfigError(f"retrieval.ann: unknown index kind {kind!r}; known: flat, hnsw, ivf")
        self.dim, self.uri, self.collection, self.kind = int(dim), uri, collection, kind
        self.token = token
        self.hnsw_m, self.ivf_nlist, self.ef_construction = hnsw_m, ivf_nlist, ef_construction
        self.ef_search, self.nprobe = ef_search, nprobe
        self._full_text, self.analyzer = full_text, analyzer
        self._count = count
        self._nlist = 0
        self.server_version = ""

    # -- building ------------------------------------------------------------------------
    @classmethod
    def create(cls, ids: np.ndarray, vectors: np.ndarray, settings: "Settings", *, kind: str,
               name: str, directory: Path, metadata: Sequence[dict[str, Any]] | None = None,
               texts: Sequence[str] | None = None) -> "MilvusIndex":
        """A new collection for one version; ``index.json`` is written into ``directory``
        *before* the collection exists, so a crashed build can always be cleaned up."""
        cfg = settings.retrieval
        uri, token = _connection(settings)
        vectors = np.asarray(vectors, dtype=np.float32)
        index = cls(int(vectors.shape[1]), uri, collection_name(cfg.milvus_collection_prefix, name), kind,
                    token, hnsw_m=cfg.hnsw_m, ivf_nlist=cfg.ivf_nlist)
        index.server_version = str(index._client().get_server_version())
        if texts is not None and cfg.milvus_full_text != "local":
            ok, analyzer = full_text_support(index.server_version)
            if not ok and cfg.milvus_full_text == "milvus":
                raise ConfigError(f"retrieval.milvus_full_text=milvus, but Milvus {index.server_version} "
                                  "has no whitespace tokenizer for BM25 (needs Milvus 2.6+ or Milvus Lite "
                                  "3.2+); use auto or local")
            lite = index.server_version.startswith("milvus_lite")
            if ok and (cfg.milvus_full_text == "milvus" or not lite):  # auto: servers only (see above)
                index._full_text, index.analyzer = True, analyzer
        index._nlist = ivf_lists(len(vectors), cfg.ivf_nlist) if kind == "ivf" else 0
        index.save(directory)  # names the collection before it exists (see drop_saved)
        index._create_collection()
        index.add(ids, vectors, metadata, texts)
        index._client().flush(index.collection)
        index.save(directory)
        return index

    def _client(self) -> Any:
        return client_for(self.uri, self.token)

    def _create_collection(self) -> None:
        pymilvus = _pymilvus()
        DataType = pymilvus.DataType
        client = self._client()
        if client.has_collection(self.collection):
            raise KBError(f"Milvus collection {self.collection} already exists at {self.uri}; "
                          "it belongs to another build (same version name?)")
        schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=self.dim)
        schema.add_field("key", DataType.VARCHAR, max_length=KEY_BYTES)
        schema.add_field("source", DataType.VARCHAR, max_length=SOURCE_BYTES)
        schema.add_field("page", DataType.INT64)
        schema.add_field("text", DataType.VARCHAR, max_length=TEXT_BYTES)
        params = client.prepare_index_params()
        params.add_index("vector", index_type=self._index_type(), metric_type="IP", params=self._build_params())
        if self._full_text:
            schema.add_field("tokens", DataType.VARCHAR, max_length=TOKENS_BYTES, enable_analyzer=True,
                             analyzer_params={"tokenizer": self.analyzer})
            schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
            schema.add_function(pymilvus.Function(
                name="bm25", function_type=pymilvus.FunctionType.BM25,
                input_field_names=["tokens"], output_field_names=["sparse"],
            ))
            params.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25",
                             params={"bm25_k1": 1.5, "bm25_b": 0.75})
        # Bounded reads see everything once flushed; the build flushes before it publishes.
        client.create_collection(self.collection, schema=schema, index_params=params,
                                 consistency_level="Bounded")

    def _index_type(self) -> str:
        return {"flat": "FLAT", "hnsw": "HNSW", "ivf": "IVF_FLAT"}[self.kind]

    def _build_params(self) -> dict[str, Any]:
        if self.kind == "hnsw":
            return {"M": self.hnsw_m, "efConstruction": self.ef_construction}
        if self.kind == "ivf":
            return {"nlist": self._nlist or self.ivf_nlist}
        return {}

    def _search_params(self, k: int) -> dict[str, Any]:
        if self.kind == "hnsw":
            return {"metric_type": "IP", "params": {"ef": max(self.ef_search, k)}}
        if self.kind == "ivf":
            nlist = self._nlist or self.ivf_nlist
            return {"metric_type": "IP", "params": {"nprobe": min(nlist, self.nprobe or max(32, nlist // 8))}}
        return {"metric_type": "IP", "params": {}}

    # -- VectorIndex -------------------------------------------------------------------
    def add(self, ids: np.ndarray, vectors: np.ndarray, metadata: Sequence[dict[str, Any]] | None = None,
            texts: Sequence[str] | None = None) -> None:
        """Insert rows; ``metadata`` dicts may hold key, source, page, text; ``texts`` are the
        BM25 token strings (:func:`token_string`) of a full-text collection."""
        matrix = as_matrix(vectors, self.dim)
        ids = as_ids(ids, len(matrix))
        if self._full_text and (texts is None or len(texts) != len(matrix)):
            raise KBError(f"{self.collection}: a full-text collection needs one token string per vector")
        client = self._client()
        for start in range(0, len(matrix), INSERT_BATCH):
            rows = []
            for j in range(start, min(start + INSERT_BATCH, len(matrix))):
                meta = metadata[j] if metadata is not None else {}
                page = meta.get("page")
                row = {"id": int(ids[j]), "vector": matrix[j].tolist(),
                       "key": _clip(str(meta.get("key", "")), KEY_BYTES),
                       "source": _clip(str(meta.get("source", "")), SOURCE_BYTES),
                       "page": int(page) if page is not None else -1,
                       "text": _clip(str(meta.get("text", "")), TEXT_BYTES)}
                if self._full_text:
                    row["tokens"] = _clip(texts[j], TOKENS_BYTES)  # type: ignore[index]
                rows.append(row)
            client.insert(self.collection, rows)
        self._count += len(matrix)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        matrix = as_matrix(queries, self.dim)
        scores = np.full((len(matrix), max(k, 0)), -np.inf, np.float32)
        ids = np.full((len(matrix), max(k, 0)), -1, np.int64)
        if k <= 0 or len(matrix) == 0 or self._count == 0:
            return scores, ids
        results = self._client().search(
            self.collection, data=matrix.tolist(), anns_field="vector", limit=min(k, 16384),
            search_params=self._search_params(k), output_fields=["id"],
        )
        for row, hits in enumerate(results):
            for col, hit in enumerate(list(hits)[:k]):
                ids[row, col] = int(hit["id"])
                scores[row, col] = float(hit["distance"])
        return scores, ids

    def delete(self, ids: np.ndarray) -> int:
        ids = as_ids(ids)
        if len(ids) == 0:
            return 0
        client = self._client()
        present = [int(r["id"]) for r in client.get(self.collection, ids=ids.tolist(), output_fields=["id"])]
        if present:
            client.delete(self.collection, ids=present)
            client.flush(self.collection)
        self._count -= len(present)
        return len(present)

    # -- full text -----------------------------------------------------------------------
    @property
    def full_text(self) -> bool:
        return self._full_text

    def lexical_search(self, tokens: str, k: int) -> list[tuple[int, float]]:
        """BM25 over the collection's token strings: [(id, score)], best first."""
        if not self._full_text or not tokens.strip() or k <= 0 or self._count == 0:
            return []
        hits = self._client().search(self.collection, data=[tokens], anns_field="sparse",
                                     limit=min(k, 16384), search_params={"metric_type": "BM25"},
                                     output_fields=["id"])[0]
        # A server answers the BM25 score, Milvus Lite its negative (a distance); BM25 is >= 0.
        out = [(int(h["id"]), abs(float(h["distance"]))) for h in hits]
        return [(i, s) for i, s in out if s > 0]

    def lexical_scores(self, tokens: str, ids: Sequence[int]) -> dict[int, float]:
        """BM25 scores of the given ids (ids without a matching term are left out)."""
        ids = [int(i) for i in ids]
        if not self._full_text or not ids or not tokens.strip():
            return {}
        hits = self._client().search(self.collection, data=[tokens], anns_field="sparse",
                                     limit=len(ids), filter=f"id in {ids}",
                                     search_params={"metric_type": "BM25"}, output_fields=["id"])[0]
        return {int(h["id"]): abs(float(h["distance"])) for h in hits if h["distance"]}

    # -- persistence ---------------------------------------------------------------------
    def save(self, directory: Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        meta = {
            "backend": self.name, "collection": self.collection, "dim": self.dim, "kind": self.kind,
            "index_type": self._index_type(), "build_params": self._build_params(),
            "hnsw_m": self.hnsw_m, "ivf_nlist": self._nlist or self.ivf_nlist,
            "ef_search": self.ef_search, "nprobe": self.nprobe, "count": self._count,
            "full_text": self._full_text, "analyzer": self.analyzer,
            "server_version": self.server_version,
            # Where it was built; readers use their own retrieval.milvus_uri (workers may
            # reach the same Milvus under another address).
            "built_at_uri": self.uri if not is_lite_uri(self.uri) else Path(self.uri).name,
        }
        (directory / META_FILE).write_text(json.dumps(meta), encoding="utf-8")

    @classmethod
    def _from_meta(cls, directory: Path, settings: "Settings") -> "MilvusIndex":
        path = Path(directory) / META_FILE
        if not path.is_file():
            raise IndexNotFoundError(f"no Milvus index in {directory} ({META_FILE} missing)")
        meta = json.loads(path.read_text(encoding="utf-8"))
        uri, token = _connection(settings)
        index = cls(meta["dim"], uri, meta["collection"], meta["kind"], token, hnsw_m=meta["hnsw_m"],
                    ivf_nlist=meta["ivf_nlist"], ef_search=meta["ef_search"], nprobe=meta["nprobe"],
                    full_text=meta["full_text"], analyzer=meta["analyzer"], count=meta["count"])
        index._nlist = meta["ivf_nlist"] if meta["kind"] == "ivf" else 0
        index.server_version = meta.get("server_version", "")
        return index

    @classmethod
    def open(cls, directory: Path, settings: "Settings") -> "MilvusIndex":
        index = cls._from_meta(directory, settings)
        client = index._client()
        if not client.has_collection(index.collection):
            raise IndexNotFoundError(
                f"Milvus collection {index.collection} (index {directory}) is not at "
                f"{index.uri}: dropped by a prune, or retrieval.milvus_uri points at another Milvus"
            )
        client.load_collection(index.collection)
        return index

    @classmethod
    def load(cls, directory: Path) -> "MilvusIndex":
        return cls.open(directory, get_settings())

    @classmethod
    def drop_saved(cls, directory: Path, settings: "Settings") -> None:
        index = cls._from_meta(directory, settings)
        client = index._client()
        if client.has_collection(index.collection):
            client.drop_collection(index.collection)

    def stored_count(self) -> int:
        return self.count_rows()

    def count_rows(self) -> int:
        """Rows in the collection as Milvus counts them (a round trip; ``len`` is cached)."""
        rows = self._client().query(self.collection, filter="", output_fields=["count(*)"],
                                    consistency_level="Strong")
        return int(rows[0]["count(*)"]) if rows else 0

    def __len__(self) -> int:
        return self._count

    def __repr__(self) -> str:
        return f"MilvusIndex(collection={self.collection!r}, kind={self.kind!r}, dim={self.dim}, n={self._count})"
