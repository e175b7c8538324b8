"""Admin jobs: a small SQLite job store, a background runner, and the reindex / retrain bodies.

A job is one row in ``KB_HOME/jobs.sqlite3`` (state, progress, log tail, result, error), so
``GET /admin/jobs/{id}`` works after a restart. Jobs run in a daemon thread of the serving
process; at most one job of each kind runs at a time (a second request for the same kind gets
the running job back). A process that dies mid-job leaves a ``running`` row behind: the next
:class:`JobStore` marks it failed ("interrupted by a server restart") when the server starts.

Cancellation is cooperative: :meth:`JobContext.check_cancelled` is called between stages and
raises :class:`JobCancelled`; a stage that has started (an index build) runs to its end.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from knowledge.errors import KBError

log = logging.getLogger("kb.api.jobs")

STATES = ("queued", "running", "succeeded", "failed", "cancelled")
ACTIVE = ("queued", "running")
LOG_TAIL = 200  # lines kept per job; older lines are dropped
INTERRUPTED = "interrupted by a server restart"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    state TEXT NOT NULL,
    progress REAL NOT NULL DEFAULT 0,
    params TEXT NOT NULL DEFAULT '{}',
    result TEXT,
    error TEXT,
    log TEXT NOT NULL DEFAULT '[]',
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL
)
"""
_JSON_COLUMNS = ("params", "result", "log")


class JobCancelled(KBError):
    """Raised inside a job body when cancellation was requested."""


