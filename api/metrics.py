"""Request logging and Prometheus metrics, without a metrics dependency.

With several workers on one home (``kb serve --workers N``) each worker writes its counters
to ``KB_HOME/.run/metrics/<host:pid>.json`` every couple of seconds, and ``GET /metrics`` on
any worker sums the files of the live workers with its own, so a scrape sees the service,
not one process. Files of workers that are gone are ignored (their counters drop out, which
Prometheus reads as a counter reset).

:class:`RequestMetricsMiddleware` is a plain ASGI middleware: it times every HTTP request,
writes one JSON log line per request (logger ``kb.api.access``) and counts it in
:class:`Metrics`, which ``GET /metrics`` renders in the Prometheus text format (0.0.4).

For the answer endpoints the middleware also reads the answer route and verification status
out of the response body as it streams past (a copy; nothing is delayed), so the route
modules stay unaware of logging and metrics.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable

access_log = logging.getLogger("kb.api.access")

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
ANSWER_PATHS = ("/api/ask", "/v1/chat/completions")
_MAX_CAPTURE = 1 << 20  # answer bodies are small; never buffer more than 1 MiB of one


def escape_label(value: str) -> str:
    """Escape a label value for the Prometheus text format.

    >>> escape_label('a"b\\\\c\\nd')
    'a\\\\"b\\\\\\\\c\\\\nd'
    """
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def format_labels(labels: dict[str, str]) -> str:
    """``{k="v",...}`` in key order, or ``""`` for no labels.

    >>> format_labels({"status": "200", "path": "/healthz"})
    '{path="/healthz",status="200"}'
    """
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{escape_label(str(v))}"' for k, v in sorted(labels.items())) + "}"


SHARE_INTERVAL_S = 2.0


class Metrics:
    """Counters and one latency histogram, updated from many threads (and shared between the
    workers of one home, see the module docstring)."""

    def __init__(self, home: Path | str | None = None,
                 engine_stats: Callable[[], dict[str, Any]] | None = None) -> None:
        self._lock = threading.Lock()
        self.share_dir = Path(home) / ".run" / "metrics" if home is not None else None
        self.engine_stats = engine_stats
        self._stop = threading.Event()
        self._sharer: threading.Thread | None = None
        self.requests: dict[tuple[str, str, str], int] = defaultdict(int)       # (method, path, status)
        self.answers: dict[tuple[str, str], int] = defaultdict(int)             # (route, verification)
        self.verification: dict[str, int] = defaultdict(int)                    # status
        self.jobs: dict[tuple[str, str], int] = defaultdict(int)                # (kind, state)
        self.latency_counts: dict[str, list[int]] = {}                          # path -> bucket counts
        self.latency_sum: dict[str, float] = defaultdict(float)
        self.latency_n: dict[str, int] = defaultdict(int)

    def observe_request(self, method: str, path: str, status: int, seconds: float,
                        route: str | None = None, verification: str | None = None) -> None:
        with self._lock:
            self.requests[(method, path, str(status))] += 1
            counts = self.latency_counts.setdefault(path, [0] * len(LATENCY_BUCKETS))
            for i, bound in enumerate(LATENCY_BUCKETS):
                if seconds <= bound:
                    counts[i] += 1
            self.latency_sum[path] += seconds
            self.latency_n[path] += 1
            if route:
                self.answers[(route, verification or "")] += 1
            if verification:
                self.verification[verification] += 1

    def observe_job(self, kind: str, state: str) -> None:
        with self._lock:
            self.jobs[(kind, state)] += 1

    # -- sharing between workers --------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """This process's counters as JSON-able data."""
        with self._lock:
            return {
                "requests": [[*k, n] for k, n in self.requests.items()],
                "answers": [[*k, n] for k, n in self.answers.items()],
                "verification": dict(self.verification),
                "jobs": [[*k, n] for k, n in self.jobs.items()],
                "latency_counts": dict(self.latency_counts),
                "latency_sum": dict(self.latency_sum),
                "latency_n": dict(self.latency_n),
                "generation": self._generation(),
            }

    def _generation(self) -> dict[str, Any]:
        try:
            return dict(self.engine_stats() or {}) if self.engine_stats else {}
        except Exception:  # noqa: BLE001 - metrics never break serving
            return {}

    def _own_file(self) -> Path | None:
        if self.share_dir is None:
            return None
        import socket

        return self.share_dir / f"{socket.gethostname()}:{os.getpid()}.json"

    def share(self) -> None:
        """Write this process's counters for the other workers (atomic replace)."""
        path = self._own_file()
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".m-")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(self.snapshot(), fh)
        os.replace(tmp, path)

    def start_sharing(self) -> None:
        if self.share_dir is None or self._sharer is not None:
            return
        self._stop.clear()
        self.share()

        def loop() -> None:
            while not self._stop.wait(SHARE_INTERVAL_S):
                try:
                    self.share()
                except OSError:
                    pass

        self._sharer = threading.Thread(target=loop, name="kb-metrics-share", daemon=True)
        self._sharer.start()

    def stop_sharing(self) -> None:
        self._stop.set()
        if self._sharer is not None:
            self._sharer.join(timeout=5)
            self._sharer = None
        path = self._own_file()
        if path is not None:
            path.unlink(missing_ok=True)

    def _peers(self) -> list[dict[str, Any]]:
        """Counters of the other live workers on this home."""
        own = self._own_file()
        if own is None or not self.share_dir.is_dir():
            return []
        from api.jobs import _owner_alive

        out = []
        for path in self.share_dir.glob("*.json"):
            if path == own or _owner_alive(path.stem) is False:
                continue
            try:
                out.append(json.loads(path.read_text(encoding="utf-8")))
            except (OSError, ValueError):
                continue
        return out

    def render(self) -> str:
        """The Prometheus text exposition of everything counted so far (all live workers)."""
        peers = self._peers() if self._sharer is not None else []
        mine = self.snapshot()
        return _render([mine, *peers])


