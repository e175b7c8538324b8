"""The adapter store under two administrators at once (issue 21): concurrent publishes and
rollbacks leave ``current`` and ``history.json`` agreeing, and no publish is lost."""

from __future__ import annotations

import json
import threading
import time

import pytest

from router.adapters import AdapterStore
from router.adapters import store as adapter_store


def _versions(home, n: int) -> list[str]:
    names = []
    for i in range(1, n + 1):
        folder = home / "adapters" / f"v{i:04d}"
        folder.mkdir(parents=True)
        (folder / "manifest.json").write_text(json.dumps({"version": folder.name, "metrics": {}, "status": "rejected"}))
        names.append(folder.name)
    return names


def test_concurrent_publishes_keep_the_pointer_and_the_history_in_agreement(tmp_path, monkeypatch):
    names = _versions(tmp_path, 6)
    real_hit = adapter_store.hit

    def slow_publish(name: str) -> None:  # widen the window between reading and writing the history
        if name == "adapter.publish":
            time.sleep(0.05)
        real_hit(name)

    monkeypatch.setattr(adapter_store, "hit", slow_publish)
    start = threading.Barrier(len(names))
    errors: list[BaseException] = []

    def publish(version: str) -> None:
        try:
            start.wait(5)
            AdapterStore(tmp_path).publish(version)  # each admin request opens its own store
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=publish, args=(v,)) for v in names]
    [t.start() for t in threads]
    [t.join(30) for t in threads]
    assert not errors
    store = AdapterStore(tmp_path)
    history = json.loads((tmp_path / "adapters" / "history.json").read_text(encoding="utf-8"))
    assert sorted(history["stack"]) == names and len(history["events"]) == len(names)  # no publish lost
    assert history["stack"][-1] == history["events"][-1]["version"] == store.current()  # and they agree
    assert all(store.manifest(v)["status"] == "published" for v in names)

    # a rollback racing a publish: still one story
    t1 = threading.Thread(target=lambda: AdapterStore(tmp_path).rollback())
    t2 = threading.Thread(target=lambda: AdapterStore(tmp_path).publish(names[0]))
    [t.start() for t in (t1, t2)]
    [t.join(30) for t in (t1, t2)]
    history = json.loads((tmp_path / "adapters" / "history.json").read_text(encoding="utf-8"))
    assert history["stack"][-1] == store.current() and len(history["events"]) == len(names) + 2


def test_a_damaged_adapter_version_is_not_published(tmp_path):
    from knowledge.core.errors import KBError
    from knowledge.core.files import folder_checksums

    (name,) = _versions(tmp_path, 1)
    folder = tmp_path / "adapters" / name
    (folder / "adapter.gguf").write_bytes(b"GGUF" + b"\1" * 100)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"] = folder_checksums(folder)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    (folder / "adapter.gguf").write_bytes(b"")  # a power cut before the copy reached the disk
    with pytest.raises(KBError, match="adapter.gguf"):
        AdapterStore(tmp_path).publish(name)
    assert AdapterStore(tmp_path).current() is None
