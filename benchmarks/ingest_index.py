"""Ingest, embedding, index-build and search benchmark.

Two parts, both in one run:

* the demo corpus (``--docs``, default ``knowledge/demo/docs``): documents/s and chunks/s
  for loading+chunking, texts/s for embedding, index build time, search latency p50/p95 for
  dense, BM25 and hybrid search (each including the query embedding), and the time of an
  incremental reindex after changing one document against a full rebuild;
* a synthetic corpus (``--synthetic-n``, default 100,000 chunks): random unit vectors for
  FAISS flat vs HNSW vs IVF (build time, latency, recall@10 against flat) and BM25 over
  Chinese-like text drawn from jieba's 2,000 most frequent words (build time, latency),
  plus hybrid (flat + BM25 + RRF, without query embedding).

Memory is reported as RSS after each stage and the process peak. Prints a table, then one
JSON line (prefix ``RESULT``). ``--quick`` keeps it to about two minutes on 2 cores.

    HF_HUB_OFFLINE=1 python benchmarks/ingest_index.py [--quick] [--docs PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

QUERIES = [
    "出差住宿标准是多少", "一线城市住宿费每晚多少钱", "年假有几天", "病假工资怎么算", "婚假几天",
    "密码多久更换一次", "AM是什么意思", "采购金额超过多少需要招标", "新员工入职第一周做什么",
    "伙食补助每天多少", "高铁可以坐一等座吗", "报销需要在多少天内提交", "How many days of annual leave?",
    "What is the hotel limit per night?", "固定资产盘点", "VPN怎么开通", "加班费", "发票丢失怎么办",
    "出差补助标准", "信息安全事件如何上报",
]


# -- small helpers -----------------------------------------------------------------------------
def rss_mb() -> float:
    try:
        import psutil

        return psutil.Process().memory_info().rss / 2**20
    except ImportError:  # pragma: no cover
        return float("nan")


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def latency_ms(fn: Callable[[Any], Any], items: list[Any], reps: int) -> dict[str, float]:
    times = []
    for _ in range(reps):
        for item in items:
            t = time.perf_counter()
            fn(item)
            times.append((time.perf_counter() - t) * 1000)
    return {"p50_ms": float(np.percentile(times, 50)), "p95_ms": float(np.percentile(times, 95)), "n": len(times)}


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


# -- demo corpus ---------------------------------------------------------------------------------
def bench_demo(docs: Path, glossary: Path | None, quick: bool) -> dict[str, Any]:
    from config.settings import get_settings
    from retrieval.store import IndexStore

    out: dict[str, Any] = {"docs_path": str(docs)}
    with tempfile.TemporaryDirectory(prefix="kb-bench-") as tmp:
        store = IndexStore(Path(tmp), settings=get_settings())
        store.add_documents([docs])
        if glossary is not None and glossary.is_dir():
            for path in sorted(glossary.iterdir()):
                if path.is_file():
                    store.add_glossary(path)
        _ = store.embedder  # load the model outside the timed build
        first, first_s = timed(store.build)
        t = first.timings
        out["build"] = {
            "documents": first.documents, "chunks": first.chunks, "facts": first.facts,
            "errors": len(first.errors), "seconds": first_s,
            "ingest_s": t["load"], "embed_s": t["embed"], "index_s": t["index"] + t["validate"],
            "ingest_docs_per_s": first.documents / t["load"] if t["load"] else None,
            "ingest_chunks_per_s": first.chunks / t["load"] if t["load"] else None,
            "embed_texts_per_s": (first.embedded_chunks + first.embedded_facts) / t["embed"] if t["embed"] else None,
            "embed_chunks_per_s": first.embedded_chunks / t["embed"] if t["embed"] else None,
        }
        out["rss_after_build_mb"] = rss_mb()

        index, load_s = timed(store.load)
        out["load_index_s"] = load_s
        reps = 1 if quick else 2

        def fresh(method: Callable[[str], Any]) -> Callable[[str], Any]:
            def run(query: str) -> Any:
                index._qcache.clear()  # measure with the query embedding every time
                return method(query)
            return run

        index.search(QUERIES[0])  # warm-up (jieba, caches)
        out["search"] = {
            "query_embedding": latency_ms(fresh(index.query_vector), QUERIES, reps),
            "dense": latency_ms(fresh(index.dense_search), QUERIES, reps),
            "bm25": latency_ms(fresh(index.bm25_search), QUERIES, reps),
            "hybrid": latency_ms(fresh(index.search), QUERIES, reps),
            "facts": latency_ms(fresh(index.search_facts), QUERIES, reps),
        }
        out["rss_after_search_mb"] = rss_mb()

        changed = change_one_document(store.documents_dir)
        incremental, inc_s = timed(store.build)
        if quick:
            full_s, full_note = first_s, "initial build (--quick)"
        else:
            _, full_s = timed(lambda: store.build(full=True))
            full_note = "build(full=True), same run"
        out["incremental"] = {
            "changed_document": changed, "incremental_s": inc_s, "full_s": full_s, "full_is": full_note,
            "ratio": inc_s / full_s if full_s else None,
            "reembedded_texts": incremental.embedded_chunks + incremental.embedded_facts,
        }
    return out


def change_one_document(folder: Path) -> str:
    """Append a sentence to the smallest text document, in its own encoding (demo files
    may be GBK); with no text document, delete the smallest file instead."""
    files = sorted((p for p in folder.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    for path in files:
        if path.suffix.lower() in (".md", ".txt"):
            data = path.read_bytes()
            for codec in ("utf-8", "gb18030"):
                try:
                    text = data.decode(codec)
                except UnicodeDecodeError:
                    continue
                text += "\n\n补充说明：本制度自发布之日起施行，员工出差补助每天100元。\n"
                path.write_bytes(text.encode(codec))
                return path.relative_to(folder).as_posix()
    files[0].unlink()
    return f"{files[0].relative_to(folder).as_posix()} (deleted)"


# -- synthetic corpus ----------------------------------------------------------------------------
def bench_synthetic(n: int, dim: int, quick: bool) -> dict[str, Any]:
    from config.settings import RetrievalSettings
    from retrieval.bm25 import BM25Index, tokenize
    from retrieval.hybrid import rrf
    from retrieval.vector import FaissIndex

    rng = np.random.default_rng(0)
    out: dict[str, Any] = {"n": n, "dim": dim}
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    queries = rng.standard_normal((100, dim)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    ids = np.arange(n, dtype=np.int64)
    cfg = RetrievalSettings()
    out["rss_vectors_mb"] = rss_mb()

    flat, flat_s = timed(lambda: FaissIndex.build(ids, vectors, cfg, kind="flat"))
    truth = flat.search(queries, 10)[1]
    faiss_out: dict[str, Any] = {}
    for kind in ("flat", "hnsw", "ivf"):
        if kind == "flat":
            index, build_s = flat, flat_s
        else:
            index, build_s = timed(lambda k=kind: FaissIndex.build(ids, vectors, cfg, kind=k))
        out[f"rss_after_{kind}_mb"] = rss_mb()
        # HNSW and IVF are also measured at a wider search (efSearch 512 / nprobe 256):
        # uniform random vectors are the hardest case for ANN, so show the trade-off.
        for label, knob in ((kind, None), (f"{kind} wide", 512 if kind == "hnsw" else 256)):
            if knob is not None and kind == "flat":
                continue
            if knob is not None and kind == "hnsw":
                index.ef_search = knob
            elif knob is not None:
                index.nprobe = knob
            found = index.search(queries, 10)[1]
            recall = float(np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth)]))
            faiss_out[label] = {"build_s": build_s, "recall_at_10": recall,
                                **latency_ms(lambda q, ix=index: ix.search(q[None, :], 10), list(queries), 1)}
        if kind != "flat":
            del index
    out["faiss"] = faiss_out

    texts = synthetic_chinese(n, rng)
    tokens, tok_s = timed(lambda: [tokenize(t) for t in texts])
    bm25, bm25_s = timed(lambda: BM25Index().build(ids, tokens=tokens))
    bm25_queries = [texts[int(i)][:12] for i in rng.integers(0, n, 50)]
    out["bm25"] = {"tokenize_s": tok_s, "build_s": bm25_s, "avg_tokens": float(np.mean([len(t) for t in tokens])),
                   **latency_ms(lambda q: bm25.search(q, 30), bm25_queries, 1)}
    out["rss_after_bm25_mb"] = rss_mb()

    def hybrid(i: int) -> Any:
        dense = flat.search(queries[i % len(queries)][None, :], cfg.candidates)[1][0].tolist()
        lexical = [d for d, _ in bm25.search(bm25_queries[i], cfg.candidates)]
        return rrf([dense, lexical], k=cfg.rrf_k)[: cfg.top_k]

    out["hybrid_flat_bm25"] = latency_ms(hybrid, list(range(len(bm25_queries))), 1)
    return out


def synthetic_chinese(n: int, rng: np.random.Generator, words_per_doc: int = 30) -> list[str]:
    """Texts made of jieba's 2,000 most frequent Chinese words (about 60 characters each)."""
    import jieba

    rows = []
    with open(Path(jieba.__file__).with_name("dict.txt"), encoding="utf-8") as fh:
        for line in fh:
            word, freq = line.split()[:2]
            if len(word) >= 2 and all("\u4e00" <= c <= "\u9fff" for c in word):
                rows.append((int(freq), word))
    vocab = [w for _, w in sorted(rows, reverse=True)[:2000]]
    picks = rng.integers(0, len(vocab), (n, words_per_doc))
    return ["".join(vocab[i] for i in row) for row in picks]


