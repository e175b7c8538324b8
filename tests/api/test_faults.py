"""Faults: ``kill -9`` of build jobs, of the server and of ingest/publish processes at random
stage boundaries, and a full disk. After each: the previously published version serves, no
half-built artifact is ever loaded, the job is failed and can be rerun, nothing already
ingested is lost.

Kill points are the named failpoints of :mod:`knowledge.failpoints` (the process SIGKILLs
itself there, exactly as ``kill -9`` would) plus a kill of the server at a random moment of
a running reindex. The points are drawn at random; the seed is printed (``KB_FAULT_SEED``
replays a run).
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from fakes.servers import free_port, wait_for_url

pytestmark = pytest.mark.faults
REPO = Path(__file__).resolve().parents[2]
KEY = "admin-fault-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}
SEED = int(os.environ.get("KB_FAULT_SEED") or time.time())
BUILD_POINTS = ["index.loaded", "index.embedded", "index.write", "index.validated", "index.before_publish"]
NEW_DOC = "# 班车管理规定\n\n第一条 公司班车每天早上7点30分发车，员工乘车免费。\n".encode("utf-8")


def _fingerprint(home: Path) -> dict[str, str]:
    """sha256 of every ingested document and glossary file."""
    out = {}
    for sub in ("documents", "glossary"):
        for p in sorted((home / sub).rglob("*")):
            if p.is_file() and not p.name.startswith("."):
                out[p.relative_to(home).as_posix()] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "KB_FAILPOINTS"}
    env.update(KB_HOME=str(home), KB_LLM__BACKEND="extractive", HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO),
               KB_ADMIN_API_KEY=KEY, **extra)
    return env


def _runner(home: Path, monkeypatch: pytest.MonkeyPatch, failpoints: str | None):
    from api.jobs import JobRunner, JobStore
    from config.settings import Settings

    if failpoints:
        monkeypatch.setenv("KB_FAILPOINTS", failpoints)
    else:
        monkeypatch.delenv("KB_FAILPOINTS", raising=False)
    return JobRunner(JobStore(home / "jobs.sqlite3"), settings=Settings(home=home))


def _run_job(runner, kind: str = "reindex", timeout: float = 240) -> dict:
    job, created = runner.start(kind, {"full": False})
    assert created
    runner.wait(timeout)
    return runner.store.get(job["id"])


def test_kill_9_of_the_build_job_at_random_stages(copy_home, monkeypatch, capsys):
    from retrieval.store import IndexStore

    rng = random.Random(SEED)
    points = ["index.write"] + rng.sample([p for p in BUILD_POINTS if p != "index.write"], 1)
    with capsys.disabled():
        print(f"\nfault seed {SEED}: killing the build job at {points}")
    store = IndexStore(copy_home)
    v0 = store.current_version()
    (copy_home / "documents" / "班车管理规定.md").write_bytes(NEW_DOC)
    before = _fingerprint(copy_home)
    for point in points:
        job = _run_job(_runner(copy_home, monkeypatch, f"{point}=kill"))
        assert job["state"] == "failed" and "signal 9" in job["error"], (point, job)
        assert store.current_version() == v0, point  # the previous version still published
        assert store.load().version == v0  # and loads; a half-built folder is never a version
        assert all(not v.startswith(".") for v in store.versions())
        assert _fingerprint(copy_home) == before  # nothing ingested was lost
    job = _run_job(_runner(copy_home, monkeypatch, None))  # the same job kind can be rerun
    assert job["state"] == "succeeded", job
    v1 = store.current_version()
    assert v1 != v0 and "班车管理规定.md" in store.load().manifest["documents"]
    assert not list(store.indexes_dir.glob(".building-*"))  # the rerun's prune removed the leftovers


def test_kill_9_after_publishing_serves_the_complete_new_version(copy_home, monkeypatch):
    from retrieval.store import IndexStore

    (copy_home / "documents" / "班车管理规定.md").write_bytes(NEW_DOC)
    job = _run_job(_runner(copy_home, monkeypatch, "index.published=kill"))
    assert job["state"] == "failed"
    store = IndexStore(copy_home)
    index = store.load()  # the pointer switched: the new version is complete and validated
    assert "班车管理规定.md" in index.manifest["documents"] and len(index.chunks) > 0


def _serve(home: Path, log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    with open(log, "ab") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "api.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
                                env=_env(home, KB_API__FOLLOW_INTERVAL_S="0.5"), cwd=REPO, stdout=sink,
                                stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    wait_for_url(f"{url}/healthz", proc, log, timeout=180)
    return proc, url


def _job_processes(job_id: str) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if job_id.encode() in (proc / "cmdline").read_bytes():
                    pids.append(int(proc.name))
            except OSError:
                continue
    return pids


def test_kill_9_of_the_server_during_a_reindex(copy_home, tmp_path, capsys):
    rng = random.Random(SEED)
    (copy_home / "documents" / "班车管理规定.md").write_bytes(NEW_DOC)
    before = _fingerprint(copy_home)
    log = tmp_path / "server.log"
    proc, url = _serve(copy_home, log)
    try:
        v0 = httpx.get(f"{url}/healthz").json()["index_version"]
        job = httpx.post(f"{url}/admin/reindex", headers=AUTH, json={"full": True}, timeout=30).json()
        deadline = time.time() + 60
        while not _job_processes(job["id"]):
            assert time.time() < deadline, "the job process did not start"
            time.sleep(0.1)
        delay = rng.uniform(0.5, 3.0)
        with capsys.disabled():
            print(f"\nfault seed {SEED}: kill -9 of the server {delay:.1f} s into the reindex")
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        deadline = time.time() + 20
        while _job_processes(job["id"]):  # the job process dies with its server (no orphan build)
            assert time.time() < deadline, "the job process outlived its server"
            time.sleep(0.2)
    finally:
        if proc.poll() is None:
            proc.kill()
    proc, url = _serve(copy_home, log)  # restart
    try:
        health = httpx.get(f"{url}/healthz").json()
        assert health["index_version"] == v0 and health["status"] == "ok"
        failed = httpx.get(f"{url}/admin/jobs/{job['id']}", headers=AUTH).json()
        assert failed["state"] == "failed" and failed["error"] == "interrupted by a server restart", failed
        assert _fingerprint(copy_home) == before
        rerun = httpx.post(f"{url}/admin/reindex", headers=AUTH, json={"full": False}, timeout=30).json()
        assert rerun["id"] != job["id"]
        deadline = time.time() + 240
        while rerun["state"] in ("queued", "running"):
            assert time.time() < deadline, rerun
            time.sleep(0.5)
            rerun = httpx.get(f"{url}/admin/jobs/{rerun['id']}", headers=AUTH).json()
        assert rerun["state"] == "succeeded", rerun
        assert httpx.get(f"{url}/healthz").json()["index_version"] == rerun["result"]["version"] != v0
        from retrieval.store import IndexStore

        assert "班车管理规定.md" in IndexStore(copy_home).load().manifest["documents"]
        assert httpx.post(f"{url}/api/ask", json={"question": "公司班车每天几点发车？"}, timeout=60).status_code == 200
    finally:
        proc.terminate()
        proc.wait(20)


def test_kill_9_during_ingest_loses_nothing(copy_home):
    doc = next(p for p in sorted((copy_home / "documents").iterdir()) if p.suffix == ".md")
    before = _fingerprint(copy_home)
    replacement = copy_home.parent / doc.name
    replacement.write_bytes(b"# replaced\n\nnew content\n")
    proc = subprocess.run([sys.executable, "-m", "api.cli", "ingest", "--no-index", str(replacement)],
                          env=_env(copy_home, KB_FAILPOINTS="ingest.copy=kill"), cwd=REPO, capture_output=True,
                          timeout=180)
    assert proc.returncode == -signal.SIGKILL
    assert _fingerprint(copy_home) == before  # the old document is whole; the half copy is hidden
    assert list((copy_home / "documents").glob(".copy-*"))  # (left over, skipped by builds, pruned later)


def test_kill_9_during_adapter_publish_keeps_the_published_adapter(copy_home, tmp_path):
    script = (
        "import sys; sys.path.insert(0, 'tests')\n"
        "from pathlib import Path\n"
        "from fakes.adapters import zero_lora_adapter\n"
        "from router.adapters import AdapterStore\n"
        f"store = AdapterStore({str(copy_home)!r})\n"
        f"v = store.add(zero_lora_adapter(Path({str(tmp_path)!r}) / sys.argv[1]), {{'route_accuracy': 1.0}})\n"
        "store.publish(v)\n"
        "print(v)\n"
    )
    from api.state import published
    from router.adapters import AdapterStore

    ok = subprocess.run([sys.executable, "-c", script, "a1"], env=_env(copy_home), cwd=REPO, capture_output=True,
                        text=True, timeout=180)
    assert ok.returncode == 0, ok.stderr
    first = ok.stdout.strip()
    store = AdapterStore(copy_home)
    for point in ("adapter.copied", "adapter.publish"):
        killed = subprocess.run([sys.executable, "-c", script, point], env=_env(copy_home, KB_FAILPOINTS=f"{point}=kill"),
                                cwd=REPO, capture_output=True, timeout=180)
        assert killed.returncode == -signal.SIGKILL, killed.stderr
        assert store.current() == first and published(copy_home).adapter == first, point
        assert all((store.root / v / "manifest.json").is_file() for v in store.version_names())
    again = subprocess.run([sys.executable, "-c", script, "a2"], env=_env(copy_home), cwd=REPO, capture_output=True,
                           text=True, timeout=180)
    assert again.returncode == 0 and store.current() == again.stdout.strip() != first  # rerun works


def test_a_full_disk_fails_the_build_cleanly(copy_home):
    """A real write error: the build process may write files of at most 64 KiB (RLIMIT_FSIZE)."""
    from retrieval.store import IndexStore

    store = IndexStore(copy_home)
    v0 = store.current_version()
    (copy_home / "documents" / "班车管理规定.md").write_bytes(NEW_DOC)
    code = ("import resource, signal, sys\n"
            "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
            "resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))\n"
            "from api.cli import main\n"
            "sys.exit(main(['index', '--full']))\n")
    proc = subprocess.run([sys.executable, "-c", code], env=_env(copy_home), cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode != 0
    assert "File too large" in proc.stderr or "No space" in proc.stderr, proc.stderr[-2000:]
    assert store.current_version() == v0 and store.load().version == v0
    assert not list(store.indexes_dir.glob(".building-*"))  # cleaned up on the way out
