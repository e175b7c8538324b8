"""Admin API end to end: a real uvicorn server on 127.0.0.1 over a private copy of the demo KB,
an Engine with the real extractive generator, real index builds and hot swaps."""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from fakes.servers import AppServer

KEY = "admin-test-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}
PARKING_DOC = ("# 停车管理规定\n\n"
               "第一条 员工在公司地下停车场停车的，停车费为每月150元，由财务部从当月工资中扣除。\n\n"
               "第二条 访客车辆停车免费，每次最长停放4小时。\n").encode("utf-8")
PARKING_Q = "员工停车费每月多少钱？"


def _settings(home: Path, **ingest: Any) -> Any:
    from config.settings import IngestSettings, Settings

    return Settings(home=home, ingest=IngestSettings(**ingest)) if ingest else Settings(home=home)


def _app(home: Path, **ingest: Any) -> Any:
    from api.main import create_app
    from retrieval.store import IndexStore
    from router.engine import Engine
    from router.llm.extractive import ExtractiveGenerator

    settings = _settings(home, **ingest)
    engine = Engine(settings, IndexStore(home, settings).load(), generator=ExtractiveGenerator())
    return create_app(settings, engine=engine)


@pytest.fixture()
def admin_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KB_ADMIN_API_KEY", KEY)


def _poll(url: str, job_id: str, timeout: float = 180) -> dict[str, Any]:
    deadline = time.time() + timeout
    while time.time() < deadline:
        job = httpx.get(f"{url}/admin/jobs/{job_id}", headers=AUTH).json()
        if job["state"] not in ("queued", "running"):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} still running after {timeout}s: {job}")


def _wait_for(cond: Any, timeout: float = 30) -> None:
    deadline = time.time() + timeout
    while not cond():
        if time.time() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)


class _Load:
    """Background chat traffic: bounded count and time; records every failure."""

    def __init__(self, url: str, max_requests: int = 3000, max_seconds: float = 400) -> None:
        self.url, self.max_requests, self.max_seconds = url, max_requests, max_seconds
        self.stop = threading.Event()
        self.done, self.failures, self.versions_seen = 0, [], set()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        end = time.time() + self.max_seconds
        questions = ["AM是什么意思？", "出差住宿标准是多少？", PARKING_Q]
        with httpx.Client(timeout=30) as client:
            while not self.stop.is_set() and self.done < self.max_requests and time.time() < end:
                q = questions[self.done % len(questions)]
                try:
                    r = client.post(f"{self.url}/api/ask", json={"question": q})
                    if r.status_code != 200 or "answer" not in r.json():
                        self.failures.append((q, r.status_code, r.text[:200]))
                except Exception as exc:  # any transport error during the swap is a failure
                    self.failures.append((q, type(exc).__name__, str(exc)))
                self.done += 1
                self.stop.wait(0.05)  # a steady stream, not a flood: the count bound outlasts a slow reindex

    def __enter__(self) -> "_Load":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=40)


# --- upload → reindex → hot swap under load ------------------------------------------------
def test_upload_reindex_hot_swaps_while_serving(copy_home, admin_env, caplog):
    caplog.set_level(logging.INFO, logger="kb.api.access")
    with AppServer(_app(copy_home)) as url:
        v0 = httpx.get(f"{url}/healthz").json()["index_version"]
        before = httpx.post(f"{url}/api/ask", json={"question": PARKING_Q}, timeout=60).json()
        assert "150" not in before["answer"]

        with _Load(url) as load:
            _wait_for(lambda: load.done >= 1)  # traffic is flowing before anything changes
            up = httpx.post(f"{url}/admin/documents", headers=AUTH,
                            files=[("files", ("停车管理规定.md", PARKING_DOC, "text/markdown"))])
            assert up.status_code == 201, up.text
            assert up.json()["stored"][0]["name"] == "停车管理规定.md"
            assert (copy_home / "documents" / "停车管理规定.md").read_bytes() == PARKING_DOC

            r = httpx.post(f"{url}/admin/reindex", headers=AUTH, json={"full": False})
            assert r.status_code == 202, r.text
            job = _poll(url, r.json()["id"])
            n = load.done
            _wait_for(lambda: load.done >= n + 3, timeout=120)  # and goes on over the swapped engine
        assert job["state"] == "succeeded", job
        assert job["progress"] == 100 and job["result"]["previous"] == v0
        assert "停车管理规定.md" in job["result"]["report"]["added"]
        assert any("serving" in line for line in job["log_tail"])
        assert load.done >= 4 and not load.failures, (load.done, load.failures[:3])

        v1 = httpx.get(f"{url}/healthz").json()["index_version"]
        assert v1 == job["result"]["version"] != v0
        after = httpx.post(f"{url}/api/ask", json={"question": PARKING_Q}, timeout=60).json()
        assert "150" in after["answer"], after
        assert any(c["source"] == "停车管理规定.md" for c in after["citations"])

        metrics = httpx.get(f"{url}/metrics", headers=AUTH).text
        assert 'kb_http_requests_total{method="POST",path="/api/ask",status="200"}' in metrics
        assert 'kb_jobs_total{kind="reindex",state="succeeded"} 1' in metrics
        assert "kb_http_request_duration_seconds_bucket" in metrics
        assert "kb_verification_total{status=" in metrics and "kb_answers_total{route=" in metrics

    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "kb.api.access"]
    asks = [line for line in lines if line["path"] == "/api/ask"]
    assert asks and set(asks[0]) >= {"method", "path", "status", "route", "latency_ms", "verification"}
    assert asks[0]["route"] in ("glossary", "fact", "rag", "refuse")