# -- report -----------------------------------------------------------------------------------------
def print_table(result: dict[str, Any]) -> None:
    rows: list[tuple[str, str]] = []

    def add(name: str, value: Any, fmt: str = "{:.2f}") -> None:
        rows.append((name, fmt.format(value) if isinstance(value, float) else str(value)))

    demo = result.get("demo")
    if demo:
        b = demo["build"]
        add("demo: documents / chunks / facts", f"{b['documents']} / {b['chunks']} / {b['facts']}")
        add("demo: ingest documents/s", b["ingest_docs_per_s"])
        add("demo: ingest chunks/s", b["ingest_chunks_per_s"])
        add("demo: embed texts/s (chunks+facts)", b["embed_texts_per_s"])
        add("demo: embed chunks/s", b["embed_chunks_per_s"])
        add("demo: index build s (faiss+bm25+write+validate)", b["index_s"], "{:.3f}")
        add("demo: full build s", b["seconds"])
        add("demo: load index s", demo["load_index_s"], "{:.3f}")
        for mode, lat in demo["search"].items():
            add(f"demo: {mode} latency p50 / p95 ms", f"{lat['p50_ms']:.1f} / {lat['p95_ms']:.1f}")
        inc = demo["incremental"]
        add("demo: incremental reindex s (1 doc changed)", inc["incremental_s"])
        add(f"demo: full rebuild s ({inc['full_is']})", inc["full_s"])
        add("demo: incremental / full", inc["ratio"], "{:.3f}")
        add("demo: RSS after build / search MB",
            f"{demo['rss_after_build_mb']:.0f} / {demo['rss_after_search_mb']:.0f}")
    syn = result.get("synthetic")
    if syn:
        tag = f"synthetic {syn['n']:,}"
        for kind, r in syn["faiss"].items():
            if not kind.endswith("wide"):
                add(f"{tag}: faiss {kind} build s", r["build_s"])
            add(f"{tag}: faiss {kind} p50 / p95 ms, recall@10",
                f"{r['p50_ms']:.2f} / {r['p95_ms']:.2f}, {r['recall_at_10']:.3f}")
        bm = syn["bm25"]
        add(f"{tag}: bm25 tokenize s / build s", f"{bm['tokenize_s']:.1f} / {bm['build_s']:.2f}")
        add(f"{tag}: bm25 p50 / p95 ms", f"{bm['p50_ms']:.2f} / {bm['p95_ms']:.2f}")
        hy = syn["hybrid_flat_bm25"]
        add(f"{tag}: hybrid (flat+bm25+rrf) p50 / p95 ms", f"{hy['p50_ms']:.2f} / {hy['p95_ms']:.2f}")
        add(f"{tag}: RSS after faiss / bm25 MB", f"{syn['rss_after_ivf_mb']:.0f} / {syn['rss_after_bm25_mb']:.0f}")
    add("peak RSS MB", result["peak_rss_mb"], "{:.0f}")
    add("total s", result["total_s"], "{:.1f}")
    width = max(len(r[0]) for r in rows)
    print("-" * (width + 24))
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    print("-" * (width + 24))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=Path, default=ROOT / "knowledge" / "demo" / "docs")
    parser.add_argument("--glossary", type=Path, default=None,
                        help="glossary folder (default: a glossary/ folder beside --docs)")
    parser.add_argument("--synthetic-n", type=int, default=None, help="synthetic chunks (default 100000)")
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--quick", action="store_true", help="20,000 synthetic chunks; no second full build")
    parser.add_argument("--skip-demo", action="store_true")
    parser.add_argument("--skip-synthetic", action="store_true")
    args = parser.parse_args(argv)
    n = args.synthetic_n or (20_000 if args.quick else 100_000)

    start = time.perf_counter()
    result: dict[str, Any] = {"quick": args.quick, "cpus": os.cpu_count()}
    if not args.skip_demo:
        if args.docs.is_dir() and any(args.docs.iterdir()):
            glossary = args.glossary or args.docs.parent / "glossary"
            result["demo"] = bench_demo(args.docs, glossary, args.quick)
        else:
            print(f"demo corpus {args.docs} missing or empty: skipped", file=sys.stderr)
    if not args.skip_synthetic:
        result["synthetic"] = bench_synthetic(n, args.dim, args.quick)
    result["peak_rss_mb"] = peak_mb()
    result["total_s"] = time.perf_counter() - start
    print_table(result)
    print("RESULT " + json.dumps(result, ensure_ascii=False, default=float))
    return result


if __name__ == "__main__":
    main()
