"""Admin jobs: a SQLite job store with leases, a runner, and the reindex / retrain bodies.

A job is one row in ``KB_HOME/jobs.sqlite3`` (state, progress, log tail, result, error), so
``GET /admin/jobs/{id}`` works after a restart and from every worker on the same home.

Heavy builds run in **worker processes** (``python -m api.jobs run JOB_ID``, niced), never in
a thread of the serving process: a crash, a segfault or the memory of a build cannot take the
server down, and answering keeps the CPU first. The process that started a job holds its
**lease**: it bumps the row's ``heartbeat`` counter every ``lease_s / 3`` seconds while the
job runs. A lease runs out when a reaper has seen the same heartbeat for ``lease_s`` seconds
of its own monotonic clock, so setting the wall clock forward or back never expires a live
job nor keeps a dead one (``lease_until`` is kept for people reading the table only). So:

* at most one job of each kind runs per home: :meth:`JobStore.claim` reaps first, then creates
  the row only when no job of that kind is active (one SQLite write transaction), so several
  workers never start the same build twice;
* a worker starting up fails only jobs whose lease ran out or whose owner process is gone
  (:meth:`JobStore.reap`), never a job another live worker is running;
* a job that is reaped is stopped, not only marked: the reaper kills its job process
  (``worker``, on this host) before it marks the row failed, and a job process that finds
  its row no longer active exits at once (a reaper on another host), so a rerun never
  runs beside it;
* a job process that dies (``kill -9``, out of memory) is marked failed by its owner at
  once; an owner that dies takes its job process with it (``PR_SET_PDEATHSIG``) and the
  lease runs out, so the job is marked failed by the next reap and can be rerun.

Jobs and the job database live on the machine that holds ``KB_HOME`` (SQLite in WAL mode
needs a local file system); see the README's deployment guide.

Cancellation is cooperative: the job process polls the cancel flag and
:meth:`JobContext.check_cancelled` raises :class:`JobCancelled` between stages; a stage that
has started (an index build) runs to its end.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from api.processes import owner_alive, owner_id, stop_process
from knowledge.core.errors import KBError
from knowledge.core.files import file_lock
from knowledge.core.registry import Registry
from router.adapters import AdapterStore
from config.settings import Settings
from retrieval.store import IndexStore
from router.indexing import build_index
import argparse
import ctypes
import resource
from knowledge.failpoints import hit

log = logging.getLogger("kb.api.jobs")

STATES = ("queued", "running", "succeeded", "failed", "cancelled")
ACTIVE = ("queued", "running")
LOG_TAIL = 200  # lines kept per job; older lines are dropped
INTERRUPTED = "interrupted by a server restart"
LEASE_S = 15.0
EXIT_CANCELLED = 3
EXIT_REAPED = 4  # the job process found its row reaped (failed by another worker) and stopped

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
    finished_at REAL,
    owner TEXT,
    lease_until REAL,
    heartbeat INTEGER NOT NULL DEFAULT 0,
    worker TEXT
)
"""
_JSON_COLUMNS = ("params", "result", "log")
_ADDED_COLUMNS = {"owner": "TEXT", "lease_until": "REAL", "heartbeat": "INTEGER NOT NULL DEFAULT 0",
                  "worker": "TEXT"}


class JobCancelled(KBError):
    """Raised inside a job body when cancellation was requested."""