class JobStore:
    """Job rows in one SQLite file; safe to use from several threads (one connection per call)."""

    def __init__(self, path: Path | str, recover: bool = True):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(_SCHEMA)
        self.interrupted = self.mark_interrupted() if recover else 0

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=10)
        db.row_factory = sqlite3.Row
        return db

    def _write(self, sql: str, args: tuple[Any, ...]) -> int:
        with self._lock, self._connect() as db:
            return db.execute(sql, args).rowcount

    def create(self, kind: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        job_id = uuid.uuid4().hex[:16]
        self._write("INSERT INTO jobs (id, kind, state, params, created_at) VALUES (?, ?, 'queued', ?, ?)",
                    (job_id, kind, json.dumps(params or {}, ensure_ascii=False), time.time()))
        return self.get(job_id)  # type: ignore[return-value]

    def get(self, job_id: str) -> dict[str, Any] | None:
        with self._connect() as db:
            row = db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return _row(row) if row else None

    def list(self, limit: int = 50, kind: str | None = None) -> list[dict[str, Any]]:
        sql, args = "SELECT * FROM jobs", ()
        if kind:
            sql, args = sql + " WHERE kind = ?", (kind,)
        with self._connect() as db:
            rows = db.execute(sql + " ORDER BY created_at DESC LIMIT ?", (*args, limit)).fetchall()
        return [_row(r) for r in rows]

    def update(self, job_id: str, **fields: Any) -> None:
        unknown = set(fields) - {"state", "progress", "result", "error", "started_at", "finished_at",
                                 "cancel_requested"}
        if unknown:
            raise KBError(f"unknown job fields {sorted(unknown)}")
        if "state" in fields and fields["state"] not in STATES:
            raise KBError(f"unknown job state {fields['state']!r}; known: {STATES}")
        values = [json.dumps(v, ensure_ascii=False, default=str) if k in _JSON_COLUMNS else v
                  for k, v in fields.items()]
        sets = ", ".join(f"{k} = ?" for k in fields)
        self._write(f"UPDATE jobs SET {sets} WHERE id = ?", (*values, job_id))

    def append_log(self, job_id: str, line: str) -> None:
        with self._lock, self._connect() as db:
            row = db.execute("SELECT log FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                return
            lines = json.loads(row["log"])[-(LOG_TAIL - 1):] + [line]
            db.execute("UPDATE jobs SET log = ? WHERE id = ?", (json.dumps(lines, ensure_ascii=False), job_id))

    def mark_interrupted(self) -> int:
        """Fail every job a previous process left queued or running; returns how many."""
        return self._write(
            "UPDATE jobs SET state = 'failed', error = ?, finished_at = ? WHERE state IN ('queued', 'running')",
            (INTERRUPTED, time.time()))


def _row(row: sqlite3.Row) -> dict[str, Any]:
    job = dict(row)
    for key in _JSON_COLUMNS:
        job[key] = json.loads(job[key]) if job[key] is not None else None
    job["cancel_requested"] = bool(job["cancel_requested"])
    return job


class JobContext:
    """What a job body sees: logging, progress and the cancellation flag."""

    def __init__(self, store: JobStore, job_id: str):
        self.store, self.job_id = store, job_id
        self.cancel_event = threading.Event()

    def log(self, message: str) -> None:
        stamp = time.strftime("%H:%M:%S")
        self.store.append_log(self.job_id, f"{stamp} {message}")
        log.info("job %s: %s", self.job_id, message)

    def progress(self, percent: float, message: str | None = None) -> None:
        self.store.update(self.job_id, progress=max(0.0, min(100.0, float(percent))))
        if message:
            self.log(message)

    def check_cancelled(self) -> None:
        if self.cancel_event.is_set():
            raise JobCancelled(f"job {self.job_id} cancelled on request")


JobBody = Callable[[JobContext], dict[str, Any] | None]


class JobRunner:
    """Starts job bodies in background threads, one running job per kind."""

    def __init__(self, store: JobStore, on_finish: Callable[[str, str], None] | None = None):
        self.store = store
        self.on_finish = on_finish
        self._lock = threading.Lock()
        self._running: dict[str, tuple[str, JobContext, threading.Thread]] = {}  # kind -> job

    def submit(self, kind: str, params: dict[str, Any], body: JobBody) -> tuple[dict[str, Any], bool]:
        """Start a job; ``(job, created)``. While one of ``kind`` runs, that job comes back instead."""
        with self._lock:
            active = self._running.get(kind)
            if active and active[2].is_alive():
                return self.store.get(active[0]), False  # type: ignore[return-value]
            job = self.store.create(kind, params)
            ctx = JobContext(self.store, job["id"])
            thread = threading.Thread(target=self._run, args=(kind, ctx, body), daemon=True,
                                      name=f"kb-job-{kind}-{job['id']}")
            self._running[kind] = (job["id"], ctx, thread)
            thread.start()
            return job, True

    def cancel(self, job_id: str) -> dict[str, Any] | None:
        """Ask a job to stop at its next stage boundary; finished jobs are returned unchanged."""
        job = self.store.get(job_id)
        if job is None or job["state"] not in ACTIVE:
            return job
        self.store.update(job_id, cancel_requested=1)
        with self._lock:
            for active_id, ctx, _ in self._running.values():
                if active_id == job_id:
                    ctx.cancel_event.set()
        return self.store.get(job_id)

    def wait(self, timeout: float | None = None) -> None:
        """Join the running threads (tests, shutdown)."""
        with self._lock:
            threads = [t for _, _, t in self._running.values()]
        for t in threads:
            t.join(timeout)

    def _run(self, kind: str, ctx: JobContext, body: JobBody) -> None:
        job_id = ctx.job_id
        self.store.update(job_id, state="running", started_at=time.time())
        try:
            ctx.check_cancelled()
            result = body(ctx)
        except JobCancelled as exc:
            state, fields = "cancelled", {"error": str(exc)}
        except BaseException as exc:  # every failure is recorded on the job, never lost in a thread
            log.exception("job %s (%s) failed", job_id, kind)
            state, fields = "failed", {"error": f"{type(exc).__name__}: {exc}"}
        else:
            state, fields = "succeeded", {"result": result or {}, "progress": 100.0}
        if state != "succeeded":
            ctx.log(f"{state}: {fields['error']}")
        self.store.update(job_id, state=state, finished_at=time.time(), **fields)
        if self.on_finish:
            self.on_finish(kind, state)


# --- job bodies ---------------------------------------------------------------------------
def run_reindex(ctx: JobContext, settings: Any, full: bool, embedder: Any,
                publish: Callable[[Any], None]) -> dict[str, Any]:
    """Build and publish a new index version, then hand the loaded index to ``publish``.

    Stages: build (the store publishes atomically at its end) → load → ``publish`` (the hot
    swap). Cancelling is honoured before the build; once a version is published on disk the
    job loads and serves it too, so the server never disagrees with the ``current`` pointer.
    """
    from retrieval.store import IndexStore

    store = IndexStore(settings.home, settings, embedder=embedder)
    previous = store.current_version()
    ctx.progress(5, f"building a {'full' if full else 'incremental'} index (serving {previous})")
    from router.calibration import build_index

    report = build_index(store, full=full)
    ctx.progress(70, f"built and published {report.version}: {report.documents} documents, "
                     f"{report.chunks} chunks, {report.facts} facts, {len(report.errors)} errors")
    for err in report.errors:
        ctx.log(f"document error: {err.get('source')}: {err.get('error')}")
    if ctx.cancel_event.is_set():
        ctx.log("cancel requested after the version was published; finishing the swap")
    index = store.load(report.version, embedder=embedder)
    ctx.progress(90, f"loaded {index.version}")
    publish(index)
    ctx.progress(100, f"serving {index.version}")
    return {"version": report.version, "previous": previous, "report": report.to_dict()}


RETRAIN_STEPS = ("distill", "train")


def retrain_commands() -> list[list[str]]:
    """The ``kb`` commands a retrain runs, in order; KBError when the CLI lacks one of them.

    Retraining is delegated to the CLI so it runs in its own process (a crash or the memory
    of training never touches the server) and so there is one code path for it.
    """
    from api.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    missing = [s for s in RETRAIN_STEPS if s not in sub.choices]
    if missing:
        raise KBError(f"retrain is not available: finetune has no runnable {' / '.join(missing)} entry point "
                      f"yet (`kb {missing[0]}` is not a command); nothing was started")
    return [[sys.executable, "-m", "api.cli", step] for step in RETRAIN_STEPS]


def run_retrain(ctx: JobContext, settings: Any,
                publish_adapter: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Distill training data, then train, gate and publish an adapter (each a ``kb`` subprocess).

    When the gate published a new adapter, ``publish_adapter(version)`` hot-swaps the serving
    router to it (a rejected adapter leaves the serving one untouched).
    """
    commands = retrain_commands()
    before = _current_adapter(settings.home)
    env = {**os.environ, "KB_HOME": str(settings.home), "HF_HUB_OFFLINE": "1"}
    for i, cmd in enumerate(commands):
        ctx.check_cancelled()
        ctx.progress(100 * i / len(commands), f"running kb {cmd[-1]}")
        _run_logged(ctx, cmd, env)
    after = _current_adapter(settings.home)
    result: dict[str, Any] = {"steps": list(RETRAIN_STEPS), "adapter_version": after, "previous_adapter": before}
    if after and after != before and publish_adapter is not None:
        publish_adapter(after)
        result["hot_swapped"] = True
        ctx.log(f"serving adapter {after}")
    return result


def _current_adapter(home: Any) -> str | None:
    try:
        from finetune.adapters import AdapterStore
    except ImportError:
        return None
    return AdapterStore(home).current()


def _run_logged(ctx: JobContext, cmd: list[str], env: dict[str, str]) -> None:
    """Run ``cmd``, streaming its output into the job log; terminate it when cancelled."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    watcher = threading.Thread(target=_kill_on_cancel, args=(ctx, proc), daemon=True)
    watcher.start()
    for line in proc.stdout or ():
        if line.strip():
            ctx.log(line.rstrip()[:500])
    code = proc.wait()
    ctx.check_cancelled()
    if code != 0:
        raise KBError(f"`kb {cmd[-1]}` exited with status {code}; see the job log")


def _kill_on_cancel(ctx: JobContext, proc: subprocess.Popen) -> None:
    while proc.poll() is None:
        if ctx.cancel_event.wait(0.5):
            proc.terminate()
            return
