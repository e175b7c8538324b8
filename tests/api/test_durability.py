"""Issue 21 (durability, two admins at once, jobs run once) as tests: a published version that a
power cut truncated, a glossary save racing an upload, a reaped job whose process must stop.

No LLM here (the extractive generator); servers on 127.0.0.1 only; every wait bounded.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest
from fakes.servers import AppServer

KEY = "admin-test-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}


def _settings(home: Path, **api: object):
    from config.settings import APISettings, LLMSettings, Settings

    return Settings(home=home, api=APISettings(**api), llm=LLMSettings(backend="extractive"))


def _copy_version(home: Path, src: str, name: str) -> str:
    """A new, complete version: a copy of ``src`` under ``name``, published (no embedding)."""
    from retrieval.store import IndexStore

    store = IndexStore(home)
    shutil.copytree(store.indexes_dir / src, store.indexes_dir / name)
    path = store.indexes_dir / name / "manifest.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    manifest["version"] = name
    manifest.setdefault("build", {})["previous"] = store.current_version()
    path.write_text(json.dumps(manifest), encoding="utf-8")
    store._publish(name)
    return name


# --- a power cut truncated the published version -----------------------------------------------
def test_a_truncated_current_version_serves_previous(copy_home, monkeypatch, caplog):
    """What a power cut leaves when the version's files were never synced: ``current`` names a
    version whose ``chunk_vectors.npy`` is empty. The server starts on ``previous``, says so on
    /healthz, does not retry the broken version every tick, and follows the next good publish."""
    from api.main import create_app
    from retrieval import store as store_module
    from retrieval.store import IndexStore

    caplog.set_level(logging.ERROR, logger="kb.api.state")
    v0 = IndexStore(copy_home).current_version()
    v1 = _copy_version(copy_home, v0, "29990101T000001Z-aaaaaa")
    (copy_home / "indexes" / v1 / "chunk_vectors.npy").write_bytes(b"")

    loads: list[str | None] = []
    real_load = store_module.IndexStore.load

    def counted(self, version=None, embedder=None):
        loads.append(version)
        return real_load(self, version, embedder)

    monkeypatch.setattr(store_module.IndexStore, "load", counted)
    with AppServer(create_app(_settings(copy_home, follow_interval_s=0.1))) as url:
        health = httpx.get(f"{url}/healthz").json()
        assert health["index_version"] == v0 and health["status"] == "degraded", health
        assert v1 in health["detail"] and f"previous index {v0}" in health["detail"], health
        r = httpx.post(f"{url}/api/ask", json={"question": "AM是什么意思？"}, timeout=60)
        assert r.status_code == 200 and r.headers["x-kb-index-version"] == v0
        time.sleep(1.0)  # ten follower ticks: the broken version is not tried again
        assert loads.count(v1) == 1, loads
        assert len([rec for rec in caplog.records if v1 in rec.getMessage()]) == 1

        v2 = _copy_version(copy_home, v0, "29990101T000002Z-bbbbbb")  # the next good publish
        deadline = time.time() + 20
        while (health := httpx.get(f"{url}/healthz").json())["index_version"] != v2:
            assert time.time() < deadline, health
            time.sleep(0.1)
        assert health["status"] == "ok" and health["detail"] == ""


def test_a_running_holder_keeps_serving_when_the_new_version_is_damaged(copy_home):
    from api.state import EngineHolder, build_engine
    from retrieval.store import IndexStore
    from router.llm.extractive import ExtractiveGenerator

    settings = _settings(copy_home)
    holder = EngineHolder(settings, factory=lambda *a, **kw: build_engine(*a, generator=ExtractiveGenerator(), **kw))
    holder.load()
    v0 = holder.serving.index
    served = holder.engine
    v1 = _copy_version(copy_home, v0, "29990101T000003Z-cccccc")
    faiss_dir = copy_home / "indexes" / v1 / "faiss_chunks"
    for f in faiss_dir.iterdir():
        f.write_bytes(f.read_bytes()[:10])  # a FAISS file cut short: RuntimeError in FAISS itself
    assert holder.refresh() is False and holder.engine is served and holder.serving.index == v0
    assert v1 in holder.last_error and "IndexDamagedError" in holder.last_error
    assert holder.refresh() is False  # remembered: not loaded again until a pointer changes
    IndexStore(copy_home)._publish(v0)  # an administrator rolls back: healthy again
    holder.refresh()
    assert holder.serving.index == v0 and holder.last_error == ""


# --- two admins at once: a glossary save and an upload -----------------------------------------
def test_a_glossary_upload_during_a_glossary_save_is_never_lost(copy_home, monkeypatch):
    """``PUT /admin/glossary`` lists the folder, stores the edited table, then deletes what it
    listed. An upload answered 201 in between (a new version of a listed file) must survive."""
    from api.main import create_app
    from retrieval import catalog

    monkeypatch.setenv("KB_ADMIN_API_KEY", KEY)
    first = "缩略语,英文全称,中文解释\nSLA,Service Level Agreement,服务等级协议\n".encode("utf-8")
    second = "缩略语,英文全称,中文解释\nSLA,Service Level Agreement,服务水平协议\nKPI,Key Performance Indicator,关键绩效指标\n".encode("utf-8")
    with AppServer(create_app(_settings(copy_home))) as url:
        up = httpx.post(f"{url}/admin/glossary", headers=AUTH, files=[("files", ("extra.csv", first, "text/csv"))])
        assert up.status_code == 201, up.text
        revision = httpx.get(f"{url}/admin/glossary", headers=AUTH).json()["revision"]
        upload: dict[str, httpx.Response] = {}

        def upload_second() -> None:
            upload["r"] = httpx.post(f"{url}/admin/glossary", headers=AUTH, timeout=30,
                                     files=[("files", ("extra.csv", second, "text/csv"))])

        uploader = threading.Thread(target=upload_second)
        real_hit = catalog.hit

        def hit(name: str) -> None:
            if name == "glossary.replace":  # the save has listed and stored; the other admin uploads now
                uploader.start()
                uploader.join(1.5)  # with the lock the upload waits for the save instead
            real_hit(name)

        monkeypatch.setattr(catalog, "hit", hit)
        saved = httpx.put(f"{url}/admin/glossary", headers=AUTH, timeout=30, json={
            "base_revision": revision, "entries": [{"term": "AM", "meanings": [{"english": "Account Manager",
                                                                              "chinese": "客户经理"}]}]})
        uploader.join(30)
        assert saved.status_code == 200, saved.text
        assert upload["r"].status_code == 201, upload["r"].text
        assert "extra.csv" in saved.json()["replaced"]
        assert (copy_home / "glossary" / "extra.csv").read_bytes() == second  # the 201 upload is there
        terms = {e["term"] for e in httpx.get(f"{url}/admin/glossary", headers=AUTH).json()["entries"]}
        assert {"AM", "SLA", "KPI"} <= terms


# --- jobs run once: a reaped job's process is stopped -------------------------------------------
def _job_processes(job_id: str) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if job_id.encode() in (proc / "cmdline").read_bytes() and b"Z" != _state(proc):
                    pids.append(int(proc.name))
            except OSError:
                continue
    return pids


def _state(proc: Path) -> bytes:
    return (proc / "stat").read_bytes().rsplit(b")", 1)[-1].split()[0]


def test_a_reaped_job_is_stopped_before_another_starts(copy_home, monkeypatch):
    """The owner stops renewing (hung, or its clock jumped): another worker reaps the job. Its
    process must be gone when the job reads ``failed``, so a rerun never runs beside it."""
    from api.jobs import INTERRUPTED, JobRunner, JobStore
    from config.settings import Settings

    monkeypatch.setenv("KB_FAILPOINTS", "job.start=sleep:120")  # a build that takes its time
    db = copy_home / "jobs.sqlite3"
    runner = JobRunner(JobStore(db, lease_s=1.0), settings=Settings(home=copy_home))
    monkeypatch.setattr(runner, "_heartbeat", lambda job_id, done: None)  # the owner never renews
    job, created = runner.start("reindex", {"full": False})
    assert created
    try:
        deadline = time.time() + 60
        while not _job_processes(job["id"]):
            assert time.time() < deadline, "the job process did not start"
            time.sleep(0.1)
        other = JobStore(db, lease_s=1.0)  # a second worker on the same home
        deadline = time.time() + 10
        while other.reap() == 0:
            assert time.time() < deadline, "the lease never ran out"
            time.sleep(0.2)
        assert other.get(job["id"])["state"] == "failed" and other.get(job["id"])["error"] == INTERRUPTED
        assert _job_processes(job["id"]) == []  # stopped, not only marked
        rerun, created = other.claim("reindex", {}, owner="elsewhere:2")
        assert created and rerun["id"] != job["id"]
        runner.wait(20)
        assert runner.store.get(job["id"])["state"] == "failed"
    finally:
        for pid in _job_processes(job["id"]):
            os.kill(pid, signal.SIGKILL)


def test_a_lease_does_not_follow_the_wall_clock(tmp_path, monkeypatch):
    """Leases are heartbeats seen on a monotonic clock: setting the wall clock an hour forward
    does not expire a live job, and one whose heartbeat stopped expires although the wall clock
    went back."""
    from api import jobs

    store = jobs.JobStore(tmp_path / "jobs.sqlite3", lease_s=0.5)
    job, _ = store.claim("reindex", {}, owner="elsewhere:1")
    real = time.time()
    monkeypatch.setattr(jobs.time, "time", lambda: real + 3600)
    assert store.reap() == 0
    store.renew(job["id"])
    time.sleep(0.3)
    assert store.reap() == 0  # renewed, the hour jump means nothing
    monkeypatch.setattr(jobs.time, "time", lambda: real - 3600)
    time.sleep(0.6)  # no heartbeat for longer than the lease
    assert store.reap() == 1 and store.get(job["id"])["state"] == "failed"


def test_a_reindex_job_process_runs_under_cpu_and_memory_limits(copy_home):
    """A reindex reads every document in its own process; that process gets the CPU-time limit
    (``ingest.reindex_cpu_s``), so a document that spins ends in a failed job, not a stuck one."""
    from api.jobs import JobRunner, JobStore
    from config.settings import IngestSettings, Settings

    settings = Settings(home=copy_home, ingest=IngestSettings(reindex_cpu_s=1, reindex_memory_mb=0))
    runner = JobRunner(JobStore(copy_home / "jobs.sqlite3"), settings=settings)
    job, created = runner.start("reindex", {"full": True})
    assert created
    runner.wait(120)
    done = runner.store.get(job["id"])
    assert done["state"] == "failed" and "signal" in done["error"], done  # SIGXCPU / SIGKILL at the limit