class JobStore:
    """Job rows in one SQLite file; safe from several threads and processes (one connection per call)."""

    def __init__(self, path: Path | str, recover: bool = True, lease_s: float = LEASE_S):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.lease_s = float(lease_s)
        self._lock = threading.Lock()
        # job id -> (heartbeat last seen, monotonic time it was first seen): the lease clock
        self._seen: dict[str, tuple[int, float]] = {}
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(_SCHEMA)
            have = {r["name"] for r in db.execute("PRAGMA table_info(jobs)")}
            for column, kind in _ADDED_COLUMNS.items():
                if column not in have:
                    db.execute(f"ALTER TABLE jobs ADD COLUMN {column} {kind}")
        self.interrupted = self.reap() if recover else 0

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30)
        db.row_factory = sqlite3.Row
        return db

    def _write(self, sql: str, args: tuple[Any, ...]) -> int:
        with self._lock, self._connect() as db:
            return db.execute(sql, args).rowcount

    def create(self, kind: str, params: dict[str, Any] | None = None, owner: str | None = None) -> dict[str, Any]:
        job_id = uuid.uuid4().hex[:16]
        now = time.time()
        self._write("INSERT INTO jobs (id, kind, state, params, created_at, owner, lease_until) "
                    "VALUES (?, ?, 'queued', ?, ?, ?, ?)",
                    (job_id, kind, json.dumps(params or {}, ensure_ascii=False), now, owner,
                     now + self.lease_s if owner else None))
        return self.get(job_id)  # type: ignore[return-value]

    def claim(self, kind: str, params: dict[str, Any] | None = None,
              owner: str | None = None) -> tuple[dict[str, Any], bool]:
        """Create a job of ``kind`` unless one is active; ``(job, created)``.

        Jobs whose lease ran out are reaped (and their processes stopped) first; then one write
        transaction, so two workers asked at once cannot both create one.
        """
        owner = owner or owner_id()
        self.reap()
        now = time.time()
        with self._lock:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            db.row_factory = sqlite3.Row
            try:
                db.execute("BEGIN IMMEDIATE")
                row = db.execute("SELECT * FROM jobs WHERE kind = ? AND state IN ('queued', 'running') "
                                 "ORDER BY created_at DESC LIMIT 1", (kind,)).fetchone()
                if row is not None:
                    db.execute("COMMIT")
                    return _row(row), False
                job_id = uuid.uuid4().hex[:16]
                db.execute("INSERT INTO jobs (id, kind, state, params, created_at, owner, lease_until) "
                           "VALUES (?, ?, 'queued', ?, ?, ?, ?)",
                           (job_id, kind, json.dumps(params or {}, ensure_ascii=False), now, owner,
                            now + self.lease_s))
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            finally:
                db.close()
        return self.get(job_id), True  # type: ignore[return-value]

    def renew(self, job_id: str, owner: str | None = None) -> None:
        """Extend the lease of an active job (its owner calls this while it runs): one heartbeat."""
        self._write("UPDATE jobs SET heartbeat = heartbeat + 1, lease_until = ?, owner = COALESCE(?, owner) "
                    "WHERE id = ? AND state IN ('queued', 'running')", (time.time() + self.lease_s, owner, job_id))

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
                                 "cancel_requested", "owner", "lease_until", "worker"}
        if unknown:
            raise KBError(f"unknown job fields {sorted(unknown)}")
        if "state" in fields and fields["state"] not in STATES:
            raise KBError(f"unknown job state {fields['state']!r}; known: {STATES}")
        values = [json.dumps(v, ensure_ascii=False, default=str) if k in _JSON_COLUMNS else v
                  for k, v in fields.items()]
        sets = ", ".join(f"{k} = ?" for k in fields)
        self._write(f"UPDATE jobs SET {sets} WHERE id = ?", (*values, job_id))

    def finish(self, job_id: str, state: str, **fields: Any) -> bool:
        """Move an active job to a final state (False when it was already final)."""
        if state not in STATES or state in ACTIVE:
            raise KBError(f"{state!r} is not a final job state")
        values = [json.dumps(v, ensure_ascii=False, default=str) if k in _JSON_COLUMNS else v
                  for k, v in fields.items()]
        sets = "".join(f", {k} = ?" for k in fields)
        return self._write(f"UPDATE jobs SET state = ?, finished_at = ?{sets} WHERE id = ? "
                           "AND state IN ('queued', 'running')", (state, time.time(), *values, job_id)) > 0

    def append_log(self, job_id: str, line: str) -> None:
        with self._lock, self._connect() as db:
            row = db.execute("SELECT log FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                return
            lines = json.loads(row["log"])[-(LOG_TAIL - 1):] + [line]
            db.execute("UPDATE jobs SET log = ? WHERE id = ?", (json.dumps(lines, ensure_ascii=False), job_id))

    def reap(self) -> int:
        """Stop and fail every active job whose lease ran out or whose owner process is gone; how many.

        A lease runs out when this store has seen the same heartbeat for ``lease_s`` seconds
        of its monotonic clock (:meth:`lease_expired`). The job's process is killed before
        its row is marked failed, so nothing of it runs once the job reads ``failed``.
        """
        with self._connect() as db:
            rows = db.execute("SELECT id, owner, heartbeat, worker FROM jobs "
                              "WHERE state IN ('queued', 'running')").fetchall()
        active = {r["id"] for r in rows}
        self._seen = {k: v for k, v in self._seen.items() if k in active}
        n = 0
        for r in rows:
            if not self.lease_expired(r["id"], r["owner"], r["heartbeat"]):
                continue
            # The reason first: an owner that sees its job process killed records this one.
            self._write("UPDATE jobs SET error = ? WHERE id = ? AND state IN ('queued', 'running')",
                        (INTERRUPTED, r["id"]))
            if stop_process(r["worker"], r["id"]) is False:
                log.error("job %s: its process %s would not stop", r["id"], r["worker"])
            if self.finish(r["id"], "failed", error=INTERRUPTED):
                self.append_log(r["id"], f"{time.strftime('%H:%M:%S')} failed: {INTERRUPTED}")
            n += 1
            self._seen.pop(r["id"], None)
        return n

    def lease_expired(self, job_id: str, owner: str | None, heartbeat: int) -> bool:
        """Whether an active job's lease ran out: no owner, an owner process that is gone, or
        a heartbeat this store has seen unchanged for ``lease_s`` monotonic seconds."""
        if owner is None or owner_alive(owner) is False:
            return True
        now = time.monotonic()
        seen = self._seen.get(job_id)
        if seen is None or seen[0] != heartbeat:
            self._seen[job_id] = (heartbeat, now)
            return False
        return now - seen[1] >= self.lease_s

    def mark_interrupted(self) -> int:
        """Kept for callers of the old name: :meth:`reap`."""
        return self.reap()


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
        if not self.cancel_event.is_set():
            job = self.store.get(self.job_id)
            if job and job["cancel_requested"]:
                self.cancel_event.set()
        if self.cancel_event.is_set():
            raise JobCancelled(f"job {self.job_id} cancelled on request")


JobBody = Callable[[JobContext], dict[str, Any] | None]
Hook = Callable[[str, dict[str, Any]], "str | None"]


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: the job process gets SIGKILL when the thread that started it dies."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _job_limits(kind: str, settings: Any) -> Callable[[], None]:
    """What the job process runs between fork and exec: die with the parent and, for a reindex
    (which reads every document), the CPU-time and address-space limits ``ingest.reindex_cpu_s``
    and ``ingest.reindex_memory_mb`` (0: none), so a hostile document ends in a failed job."""
    cpu_s = int(getattr(getattr(settings, "ingest", None), "reindex_cpu_s", 0) or 0) if kind == "reindex" else 0
    memory_mb = int(getattr(getattr(settings, "ingest", None), "reindex_memory_mb", 0) or 0) if kind == "reindex" else 0

    def preexec() -> None:  # pragma: no cover - runs in the child between fork and exec
        _die_with_parent()
        if cpu_s:
            resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 5))
        if memory_mb:
            _, hard = resource.getrlimit(resource.RLIMIT_AS)
            limit = memory_mb * 1024 * 1024
            resource.setrlimit(resource.RLIMIT_AS, (limit if hard == resource.RLIM_INFINITY else min(limit, hard), hard))

    return preexec


