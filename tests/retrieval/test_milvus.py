"""The Milvus backend on Milvus Lite: checked against FAISS exact search and the local BM25 on the
same vectors and tokens; the versioned store on it (incremental reindex, deletions, rollback,
prune, a failed build)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from config.settings import RetrievalSettings, Settings
from knowledge.errors import ConfigError, IndexNotFoundError
from retrieval.bm25 import BM25Index, tokenize
from retrieval.store import IndexStore
from retrieval.vector import FaissIndex, MilvusIndex, open_vector_index, vector_index_class
from retrieval.vector.milvus_index import client_for, token_string
from tests.conftest import milvus_settings

DOCS = {
    "travel.md": "# 差旅费管理\n\n## 住宿标准\n\n员工出差住宿费每晚不超过500元。\n\n"
                 "## 交通\n\n出差乘坐高铁二等座，可以全额报销。\n",
    "leave.txt": "年假制度\n\n员工累计工作满1年不满10年的，年休假5天。\n",
    "security.md": "# 信息安全\n\n密码每90天必须更换一次，不得与最近5次的密码相同。\n",
}
GLOSSARY = "缩略语,英文全称,中文解释\nAM,Account Manager,客户经理\nPM,Project Manager,项目经理\n"


def _unit(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(11)
    vectors, queries = _unit(rng, 2000, 32), _unit(rng, 40, 32)
    ids = (rng.permutation(50_000)[:2000] * 7919 + 3).astype(np.int64)  # arbitrary, non-contiguous
    return vectors, queries, ids


def _settings(home: Path, **retrieval) -> Settings:
    retrieval.setdefault("milvus_full_text", "milvus")
    return Settings(home=home, retrieval=RetrievalSettings(vector_backend="milvus", **retrieval))


def test_exact_milvus_matches_faiss_exact_on_the_same_vectors(tmp_path, data):
    vectors, queries, ids = data
    settings = _settings(tmp_path)
    milvus = MilvusIndex.create(ids, vectors, settings, kind="flat", name="t_chunks", directory=tmp_path / "m")
    faiss = FaissIndex.build(ids, vectors, settings.retrieval, kind="flat")
    m_scores, m_ids = milvus.search(queries, 10)
    f_scores, f_ids = faiss.search(queries, 10)
    np.testing.assert_array_equal(m_ids, f_ids)
    np.testing.assert_allclose(m_scores, f_scores, atol=1e-5)
    # Saved, reopened through the registry, then rows deleted: still FAISS's answer.
    reopened = open_vector_index(tmp_path / "m", settings)
    assert isinstance(reopened, MilvusIndex) and reopened.stored_count() == 2000
    gone = ids[:300]
    assert reopened.delete(gone) == 300 and reopened.delete(gone[:5]) == 0
    faiss.delete(gone)
    m_scores, m_ids = reopened.search(queries, 10)
    f_scores, f_ids = faiss.search(queries, 10)
    np.testing.assert_array_equal(m_ids, f_ids)
    np.testing.assert_allclose(m_scores, f_scores, atol=1e-5)
    assert reopened.stored_count() == len(reopened) == 1700
    # Short result lists are padded as FAISS pads them.
    small = MilvusIndex.create(np.array([7, 9]), np.eye(32, dtype=np.float32)[:2], settings, kind="flat",
                               name="small_chunks", directory=tmp_path / "s")
    scores, found = small.search(np.eye(32, dtype=np.float32)[:1], 4)
    assert found[0].tolist() == [7, 9, -1, -1] and np.isneginf(scores[0, 2:]).all()


def test_hnsw_recall_against_faiss_exact(tmp_path, data):
    vectors, queries, ids = data
    milvus = MilvusIndex.create(ids, vectors, _settings(tmp_path), kind="hnsw", name="h_chunks",
                                directory=tmp_path / "h")
    _, found = milvus.search(queries, 10)
    _, truth = FaissIndex.build(ids, vectors, RetrievalSettings(), kind="flat").search(queries, 10)
    recall = np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth)])
    assert recall >= 0.9


def test_milvus_full_text_scores_equal_the_local_bm25(tmp_path):
    texts = ["员工出差住宿费每晚不超过500元。", "密码每90天必须更换一次。", "AM负责客户关系，AM出差住宿按B类。",
             "高铁二等座可以全额报销。", "What is the hotel limit for the AM?"]
    tokens = [tokenize(t) for t in texts]
    ids = np.arange(len(texts), dtype=np.int64) + 100
    vectors = np.eye(8, dtype=np.float32)[: len(texts)]
    milvus = MilvusIndex.create(ids, vectors, _settings(tmp_path), kind="flat", name="ft_chunks",
                                directory=tmp_path / "ft", texts=[token_string(t) for t in tokens])
    assert milvus.full_text
    local = BM25Index().build(ids, tokens=tokens)
    for query in ("AM出差住宿", "密码更换", "hotel limit", "报销 高铁 高铁"):
        q = token_string(tokenize(query), distinct=True)
        got = milvus.lexical_search(q, 5)
        want = local.search(query, 5)
        assert [i for i, _ in got] == [i for i, _ in want], query
        np.testing.assert_allclose([s for _, s in got], [s for _, s in want], rtol=1e-4)
        scored = milvus.lexical_scores(q, [100, 101, 102])
        np.testing.assert_allclose([scored.get(i, 0.0) for i in (100, 101, 102)],
                                   local.score_ids(query, [100, 101, 102]), rtol=1e-4)


def test_unknown_uri_scheme_and_default_lite_file(tmp_path):
    assert _settings(tmp_path).milvus_uri == str(tmp_path / "milvus.db")
    with pytest.raises(ConfigError, match="milvus_uri"):
        client_for(str(tmp_path / "not-a-db-file"))
    assert vector_index_class("milvus") is MilvusIndex


# -- the store on Milvus ----------------------------------------------------------------------
@pytest.fixture()
def mstore(tmp_path, counting) -> IndexStore:
    home = tmp_path / "kb"
    (home / "documents").mkdir(parents=True)
    for name, text in DOCS.items():
        (home / "documents" / name).write_text(text, encoding="utf-8")
    (tmp_path / "terms.csv").write_text(GLOSSARY, encoding="utf-8")
    st = IndexStore(home, settings=milvus_settings(home, embedder="counting"))
    st.add_glossary(tmp_path / "terms.csv")
    return st


def _collections(store: IndexStore) -> set[str]:
    return set(client_for(store.settings.milvus_uri).list_collections())


def test_store_on_milvus_incremental_reindex_delete_rollback_prune(mstore, counting):
    first = mstore.build()
    manifest = mstore.manifest()
    assert manifest["index"]["vector"] == "milvus" and manifest["index"]["bm25"]["engine"] == "milvus"
    names = manifest["index"]["collections"]
    assert names == {"chunks": f"kb_{first.version.replace('-', '_')}_chunks",
                     "facts": f"kb_{first.version.replace('-', '_')}_facts"}
    assert set(names.values()) <= _collections(mstore)
    meta = json.loads((mstore.indexes_dir / first.version / "milvus_chunks" / "index.json").read_text())
    assert meta["collection"] == names["chunks"] and meta["full_text"] is True
    index = mstore.load()
    assert index.lexical_engine == "milvus"
    assert index.search("住宿费每晚多少钱", k=1)[0].chunk.source == "travel.md"
    # Citation metadata is stored with each vector.
    row = client_for(mstore.settings.milvus_uri).query(names["chunks"], filter="source == 'travel.md'",
                                                       output_fields=["key", "source", "page", "text"], limit=1)[0]
    chunk = index.chunk(row["key"])
    assert (chunk.source, chunk.page if chunk.page is not None else -1, chunk.text) == \
        (row["source"], row["page"], row["text"])

    # Incremental: only the changed document is embedded; a new collection holds the version.
    counting.texts.clear()
    (mstore.documents_dir / "leave.txt").write_text("年假制度\n\n员工累计工作满1年不满10年的，年休假7天。\n",
                                                    encoding="utf-8")
    (mstore.documents_dir / "security.md").unlink()
    second = mstore.build()
    assert second.changed == ["leave.txt"] and second.removed == ["security.md"]
    assert counting.texts and len(counting.texts) == second.embedded_chunks + second.embedded_facts
    new = mstore.load()
    assert all(c.source != "security.md" for c in new.chunks)
    assert new.chunk_index.stored_count() == len(new.chunks)
    assert "7天" in new.search("年休假几天", k=1)[0].chunk.text
    assert not [h for h in new.search("密码更换", k=5) if h.chunk.source == "security.md"]

    # Rollback: the previous version's collections were kept, so it serves as it did.
    assert mstore.rollback() == first.version
    old = mstore.load()
    assert old.version == first.version and "5天" in old.search("年休假几天", k=1)[0].chunk.text
    assert old.search("密码更换", k=1)[0].chunk.source == "security.md"
    mstore.publish(second.version)

    # Prune drops the pruned version's collections, never the published one's nor the one before
    # it (kept for rollback): with a third version, the first is the one to go.
    third = mstore.build()
    assert mstore.prune(keep=1) == [first.version]
    live = _collections(mstore)
    assert not set(names.values()) & live
    assert set(mstore.manifest()["index"]["collections"].values()) <= live
    assert mstore.rollback() == second.version      # its collections were kept
    assert mstore.load().version == second.version
    mstore.publish(third.version)


def test_failed_milvus_build_keeps_the_published_version_and_leaves_no_collection(mstore, monkeypatch):
    first = mstore.build()
    before = _collections(mstore)

    def boom(self, tmp):
        raise RuntimeError("disk full")

    monkeypatch.setattr("retrieval.store._Build._validate", boom)
    (mstore.documents_dir / "new.md").write_text("# 新制度\n\n加班每小时补贴50元。\n", encoding="utf-8")
    with pytest.raises(RuntimeError, match="disk full"):
        mstore.build()
    assert mstore.current_version() == first.version and _collections(mstore) == before
    assert not list(mstore.indexes_dir.glob(".building-*"))
    assert mstore.load().search("住宿费每晚多少钱", k=1)[0].chunk.source == "travel.md"


@pytest.mark.parametrize("mode", ["local", "auto"])
def test_local_bm25_when_configured_and_by_default_on_milvus_lite(mstore, mode):
    mstore.settings.retrieval.milvus_full_text = mode
    mstore.build()
    assert mstore.manifest()["index"]["bm25"]["engine"] == "local"
    index = mstore.load()
    assert index.lexical_engine == "local" and not index.chunk_index.full_text
    assert index.search("住宿费每晚多少钱", k=1)[0].chunk.source == "travel.md"


def test_switching_a_home_between_backends_reuses_every_vector(milvus_demo_home, milvus_demo_index):
    manifest = milvus_demo_index.manifest
    assert manifest["index"]["vector"] == "milvus" and manifest["build"]["embedded_chunks"] == 0
    assert milvus_demo_index.lexical_engine == "milvus"
    assert len(milvus_demo_index.chunk_index) == len(milvus_demo_index.chunks)


def test_a_lite_file_held_by_another_process_is_a_clear_error(tmp_path):
    import subprocess
    import sys

    path = tmp_path / "held" / "milvus.db"
    path.parent.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pymilvus import MilvusClient; "
         f"MilvusClient({str(path)!r}); print('open', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "open"
        with pytest.raises(ConfigError, match="one process at a time.*milvus-lite server"):
            client_for(str(path))
    finally:
        holder.kill()
        holder.wait()