# --- a failing build leaves the old index serving -------------------------------------------
def test_failed_reindex_keeps_the_old_index(copy_home, admin_env, monkeypatch):
    """A full disk while the version is half written (an injected ENOSPC in the job process)."""
    from retrieval.store import IndexStore

    monkeypatch.setenv("KB_FAILPOINTS", "index.loaded=sleep:2,index.write=enospc")
    with AppServer(_app(copy_home)) as url:
        v0 = httpx.get(f"{url}/healthz").json()["index_version"]
        first = httpx.post(f"{url}/admin/reindex", headers=AUTH).json()
        second = httpx.post(f"{url}/admin/reindex", headers=AUTH, json={"full": True}).json()
        assert second["id"] == first["id"]  # the running job, not a duplicate
        job = _poll(url, first["id"])
        assert job["state"] == "failed" and "No space left on device" in job["error"], job
        assert not list((copy_home / "indexes").glob(".building-*"))  # the half-built folder is gone
        assert httpx.get(f"{url}/healthz").json()["index_version"] == v0
        assert IndexStore(copy_home).current_version() == v0
        ok = httpx.post(f"{url}/api/ask", json={"question": "AM是什么意思？"}, timeout=60)
        assert ok.status_code == 200 and "客户经理" in ok.json()["answer"]
        # cancelling a finished job changes nothing; unknown jobs are 404
        assert httpx.post(f"{url}/admin/jobs/{job['id']}/cancel", headers=AUTH).json()["state"] == "failed"
        assert httpx.get(f"{url}/admin/jobs/nosuchjob", headers=AUTH).status_code == 404
        listed = httpx.get(f"{url}/admin/jobs", headers=AUTH).json()["jobs"]
        assert [j["id"] for j in listed] == [job["id"]]
        assert 'kb_jobs_total{kind="reindex",state="failed"} 1' in httpx.get(f"{url}/metrics", headers=AUTH).text


# --- auth ---------------------------------------------------------------------------------------
def test_admin_api_disabled_without_key(copy_home, monkeypatch):
    monkeypatch.delenv("KB_ADMIN_API_KEY", raising=False)
    with AppServer(_app(copy_home)) as url:
        r = httpx.post(f"{url}/admin/reindex", headers=AUTH)
        assert r.status_code == 403
        assert r.json()["detail"] == "admin API disabled: set KB_ADMIN_API_KEY"
        assert httpx.get(f"{url}/admin/jobs").status_code == 403


def test_admin_key_required(copy_home, admin_env):
    with AppServer(_app(copy_home)) as url:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"X-API-Key": KEY[:-1]},
                        {"Authorization": KEY}):
            r = httpx.get(f"{url}/admin/jobs", headers=headers)
            assert r.status_code == 401 and r.json()["detail"] == "unauthorized", headers
        up = httpx.post(f"{url}/admin/documents", files=[("files", ("a.md", b"# hi", "text/markdown"))])
        assert up.status_code == 401
        assert not (copy_home / "documents" / "a.md").exists()
        assert httpx.get(f"{url}/admin/jobs", headers={"X-API-Key": KEY}).status_code == 200
        assert httpx.get(f"{url}/admin/jobs", headers=AUTH).status_code == 200


