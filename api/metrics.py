"""Request logging and Prometheus metrics, without a metrics dependency.

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
import threading
import time
from collections import defaultdict
from typing import Any

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


class Metrics:
    """Counters and one latency histogram, updated from many threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
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

    def render(self) -> str:
        """The Prometheus text exposition of everything counted so far."""
        with self._lock:
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
            return "\n".join(out) + "\n"


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