class JobRunner:
    """Runs jobs (one per kind per home), holding their leases while they run.

    :meth:`start` runs a registered kind in a worker process (the admin API uses it);
    :meth:`submit` runs a callable in a thread of this process (small jobs, tests).
    ``on_finish(kind, state)`` is called once per job after it reached its final state;
    ``before_success(kind, result)`` runs just before a job is marked succeeded (the server
    swaps to what the job published there, so a client that sees "succeeded" sees it served).
    """

    def __init__(self, store: JobStore, on_finish: Callable[[str, str], None] | None = None,
                 before_success: Hook | None = None, settings: Any = None):
        self.store = store
        self.on_finish = on_finish
        self.before_success = before_success
        self.settings = settings
        self.owner = owner_id()
        self._lock = threading.Lock()
        self._running: dict[str, tuple[str, JobContext, threading.Thread]] = {}  # kind -> job

    # -- starting -----------------------------------------------------------------------------
    def start(self, kind: str, params: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """Start a registered job kind in a worker process; while one runs, it comes back instead."""
        JOB_KINDS.get(kind)  # UnknownComponentError (a KBError) names the known kinds
        job, created = self.store.claim(kind, params, self.owner)
        if created:
            ctx = JobContext(self.store, job["id"])
            thread = threading.Thread(target=self._run_process, args=(kind, ctx), daemon=True,
                                      name=f"kb-job-{kind}-{job['id']}")
            with self._lock:
                self._running[kind] = (job["id"], ctx, thread)
            thread.start()
        return job, created

    def submit(self, kind: str, params: dict[str, Any], body: JobBody) -> tuple[dict[str, Any], bool]:
        """Run ``body`` in a thread; ``(job, created)``. While one of ``kind`` runs, that job comes back."""
        job, created = self.store.claim(kind, params, self.owner)
        if created:
            ctx = JobContext(self.store, job["id"])
            thread = threading.Thread(target=self._run_thread, args=(kind, ctx, body), daemon=True,
                                      name=f"kb-job-{kind}-{job['id']}")
            with self._lock:
                self._running[kind] = (job["id"], ctx, thread)
            thread.start()
        return job, created

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
        """Join the running jobs (tests, shutdown)."""
        with self._lock:
            threads = [t for _, _, t in self._running.values()]
        for t in threads:
            t.join(timeout)

    # -- running --------------------------------------------------------------------------
    def _heartbeat(self, job_id: str, done: threading.Event) -> None:
        interval = max(0.5, self.store.lease_s / 3)
        while not done.wait(interval):
            try:
                self.store.renew(job_id, self.owner)
            except sqlite3.Error:  # a busy database: the next beat renews
                log.warning("could not renew the lease of job %s", job_id)

    def _run_thread(self, kind: str, ctx: JobContext, body: JobBody) -> None:
        job_id = ctx.job_id
        self.store.update(job_id, state="running", started_at=time.time())
        done = threading.Event()
        threading.Thread(target=self._heartbeat, args=(job_id, done), daemon=True).start()
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
        self._conclude(kind, ctx, state, fields)
        done.set()

    def _run_process(self, kind: str, ctx: JobContext) -> None:
        job_id = ctx.job_id
        self.store.update(job_id, state="running", started_at=time.time())
        done = threading.Event()
        threading.Thread(target=self._heartbeat, args=(job_id, done), daemon=True).start()
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        # The job process imports this very code base, wherever the server was started from.
        root = str(Path(__file__).resolve().parents[1])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
        if self.settings is not None:
            home = Path(self.settings.home).resolve()
            env["KB_HOME"] = str(home)
            env[SETTINGS_ENV] = self.settings.model_copy(update={"home": home}).model_dump_json()
        cmd = [sys.executable, "-m", "api.jobs", "run", job_id, "--db", str(self.store.path.resolve())]
        state, fields = "failed", {}
        try:
            # Spawned from this thread, which lives until the child exits (PDEATHSIG is per thread).
            proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL,
                                    preexec_fn=_job_limits(kind, self.settings))
            self.store.update(job_id, worker=f"{self.owner.rpartition(':')[0]}:{proc.pid}")  # what a reap stops
            code = proc.wait()
            row = self.store.get(job_id) or {}
            if code == 0:
                state, fields = "succeeded", {"result": row.get("result") or {}, "progress": 100.0}
            elif code == EXIT_REAPED:
                fields = {"error": INTERRUPTED}
            elif code == EXIT_CANCELLED:
                state, fields = "cancelled", {"error": row.get("error") or f"job {job_id} cancelled on request"}
            else:
                how = f"signal {-code}" if code < 0 else f"status {code}"
                fields = {"error": row.get("error") or f"job process died ({how})"}
        except Exception as exc:  # noqa: BLE001 - recorded on the job
            log.exception("job %s (%s) could not run", job_id, kind)
            fields = {"error": f"{type(exc).__name__}: {exc}"}
        self._conclude(kind, ctx, state, fields)
        done.set()

    def _conclude(self, kind: str, ctx: JobContext, state: str, fields: dict[str, Any]) -> None:
        if state == "succeeded" and self.before_success is not None:
            try:
                note = self.before_success(kind, fields.get("result") or {})
                if note:
                    ctx.log(note)
            except Exception as exc:  # noqa: BLE001 - published on disk; followers will pick it up
                log.exception("job %s: could not serve its result", ctx.job_id)
                ctx.log(f"published, but this worker could not load it yet: {type(exc).__name__}: {exc}")
        if state != "succeeded":
            ctx.log(f"{state}: {fields.get('error')}")
        if self.store.finish(ctx.job_id, state, **fields) and self.on_finish:
            self.on_finish(kind, state)