# --- uploads: names, sizes, content ------------------------------------------------------------
def test_upload_rejections_and_sanitising(copy_home, admin_env):
    docs = copy_home / "documents"
    before = set(p.name for p in docs.iterdir())
    with AppServer(_app(copy_home, max_file_mb=0.01)) as url:   # 10 KiB limit
        def post(name: str, data: bytes, endpoint: str = "documents") -> httpx.Response:
            return httpx.post(f"{url}/admin/{endpoint}", headers=AUTH, files=[("files", (name, data))])

        r = post("../../evil.md", "# 规定\n\n内容。".encode())
        assert r.status_code == 201, r.text
        assert r.json()["stored"][0]["name"] == "evil.md"
        assert (docs / "evil.md").is_file()
        assert not (copy_home.parent / "evil.md").exists() and not (copy_home / "evil.md").exists()
        # raw multipart: clients percent-encode odd names, an attacker need not
        raw = ('--XB\r\nContent-Disposition: form-data; name="files"; filename="/etc/\u202epass\x07wd.txt"\r\n'
               'Content-Type: text/plain\r\n\r\nplain text\r\n--XB--\r\n').encode("utf-8")
        odd = httpx.post(f"{url}/admin/documents", content=raw,
                         headers={**AUTH, "Content-Type": "multipart/form-data; boundary=XB"})
        assert odd.status_code == 201 and odd.json()["stored"][0]["name"] == "passwd.txt", odd.text
        assert post("..", b"x").status_code == 422

        big = post("big.txt", b"a" * (11 * 1024))
        assert big.status_code == 413 and "limit" in big.json()["detail"]
        fake_pdf = post("report.pdf", "这不是PDF，只是文字。".encode())
        assert fake_pdf.status_code == 415 and "does not match" in fake_pdf.json()["detail"]
        fake_docx = post("memo.docx", b"%PDF-1.7\n...")
        assert fake_docx.status_code == 415
        assert post("binary.txt", bytes(range(256)) * 4).status_code == 415
        assert post("script.exe", b"MZ\x90\x00").status_code == 415
        # all-or-nothing: one bad file stores none of the request
        mixed = httpx.post(f"{url}/admin/documents", headers=AUTH,
                           files=[("files", ("good.md", b"# ok")), ("files", ("bad.pdf", b"text"))])
        assert mixed.status_code == 415 and not (docs / "good.md").exists()
        assert set(p.name for p in docs.iterdir()) == before | {"evil.md", "passwd.txt"}
        assert not any((copy_home / ".uploads").iterdir())

        g = post("terms.csv", "缩略语,英文全称,中文解释\nZQX,Zebra Quality eXchange,斑马质量交换\n".encode(), "glossary")
        assert g.status_code == 201, g.text
        assert (copy_home / "glossary" / "terms.csv").is_file()
        assert post("terms.pdf", b"%PDF-1.4", "glossary").status_code == 415

        assert httpx.delete(f"{url}/admin/documents/evil.md", headers=AUTH).status_code == 200
        assert not (docs / "evil.md").exists()
        assert httpx.delete(f"{url}/admin/documents/evil.md", headers=AUTH).status_code == 404
        assert httpx.delete(f"{url}/admin/documents/..%2F..%2Fjobs.sqlite3", headers=AUTH).status_code in (400, 404)
        assert (copy_home / "jobs.sqlite3").is_file()


# --- retrain, restart, cancellation -----------------------------------------------------------
def test_retrain_runs_distill_then_train_and_can_be_cancelled(copy_home, admin_env):
    from api.jobs import RETRAIN_STEPS, retrain_commands

    assert [cmd[-1] for cmd in retrain_commands()] == list(RETRAIN_STEPS) == ["distill", "train"]
    with AppServer(_app(copy_home)) as url:
        job_id = httpx.post(f"{url}/admin/retrain", headers=AUTH).json()["id"]

        def distilling() -> bool:
            job = httpx.get(f"{url}/admin/jobs/{job_id}", headers=AUTH).json()
            return job["state"] == "running" and any("running kb distill" in line for line in job["log_tail"])

        try:
            _wait_for(distilling, timeout=240)  # the real `kb distill` subprocess has started
        except AssertionError:
            raise AssertionError(httpx.get(f"{url}/admin/jobs/{job_id}", headers=AUTH).json()) from None
        assert httpx.post(f"{url}/admin/jobs/{job_id}/cancel", headers=AUTH).status_code in (200, 202)
        job = _poll(url, job_id)
    assert job["state"] == "cancelled", job
    assert job["kind"] == "retrain"


def test_restart_marks_running_jobs_failed(copy_home, admin_env):
    from api.jobs import INTERRUPTED, JobStore

    store = JobStore(copy_home / "jobs.sqlite3")
    running = store.create("reindex", {"full": True})
    store.update(running["id"], state="running", progress=40.0)
    done = store.create("reindex", {})
    store.update(done["id"], state="succeeded", result={"version": "v"})
    with AppServer(_app(copy_home)) as url:   # the server's startup is the "restart"
        job = httpx.get(f"{url}/admin/jobs/{running['id']}", headers=AUTH).json()
        assert job["state"] == "failed" and job["error"] == INTERRUPTED and job["params"] == {"full": True}
        assert httpx.get(f"{url}/admin/jobs/{done['id']}", headers=AUTH).json()["state"] == "succeeded"
    again = JobStore(copy_home / "jobs.sqlite3")
    assert again.interrupted == 0 and again.get(done["id"])["result"] == {"version": "v"}


def test_cancel_is_cooperative(tmp_path):
    from api.jobs import JobRunner, JobStore

    outcomes: list[tuple[str, str]] = []
    runner = JobRunner(JobStore(tmp_path / "jobs.sqlite3"), on_finish=lambda k, s: outcomes.append((k, s)))
    started = threading.Event()

    def body(ctx):
        for i in range(200):
            ctx.check_cancelled()
            ctx.progress(i / 2, f"stage {i}") if i % 20 == 0 else None
            started.set()
            time.sleep(0.02)
        return {"finished": True}

    job, created = runner.submit("reindex", {}, body)
    assert created and started.wait(5)
    again, created_again = runner.submit("reindex", {}, body)
    assert again["id"] == job["id"] and not created_again
    runner.cancel(job["id"])
    runner.wait(5)
    final = runner.store.get(job["id"])
    assert final["state"] == "cancelled" and final["cancel_requested"] and final["result"] is None
    assert outcomes == [("reindex", "cancelled")]
