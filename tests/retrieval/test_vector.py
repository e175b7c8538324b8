"""FAISS indexes checked against brute-force NumPy search on the same vectors."""

from __future__ import annotations

import numpy as np
import pytest

from config.settings import RetrievalSettings
from knowledge.errors import KBError, UnknownComponentError
from retrieval.hybrid import rrf
from retrieval.vector import FaissIndex, available_vector_indexes, choose_kind, create_vector_index


def _unit(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _brute(queries: np.ndarray, vectors: np.ndarray, ids: np.ndarray, k: int):
    sims = queries @ vectors.T
    order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(sims, order, axis=1), ids[order]


def _recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth)]))


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(7)
    vectors, queries = _unit(rng, 3000, 16), _unit(rng, 50, 16)
    ids = rng.permutation(10_000)[:3000].astype(np.int64) * 3 + 5  # arbitrary, non-contiguous
    return vectors, queries, ids


def test_flat_matches_brute_force_exactly(data):
    vectors, queries, ids = data
    index = FaissIndex(16, "flat")
    index.add(ids, vectors)
    scores, found = index.search(queries, 10)
    ref_scores, ref_ids = _brute(queries, vectors, ids, 10)
    np.testing.assert_array_equal(found, ref_ids)
    np.testing.assert_allclose(scores, ref_scores, atol=1e-5)


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_ann_recall_against_brute_force(data, kind):
    vectors, queries, ids = data
    index = FaissIndex(16, kind)
    index.add(ids, vectors)
    scores, found = index.search(queries, 10)
    _, ref_ids = _brute(queries, vectors, ids, 10)
    assert _recall(found, ref_ids) >= 0.9
    # Whatever ANN returns, its scores are the true inner products of those ids.
    row_of = {int(i): r for r, i in enumerate(ids)}
    true = np.array([[vectors[row_of[int(i)]] @ q for i in f] for f, q in zip(found, queries)])
    np.testing.assert_allclose(scores, true, atol=1e-4)


def test_build_chooses_exact_or_ann_by_size(data):
    vectors, _, ids = data
    assert FaissIndex.build(ids, vectors, RetrievalSettings(exact_max=5000)).kind == "flat"
    small = RetrievalSettings(exact_max=100, ann="hnsw")
    assert FaissIndex.build(ids[:500], vectors[:500], small).kind == "hnsw"
    assert choose_kind(101, 100, "ivf") == "ivf"


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf"])
def test_save_load_roundtrip_and_delete(tmp_path, data, kind):
    vectors, queries, ids = data
    index = FaissIndex(16, kind)
    index.add(ids, vectors)
    gone = ids[:100]
    assert index.delete(gone) == 100
    assert len(index) == 2900
    index.save(tmp_path / kind)
    loaded = FaissIndex.load(tmp_path / kind)
    assert (loaded.kind, len(loaded)) == (kind, 2900)
    assert sorted(loaded.ids().tolist()) == sorted(ids[100:].tolist())
    scores, found = loaded.search(queries, 10)
    assert not set(found.ravel().tolist()) & set(gone.tolist())
    # Ids still point at their own vectors after deletion (no shifted id maps).
    row_of = {int(i): r for r, i in enumerate(ids)}
    true = np.array([[vectors[row_of[int(i)]] @ q for i in f] for f, q in zip(found, queries)])
    np.testing.assert_allclose(scores, true, atol=1e-5)
    ref_scores, ref_ids = _brute(queries, vectors[100:], ids[100:], 10)
    if kind == "flat":
        np.testing.assert_allclose(scores, ref_scores, atol=1e-5)
    else:
        assert _recall(found, ref_ids) >= 0.9
    if kind == "hnsw":  # a tombstoned id cannot come back: its old vector is still in the graph
        with pytest.raises(KBError, match="re-add"):
            loaded.add(gone, vectors[:100])
    else:
        loaded.add(gone, vectors[:100])
        assert len(loaded) == 3000 and loaded.search(vectors[:1], 1)[1][0, 0] == ids[0]


def test_ann_settings_reach_faiss(tmp_path, data):
    import faiss

    vectors, queries, ids = data
    cfg = RetrievalSettings(exact_max=100, hnsw_m=16, hnsw_ef_construction=24, hnsw_ef_search=48,
                            ivf_nlist=16, ivf_nprobe=5)
    hnsw = FaissIndex.build(ids, vectors, cfg, kind="hnsw")
    hnsw.search(queries[:1], 10)
    graph = faiss.downcast_index(hnsw._index.index)
    assert (graph.hnsw.efConstruction, graph.hnsw.efSearch) == (24, 48)
    ivf = FaissIndex.build(ids, vectors, cfg, kind="ivf")
    ivf.search(queries[:1], 10)
    assert (ivf._index.nlist, ivf._index.nprobe) == (16, 5)
    # Search-time knobs follow the settings of the loading process, without a rebuild.
    hnsw.save(tmp_path / "h")
    ivf.save(tmp_path / "i")
    later = RetrievalSettings(hnsw_ef_search=200, ivf_nprobe=0)
    h2 = FaissIndex.load(tmp_path / "h", later)
    h2.search(queries[:1], 10)
    assert faiss.downcast_index(h2._index.index).hnsw.efSearch == 200
    i2 = FaissIndex.load(tmp_path / "i", later)
    i2.search(queries[:1], 10)
    assert i2._index.nprobe == 16  # 0 = automatic: max(32, nlist/8), capped at nlist
    assert FaissIndex.load(tmp_path / "h").ef_search == 48  # no settings: as saved


def test_small_index_pads_with_minus_one():
    index = FaissIndex(4, "flat")
    index.add(np.array([7, 9]), np.eye(4, dtype=np.float32)[:2])
    scores, found = index.search(np.eye(4, dtype=np.float32)[:1], 5)
    assert found[0].tolist() == [7, 9, -1, -1, -1]
    assert scores[0, 0] == pytest.approx(1.0) and np.isneginf(scores[0, 2:]).all()
    empty = FaissIndex(4, "flat")
    assert empty.search(np.zeros((1, 4), np.float32), 3)[1].tolist() == [[-1, -1, -1]]


def test_wrong_dimension_and_unknown_backend_are_refused():
    index = FaissIndex(4, "flat")
    with pytest.raises(KBError, match=r"\(n, 4\)"):
        index.add(np.array([1]), np.ones((1, 5), np.float32))
    assert "faiss" in available_vector_indexes()
    assert isinstance(create_vector_index("faiss", 8), FaissIndex)
    with pytest.raises(UnknownComponentError):
        create_vector_index("annoy", 8)


# -- reciprocal-rank fusion ---------------------------------------------------------------
def test_rrf_math():
    fused = dict(rrf([[10, 20, 30], [30, 10]], k=60))
    assert fused[10] == pytest.approx(1 / 61 + 1 / 62)
    assert fused[30] == pytest.approx(1 / 63 + 1 / 61)
    assert fused[20] == pytest.approx(1 / 62)
    assert [i for i, _ in rrf([[10, 20, 30], [30, 10]], k=60)] == [10, 30, 20]


def test_rrf_ties_and_duplicates():
    # Same score: the id with the better best rank comes first, then the smaller id.
    assert [i for i, _ in rrf([[1, 2], [2, 1]], k=0)] == [1, 2]
    assert dict(rrf([[5, 5, 6]], k=1))[5] == pytest.approx(1 / 2)
    assert rrf([], k=60) == [] and rrf([[], []]) == []