def _render(parts: list[dict[str, Any]]) -> str:
    requests: dict[tuple[str, ...], int] = defaultdict(int)
    answers: dict[tuple[str, ...], int] = defaultdict(int)
    verification: dict[str, int] = defaultdict(int)
    jobs: dict[tuple[str, ...], int] = defaultdict(int)
    latency_counts: dict[str, list[int]] = {}
    latency_sum: dict[str, float] = defaultdict(float)
    latency_n: dict[str, int] = defaultdict(int)
    generation: dict[str, float] = defaultdict(float)
    for part in parts:
        for *k, n in part["requests"]:
            requests[tuple(k)] += n
        for *k, n in part["answers"]:
            answers[tuple(k)] += n
        for k, n in part["verification"].items():
            verification[k] += n
        for *k, n in part["jobs"]:
            jobs[tuple(k)] += n
        for path, counts in part["latency_counts"].items():
            acc = latency_counts.setdefault(path, [0] * len(LATENCY_BUCKETS))
            for i, c in enumerate(counts[: len(acc)]):
                acc[i] += c
        for path, v in part["latency_sum"].items():
            latency_sum[path] += v
        for path, v in part["latency_n"].items():
            latency_n[path] += v
        for k, v in (part.get("generation") or {}).items():
            if isinstance(v, (int, float)) and k not in ("service_s",):
                generation[k] += v
    out = _Agg(requests, answers, verification, jobs, latency_counts, latency_sum, latency_n).lines()
    _family(out, "kb_workers", "gauge", "API worker processes counted in these metrics", {"": len(parts)})
    names = {"rejected": ("kb_generation_rejected_total", "counter", "generations refused with 429 (queue full)"),
             "completed": ("kb_generation_completed_total", "counter", "generations finished"),
             "waiting": ("kb_generation_queue_waiting", "gauge", "generations waiting for a sequence"),
             "active": ("kb_generation_active", "gauge", "sequences being decoded now"),
             "cached_tokens": ("kb_generation_cached_prompt_tokens_total", "counter",
                               "prompt tokens reused from the KV cache"),
             "prompt_tokens": ("kb_generation_prompt_tokens_total", "counter", "prompt tokens submitted")}
    for key, (name, kind, help_text) in names.items():
        if key in generation:
            _family(out, name, kind, help_text, {"": int(generation[key])})
    return "\n".join(out) + "\n"