SETTINGS_ENV = "KB_JOB_SETTINGS_JSON"
JOB_KINDS: Registry[Callable[[JobContext, Any, dict[str, Any]], dict[str, Any]]] = Registry("job kind")


def register_job(kind: str) -> Callable[[Any], Any]:
    """Register a job body ``fn(ctx, settings, params) -> result`` under ``kind`` (no duplicates)."""
    return JOB_KINDS.decorator(kind)


def run_job_process(job_id: str, db: Path) -> int:
    """Body of ``python -m api.jobs run JOB_ID``: run the job, record result or error, exit code."""

    try:
        os.nice(10)  # builds yield the CPU to answering
    except OSError:
        pass
    store = JobStore(db, recover=False)
    job = store.get(job_id)
    if job is None:
        print(f"no job {job_id!r} in {db}", file=sys.stderr)
        return 1
    raw = os.environ.get(SETTINGS_ENV)
    settings = Settings.model_validate_json(raw) if raw else Settings()
    ctx = JobContext(store, job_id)
    stop = threading.Event()

    def watch_cancel() -> None:
        while not stop.wait(0.5):
            row = store.get(job_id)
            if row is not None and row["state"] not in ACTIVE:
                # Reaped by a worker that could not kill us (another host): stop now, mid-stage,
                # as a kill -9 would, so a rerun never runs beside this process.
                log.error("job %s was marked %s while running: stopping", job_id, row["state"])
                os._exit(EXIT_REAPED)
            if row is None or row["cancel_requested"]:
                ctx.cancel_event.set()
                return

    threading.Thread(target=watch_cancel, daemon=True).start()
    try:
        hit("job.start")
        ctx.check_cancelled()
        result = JOB_KINDS.get(job["kind"])(ctx, settings, job["params"] or {})
    except JobCancelled as exc:
        store.update(job_id, error=str(exc))
        return EXIT_CANCELLED
    except BaseException as exc:  # recorded for the owner, which marks the job failed
        log.exception("job %s failed", job_id)
        store.update(job_id, error=f"{type(exc).__name__}: {exc}")
        return 1
    finally:
        stop.set()
    store.update(job_id, result=result or {})
    return 0


