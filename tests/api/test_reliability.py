"""Serving ownership, leases, retention, access limits: the defects of issue 14 as tests.

No LLM here (the extractive generator); servers on 127.0.0.1 only; every wait bounded.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from fakes.servers import AppServer

KEY = "admin-test-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}
REPO = Path(__file__).resolve().parents[2]


def _settings(home: Path, **api: object):
    from config.settings import APISettings, Settings

    return Settings(home=home, api=APISettings(**api)) if api else Settings(home=home)


def _engine(settings):
    from retrieval.store import IndexStore
    from router.engine import Engine
    from router.llm.extractive import ExtractiveGenerator

    return Engine(settings, IndexStore(settings.home, settings).load(), generator=ExtractiveGenerator())


def clone_version(home: Path, name: str, previous: str | None = None, publish: bool = True) -> str:
    """A new index version: a copy of the current one under ``name`` (cheap: no embedding)."""
    from retrieval.store import IndexStore

    store = IndexStore(home)
    src = store.indexes_dir / store.current_version()
    dst = store.indexes_dir / name
    shutil.copytree(src, dst)
    manifest = json.loads((dst / "manifest.json").read_text(encoding="utf-8"))
    manifest["version"] = name
    manifest["created_at"] = f"2030-01-01T00:00:{len(store.versions()):02d}.000000+00:00"
    manifest.setdefault("build", {})["previous"] = previous or store.current_version()
    (dst / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    if publish:
        store._publish(name)
    return name


def publish_adapter(home: Path, version: str) -> None:
    folder = home / "adapters" / version
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "manifest.json").write_text(json.dumps({"version": version, "metrics": {}}))
    (home / "adapters" / "current").write_text(version + "\n")


# --- one holder, rebuilt from the published pointers ----------------------------------------------
def test_overlapping_reindex_and_adapter_publish_never_revert_each_other(copy_home):
    from api.state import EngineHolder

    settings = _settings(copy_home)
    first = _engine(settings)
    holder = EngineHolder(settings, first)
    v0 = first.index.version
    swaps: list[tuple[str, str]] = []
    holder.listeners.append(lambda old, new: swaps.append((old.index.version, new.index.version)))

    # A reindex publishes v1 while a retrain is running; the retrain then publishes an adapter.
    v1 = clone_version(copy_home, "29990101T000001Z-aaaaaa")
    publish_adapter(copy_home, "v0001")
    assert holder.refresh() is True  # whichever job finishes rebuilds from *both* current pointers
    assert holder.engine.index.version == v1 and holder.serving.adapter == "v0001"
    assert holder.engine.generator is first.generator  # the LLM is never reloaded by a swap
    # The old code rebuilt the router's engine over the engine it started with (v0): nothing
    # here can: a second refresh with unchanged pointers changes nothing.
    assert holder.refresh() is False and holder.engine.index.version == v1
    publish_adapter(copy_home, "v0002")
    assert holder.refresh() is True and holder.engine.index.version == v1 != v0
    assert swaps == [(v0, v1), (v1, v1)]


def test_a_version_that_cannot_load_leaves_the_served_engine(copy_home):
    from api.state import EngineHolder

    settings = _settings(copy_home)
    holder = EngineHolder(settings, _engine(settings))
    served = holder.engine
    bad = copy_home / "indexes" / "29990101T000002Z-bbbbbb"
    bad.mkdir()
    (copy_home / "indexes" / "current").write_text(bad.name + "\n")  # a pointer to a broken folder
    assert holder.refresh() is False and holder.engine is served and "not found" in holder.last_error


def test_every_worker_follows_the_pointer_without_a_restart(copy_home):
    from api.main import create_app

    settings = _settings(copy_home, follow_interval_s=0.2)
    with AppServer(create_app(settings, engine=_engine(settings))) as url:
        v0 = httpx.get(f"{url}/healthz").json()["index_version"]
        v1 = clone_version(copy_home, "29990101T000003Z-cccccc")  # published by someone else
        deadline = time.time() + 20
        while httpx.get(f"{url}/healthz").json()["index_version"] != v1:
            assert time.time() < deadline, "the worker did not follow the current pointer"
            time.sleep(0.2)
        r = httpx.post(f"{url}/api/ask", json={"question": "AM是什么意思？"}, timeout=60)
        assert r.status_code == 200 and r.headers["x-kb-index-version"] == v1 != v0


# --- retention --------------------------------------------------------------------------------------
def test_prune_keeps_the_serving_and_the_previous_version(copy_home):
    from retrieval.store import IndexStore

    store = IndexStore(copy_home)
    v0 = store.current_version()
    names = [clone_version(copy_home, f"29990101T00001{i}Z-00000{i}") for i in range(4)]
    # roll back to the second clone: it is serving, and what it was built on is its previous
    store._publish(names[1])
    (store.indexes_dir / ".building-29990101T000020Z-dead00").mkdir()  # a build killed midway
    stale = store.documents_dir / ".copy-dead"
    stale.write_bytes(b"half a copy")
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    removed = store.prune(keep=2)
    left = store.versions()
    assert names[1] in left and names[0] in left  # serving + its previous, although old
    assert names[3] in left and names[2] in left  # the newest two
    assert v0 in removed and v0 not in left
    assert not list(store.indexes_dir.glob(".building-*")) and not stale.exists()
    assert store.load().version == names[1]


# --- leases: jobs run once, one worker's start-up never fails another's job -------------------------
def test_job_leases_across_workers(tmp_path):
    from api.jobs import INTERRUPTED, JobStore

    db = tmp_path / "jobs.sqlite3"
    worker_a = JobStore(db, lease_s=1.5)
    job, created = worker_a.claim("reindex", {"full": False}, owner="hostA:1")
    assert created
    worker_a.update(job["id"], state="running")
    worker_b = JobStore(db, lease_s=1.5)  # a second worker starts: the live lease is respected
    assert worker_b.interrupted == 0 and worker_b.get(job["id"])["state"] == "running"
    again, created_again = worker_b.claim("reindex", {}, owner="hostB:2")
    assert not created_again and again["id"] == job["id"]  # jobs run once per home
    worker_a.renew(job["id"])
    assert worker_b.reap() == 0
    time.sleep(1.8)  # worker A died: nobody renews
    assert worker_b.reap() == 1
    final = worker_b.get(job["id"])
    assert final["state"] == "failed" and final["error"] == INTERRUPTED
    rerun, created = worker_b.claim("reindex", {}, owner="hostB:2")
    assert created and rerun["id"] != job["id"]  # and it can be rerun


def test_a_job_whose_owner_process_is_gone_is_reaped_at_once(tmp_path):
    import socket

    from api.jobs import JobStore

    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(proc.stdout)
    store = JobStore(tmp_path / "jobs.sqlite3", lease_s=600)
    job, _ = store.claim("retrain", {}, owner=f"{socket.gethostname()}:{dead_pid}")
    assert store.reap() == 1 and store.get(job["id"])["state"] == "failed"


def test_claim_is_exclusive_under_concurrency(tmp_path):
    from api.jobs import JobStore

    db = tmp_path / "jobs.sqlite3"
    JobStore(db)
    created: list[bool] = []

    def go(i: int) -> None:
        created.append(JobStore(db, recover=False).claim("reindex", {}, owner=f"h:{i}")[1])

    threads = [threading.Thread(target=go, args=(i,)) for i in range(8)]
    [t.start() for t in threads]
    [t.join(10) for t in threads]
    assert sorted(created) == [False] * 7 + [True]


# --- health says what is really routing ----------------------------------------------------------
def test_healthz_reports_the_rule_fallback_when_the_adapter_failed(copy_home, tmp_path):
    from api.main import create_app
    from router.lora import LoRARouter
    from router.routes import default_routes

    settings = _settings(copy_home)
    engine = _engine(settings)
    broken = LoRARouter(default_routes(settings.router), base_gguf=tmp_path / "missing.gguf",
                        adapter_gguf=tmp_path / "missing-adapter.gguf")
    assert broken.llm is None
    engine.router = broken
    with AppServer(create_app(settings, engine=engine)) as url:
        health = httpx.get(f"{url}/healthz").json()
    assert health["router"] == "signals" and health["router_configured"] == "lora"
    assert health["status"] == "degraded" and "not a file" in health["router_reason"]


# --- access -----------------------------------------------------------------------------------------
def test_failed_key_attempts_are_limited_per_client(copy_home, monkeypatch):
    from api.main import create_app

    monkeypatch.setenv("KB_ADMIN_API_KEY", KEY)
    monkeypatch.setenv("KB_CHAT_API_KEY", "chat-key-0123456789")
    settings = _settings(copy_home, max_auth_failures=3, auth_window_s=60)
    with AppServer(create_app(settings, engine=_engine(settings))) as url:
        assert httpx.get(f"{url}/v1/models").status_code == 401  # the optional chat key is enforced
        assert httpx.get(f"{url}/v1/models", headers={"X-API-Key": "chat-key-0123456789"}).status_code == 200
        codes = [httpx.get(f"{url}/admin/jobs", headers={"X-API-Key": f"guess{i}"}).status_code for i in range(4)]
        assert codes == [401, 401, 401, 429]  # admin failures are counted apart from the chat failure above
        blocked = httpx.get(f"{url}/admin/jobs", headers={"X-API-Key": "guess9"})
        assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) >= 1
        assert httpx.get(f"{url}/admin/jobs", headers=AUTH).status_code == 200  # the right key is never locked out
        assert httpx.get(f"{url}/healthz").status_code == 200  # unkeyed endpoints stay open


def test_cors_is_off_by_default_and_on_when_configured(copy_home):
    from api.main import create_app

    preflight = {"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    settings = _settings(copy_home)
    with AppServer(create_app(settings, engine=_engine(settings))) as url:
        r = httpx.options(f"{url}/api/ask", headers=preflight)
        assert "access-control-allow-origin" not in r.headers
        r = httpx.get(f"{url}/healthz", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in r.headers
    settings = _settings(copy_home, cors_origins=["https://intranet.example"])
    with AppServer(create_app(settings, engine=_engine(settings))) as url:
        r = httpx.options(f"{url}/api/ask", headers={**preflight, "Origin": "https://intranet.example"})
        assert r.headers.get("access-control-allow-origin") == "https://intranet.example"


def test_serve_refuses_a_public_address_without_an_admin_key(copy_home):
    env = {k: v for k, v in os.environ.items() if k not in ("KB_ADMIN_API_KEY",)}
    env.update(KB_HOME=str(copy_home), KB_LLM__BACKEND="extractive", PYTHONPATH=str(REPO))
    # Nothing is bound: the check runs before the server starts.
    proc = subprocess.run([sys.executable, "-m", "api.cli", "serve", "--host", "0.0.0.0", "--port", "1"],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    assert proc.returncode == 1 and "refusing to serve on 0.0.0.0 without KB_ADMIN_API_KEY" in proc.stderr
    from api.main import check_bind
    from config.settings import APISettings, Settings

    check_bind("::1", Settings())
    check_bind("0.0.0.0", Settings(api=APISettings(allow_insecure_bind=True)))  # told explicitly


def test_keys_and_document_contents_never_reach_the_logs(copy_home, monkeypatch, caplog, capfd):
    import logging

    from api.main import create_app

    secret_text = "机密条款XQ7：年度奖金池为每人8888元，由董事会审批。"
    wrong_key = "wrong-admin-key-LEAKCHECK-42"
    chat_key = "chat-key-LEAKCHECK-0123456789"
    monkeypatch.setenv("KB_ADMIN_API_KEY", KEY)
    monkeypatch.setenv("KB_CHAT_API_KEY", chat_key)
    caplog.set_level(logging.DEBUG)
    settings = _settings(copy_home)
    with AppServer(create_app(settings, engine=_engine(settings))) as url:
        assert httpx.get(f"{url}/admin/jobs", headers={"Authorization": f"Bearer {wrong_key}"}).status_code == 401
        up = httpx.post(f"{url}/admin/documents", headers=AUTH,
                        files=[("files", ("奖金.md", f"# 奖金\n\n{secret_text}\n".encode(), "text/markdown"))])
        assert up.status_code == 201
        job = httpx.post(f"{url}/admin/reindex", headers=AUTH, json={}).json()
        deadline = time.time() + 240
        while job["state"] in ("queued", "running"):
            assert time.time() < deadline, job
            time.sleep(0.5)
            job = httpx.get(f"{url}/admin/jobs/{job['id']}", headers=AUTH).json()
        assert job["state"] == "succeeded", job
        r = httpx.post(f"{url}/api/ask", headers={"X-API-Key": chat_key}, json={"question": "年度奖金池是多少？"},
                       timeout=60)
        assert r.status_code == 200 and "8888" in r.json()["answer"]  # the content is served ...
    out, err = capfd.readouterr()
    logged = caplog.text + out + err + json.dumps(job["log_tail"], ensure_ascii=False)
    for needle in (KEY, wrong_key, chat_key, "机密条款XQ7", "8888元", "年度奖金池为每人"):
        assert needle not in logged, needle  # ... but never logged
    assert "/api/ask" in caplog.text  # the access log did run


@pytest.mark.parametrize("module", ["knowledge.failpoints", "knowledge.injection", "router.llm.llama_batch",
                                    "api.deps", "api.main", "router.llm.llama_cpp"])
def test_doctests(module):
    import doctest
    import importlib

    assert doctest.testmod(importlib.import_module(module)).failed == 0