class _Agg:
    def __init__(self, requests: Any, answers: Any, verification: Any, jobs: Any, latency_counts: Any,
                 latency_sum: Any, latency_n: Any) -> None:
        self.requests, self.answers, self.verification, self.jobs = requests, answers, verification, jobs
        self.latency_counts, self.latency_sum, self.latency_n = latency_counts, latency_sum, latency_n

    def lines(self) -> list[str]:
        out: list[str] = []
        _family(out, "kb_http_requests_total", "counter", "HTTP requests by method, path template and status",
                {format_labels({"method": m, "path": p, "status": s}): n
                 for (m, p, s), n in self.requests.items()})
        out += ["# HELP kb_http_request_duration_seconds HTTP request latency by path template",
                "# TYPE kb_http_request_duration_seconds histogram"]
        for path, counts in sorted(self.latency_counts.items()):
            for bound, n in zip(LATENCY_BUCKETS, counts):
                out.append(f"kb_http_request_duration_seconds_bucket"
                           f"{format_labels({'path': path, 'le': repr(bound)})} {n}")
            n_all = self.latency_n[path]
            out.append(f"kb_http_request_duration_seconds_bucket{format_labels({'path': path, 'le': '+Inf'})}"
                       f" {n_all}")
            out.append(f"kb_http_request_duration_seconds_sum{format_labels({'path': path})} "
                       f"{self.latency_sum[path]:.6f}")
            out.append(f"kb_http_request_duration_seconds_count{format_labels({'path': path})} {n_all}")
        _family(out, "kb_answers_total", "counter", "answers by route and verification status",
                {format_labels({"route": r, "verification": v}): n for (r, v), n in self.answers.items()})
        _family(out, "kb_verification_total", "counter", "number verification outcomes of answers",
                {format_labels({"status": s}): n for s, n in self.verification.items()})
        _family(out, "kb_jobs_total", "counter", "finished admin jobs by kind and final state",
                {format_labels({"kind": k, "state": s}): n for (k, s), n in self.jobs.items()})
        return out


def _family(out: list[str], name: str, kind: str, help_text: str, samples: dict[str, int]) -> None:
    out += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
    out += [f"{name}{labels} {value}" for labels, value in sorted(samples.items())]


def answer_fields(body: bytes, content_type: str) -> tuple[str | None, str | None]:
    """``(route, verification status)`` from an answer response body (JSON or SSE), else Nones.

    >>> answer_fields(b'{"route": "rag", "verification": {"status": "verified"}}', "application/json")
    ('rag', 'verified')
    >>> answer_fields(b'data: {"kb": {"route": "refuse", "verification": {"status": "not_applicable"}}}\\n\\n'
    ...               b'data: [DONE]\\n\\n', "text/event-stream")
    ('refuse', 'not_applicable')
    """
    candidates: list[bytes] = [body]
    if content_type.startswith("text/event-stream"):
        candidates = [line[5:].strip() for line in body.split(b"\n") if line.startswith(b"data:")][::-1]
    for raw in candidates:
        try:
            obj = json.loads(raw)
        except ValueError:
            continue
        if not isinstance(obj, dict):
            continue
        ans = obj.get("kb") if isinstance(obj.get("kb"), dict) else obj
        if "route" in ans:
            ver = ans.get("verification")
            return ans.get("route"), ver.get("status") if isinstance(ver, dict) else None
    return None, None


class RequestMetricsMiddleware:
    """ASGI middleware: one JSON access-log line and metrics per HTTP request."""

    def __init__(self, app: Any, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        state: dict[str, Any] = {"status": 500, "ctype": "", "body": bytearray()}
        capture = scope.get("path") in ANSWER_PATHS

        async def send_wrapper(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
                headers = dict(message.get("headers") or [])
                state["ctype"] = headers.get(b"content-type", b"").decode("latin-1")
            elif message["type"] == "http.response.body" and capture:
                if len(state["body"]) < _MAX_CAPTURE:
                    state["body"] += message.get("body", b"")
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self._record(scope, state, time.perf_counter() - start)

    def _record(self, scope: dict[str, Any], state: dict[str, Any], seconds: float) -> None:
        route_obj = scope.get("route")
        # The route template keeps label cardinality bounded (/admin/jobs/{job_id}, not every id).
        path = getattr(route_obj, "path", None) or "(unmatched)"
        answer_route, verification = (None, None)
        if state["body"] and state["status"] < 400:
            answer_route, verification = answer_fields(bytes(state["body"]), state["ctype"])
        self.metrics.observe_request(scope["method"], path, state["status"], seconds, answer_route, verification)
        access_log.info(json.dumps({
            "method": scope["method"], "path": scope.get("path"), "status": state["status"],
            "route": answer_route, "latency_ms": round(seconds * 1000, 1), "verification": verification,
        }, ensure_ascii=False))