# --- job bodies (run in the job process) ------------------------------------------------------
@register_job("reindex")
def reindex_job(ctx: JobContext, settings: Any, params: dict[str, Any]) -> dict[str, Any]:
    """Build and publish a new index version, then prune old ones (``retrieval.keep_versions``).

    The store publishes atomically at the end of the build; serving workers follow the
    ``current`` pointer. Cancelling is honoured before the build.
    """

    full = bool(params.get("full"))
    store = IndexStore(settings.home, settings)
    previous = store.current_version()
    ctx.progress(5, f"building a {'full' if full else 'incremental'} index (serving {previous})")

    ctx.check_cancelled()
    report = build_index(store, full=full)
    ctx.progress(85, f"built and published {report.version}: {report.documents} documents, "
                     f"{report.chunks} chunks, {report.facts} facts, {len(report.errors)} errors")
    for err in report.errors:
        ctx.log(f"document error: {err.get('source')}: {str(err.get('error'))[:300]}")
    pruned = store.prune(settings.retrieval.keep_versions)
    if pruned:
        ctx.log(f"pruned {len(pruned)} old version(s): {', '.join(pruned)}")
    return {"version": report.version, "previous": previous, "report": report.to_dict(), "pruned": pruned}


@register_job("retrain")
def retrain_job(ctx: JobContext, settings: Any, params: dict[str, Any]) -> dict[str, Any]:
    """``kb distill`` then ``kb train`` (gate + publish); serving workers follow ``adapters/current``."""
    return run_retrain(ctx, settings)


