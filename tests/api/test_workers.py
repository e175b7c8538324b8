"""``kb serve --workers 2`` on one KB_HOME: both workers serve a newly published index without
a restart, a job runs once and survives the restart of the other worker, metrics are summed."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from fakes.servers import free_port, wait_for_url

REPO = Path(__file__).resolve().parents[2]
KEY = "admin-workers-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}
NEW_DOC = "# 班车管理规定\n\n第一条 公司班车每天早上7点30分发车，员工乘车免费。\n".encode("utf-8")


def _pids_serving(url: str, want: int, version: str | None, timeout: float) -> dict[int, str]:
    """Worker pid -> index version, from fresh connections, until ``want`` workers are seen
    (serving ``version`` when given). Bounded in time and count."""
    seen: dict[int, str] = {}
    deadline, n = time.time() + timeout, 0
    while time.time() < deadline and n < 2000:
        n += 1
        h = httpx.get(f"{url}/healthz", headers={"Connection": "close", **AUTH}, timeout=10).json()  # worker: admin only
        seen[h["worker"]] = h["index_version"]
        good = [p for p, v in seen.items() if version is None or v == version]
        if len(good) >= want:
            return seen
        time.sleep(0.02)
    return seen


def test_two_workers_follow_a_newly_published_index(copy_home, tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if k != "KB_FAILPOINTS"}
    env.update(KB_HOME=str(copy_home), KB_LLM__BACKEND="extractive", HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO),
               KB_ADMIN_API_KEY=KEY, KB_API__FOLLOW_INTERVAL_S="0.5",
               KB_FAILPOINTS="index.loaded=sleep:4")  # the build runs long enough to restart a worker
    log = tmp_path / "serve.log"
    with open(log, "wb") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "api.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
                                 "--workers", "2"], env=env, cwd=REPO, stdout=sink, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        wait_for_url(f"{url}/healthz", proc, log, timeout=240)
        before = _pids_serving(url, 2, None, timeout=120)
        assert len(before) == 2, f"only one worker answered: {before}"
        v0 = next(iter(before.values()))

        (copy_home / "documents" / "班车管理规定.md").write_bytes(NEW_DOC)
        job = httpx.post(f"{url}/admin/reindex", headers=AUTH, json={}, timeout=30).json()
        again = httpx.post(f"{url}/admin/reindex", headers=AUTH, json={}, timeout=30).json()
        assert again["id"] == job["id"]  # whichever worker answered: the job runs once

        # Restart the worker that does not own the job: its start-up must leave the job running.
        owner_pid = _owner_pid(copy_home, job["id"])
        other = next((p for p in before if p != owner_pid), None)
        if other is not None:
            os.kill(other, signal.SIGKILL)
        deadline = time.time() + 240
        while job["state"] in ("queued", "running"):
            assert time.time() < deadline, job
            time.sleep(0.5)
            job = httpx.get(f"{url}/admin/jobs/{job['id']}", headers=AUTH).json()
        assert job["state"] == "succeeded", job  # not "interrupted by a server restart"
        v1 = job["result"]["version"]
        assert v1 != v0

        after = _pids_serving(url, 2, v1, timeout=120)
        serving_new = [p for p, v in after.items() if v == v1]
        assert len(serving_new) >= 2, f"not every worker serves {v1}: {after}"

        metrics = httpx.get(f"{url}/metrics", headers=AUTH).text
        workers = int(re.search(r"^kb_workers (\d+)", metrics, re.M).group(1))
        assert workers >= 2, metrics[-500:]
        healthz = sum(int(n) for n in re.findall(r'kb_http_requests_total\{method="GET",path="/healthz",'
                                                  r'status="200"\} (\d+)', metrics))
        assert healthz > 0
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def _owner_pid(home: Path, job_id: str) -> int:
    from api.jobs import JobStore

    owner = JobStore(home / "jobs.sqlite3", recover=False).get(job_id)["owner"] or ""
    pid = owner.rpartition(":")[2]
    return int(pid) if pid.isdigit() else 0
