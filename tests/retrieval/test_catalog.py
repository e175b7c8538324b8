"""What the admin console lists: document states against the published index, index versions
published by hand and rolled back along their build chain."""

from __future__ import annotations

import doctest
import shutil

import pytest

from knowledge.errors import IndexNotFoundError, KBError


def test_doctests():
    import retrieval.catalog as catalog

    assert doctest.testmod(catalog).failed == 0


def test_document_states_follow_the_published_index(copy_home, demo_index):
    from retrieval.catalog import document_rows
    from retrieval.store import IndexStore

    store = IndexStore(copy_home, embedder=demo_index.embedder)
    docs = store.documents_dir
    shutil.copy(docs / "员工请假制度.txt", docs / "请假制度-副本.txt")      # same bytes, another name
    (docs / "费用标准.xlsx").unlink()                                      # deleted, still served
    (docs / "信息安全管理规定.md").write_text("# 信息安全\n\n新版：密码每90天更换一次。\n", encoding="utf-8")
    rows = {r["name"]: r for r in document_rows(store)}
    assert rows["费用标准.xlsx"]["state"] == "removed" and rows["费用标准.xlsx"]["chunks"] > 0
    assert rows["信息安全管理规定.md"]["state"] == "changed"
    assert rows["请假制度-副本.txt"]["state"] == "new"

    v0 = store.current_version()
    v1 = store.build().version
    rows = {r["name"]: r for r in document_rows(store)}
    assert "费用标准.xlsx" not in rows
    assert rows["请假制度-副本.txt"]["state"] == "duplicate" and rows["请假制度-副本.txt"]["duplicate_of"] == "员工请假制度.txt"
    assert rows["信息安全管理规定.md"]["state"] == "indexed" and rows["信息安全管理规定.md"]["since"] == v1
    assert rows["员工请假制度.txt"]["since"] == v0

    assert store.rollback_target() == v0
    assert store.publish(v0) == v1 and store.current_version() == v0
    rows = {r["name"]: r for r in document_rows(store)}
    assert rows["信息安全管理规定.md"]["state"] == "changed" and rows["费用标准.xlsx"]["state"] == "removed"
    with pytest.raises(KBError, match="no earlier version"):
        store.rollback_target()
    with pytest.raises(IndexNotFoundError):
        store.publish("../jobs.sqlite3")