RETRAIN_STEPS = ("distill", "train")
FINETUNE_COMMANDS = "finetune.cli"  # the registration point of `kb distill` / `kb train`


def retrain_commands() -> list[list[str]]:
    """The ``kb`` commands a retrain runs, in order; KBError when finetune is not installed.

    Retraining is delegated to the CLI so it runs in its own process (a crash or the memory
    of training never touches the server) and so there is one code path for it. The server
    never imports ``finetune``: it only checks that the CLI's offline commands can be found.
    """
    if importlib.util.find_spec(FINETUNE_COMMANDS) is None:
        raise KBError(f"retrain is not available: {FINETUNE_COMMANDS} (which registers `kb "
                      f"{' / '.join(RETRAIN_STEPS)}`) is not installed; nothing was started")
    return [[sys.executable, "-m", "api.cli", step] for step in RETRAIN_STEPS]


def run_retrain(ctx: JobContext, settings: Any,
                publish_adapter: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Distill training data, then train, gate and publish an adapter (each a ``kb`` subprocess).

    Serving workers follow ``adapters/current`` themselves; ``publish_adapter(version)`` is an
    extra hook called when the gate published a new adapter.
    """
    commands = retrain_commands()
    before = _current_adapter(settings.home)
    env = {**os.environ, "KB_HOME": str(settings.home), "HF_HUB_OFFLINE": "1"}
    # One retrain at a time per home, whoever started it (this job, another worker, `kb train`
    # by hand): the distilled dataset and the train_runs/<hash> folder are written by one only.
    with file_lock(retrain_lock_path(settings.home)):
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


def retrain_lock_path(home: Any) -> Path:
    """The lock a retrain holds from distillation to the adapter gate (``train_runs/.retrain.lock``)."""
    return Path(home) / "train_runs" / ".retrain.lock"


def _current_adapter(home: Any) -> str | None:
    return AdapterStore(home).current()


def _run_logged(ctx: JobContext, cmd: list[str], env: dict[str, str]) -> None:
    """Run ``cmd``, streaming its output into the job log; terminate it when cancelled."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            preexec_fn=_die_with_parent)
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


def main(argv: list[str] | None = None) -> int:
    """``python -m api.jobs run JOB_ID --db PATH`` (started by :class:`JobRunner`)."""

    parser = argparse.ArgumentParser(prog="python -m api.jobs")
    sub = parser.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="run one queued job (the job runner starts this)")
    run.add_argument("job_id")
    run.add_argument("--db", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    return run_job_process(args.job_id, Path(args.db))


if __name__ == "__main__":
    sys.exit(main())
