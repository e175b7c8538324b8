"""Request logging and Prometheus metrics (rendered by ``prometheus_client``).

With several workers on one home (``kb serve --workers N``) each worker writes its counters
to ``KB_HOME/.run/metrics/<host:pid>.json`` every couple of seconds, and ``GET /metrics`` on
any worker sums the files of the live workers with its own, so a scrape sees the service,
not one process. Files of workers that are gone are ignored (their counters drop out, which
Prometheus reads as a counter reset).

:class:`RequestMetricsMiddleware` is a plain ASGI middleware: it times every HTTP request,
writes one JSON log line per request (logger ``kb.api.access``) and counts it in
:class:`Metrics`, which ``GET /metrics`` renders in the Prometheus text format (0.0.4) through
``prometheus_client``'s metric families and exposition, from the counters summed over workers.

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
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from api.processes import owner_alive, owner_id
from knowledge.core.files import atomic_write_json

access_log = logging.getLogger("kb.api.access")

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
ANSWER_PATHS = ("/api/ask", "/v1/chat/completions")
_MAX_CAPTURE = 1 << 20  # answer bodies are small; never buffer more than 1 MiB of one


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
        return self.share_dir / f"{owner_id()}.json"

    def share(self) -> None:
        """Write this process's counters for the other workers (atomic replace)."""
        path = self._own_file()
        if path is None:
            return
        # Rewritten every few seconds and worthless after a power cut: no fsync.
        atomic_write_json(path, self.snapshot(), indent=None, fsync=False)

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
        out = []
        for path in self.share_dir.glob("*.json"):
            if path == own or owner_alive(path.stem) is False:
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
    """The text exposition of the counters of ``parts`` (one snapshot per worker), summed."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(_sum(parts), len(parts)))
    return generate_latest(registry).decode("utf-8")


def _sum(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """The snapshots of several workers added up (gauges too: each worker has its own queue)."""
    total: dict[str, Any] = {key: defaultdict(int) for key in ("requests", "answers", "verification", "jobs")}
    total.update(latency_counts={}, latency_sum=defaultdict(float), latency_n=defaultdict(int),
                 generation=defaultdict(float))
    for part in parts:
        for key in ("requests", "answers", "jobs"):
            for *k, n in part[key]:
                total[key][tuple(k)] += n
        for k, n in part["verification"].items():
            total["verification"][k] += n
        for path, counts in part["latency_counts"].items():
            acc = total["latency_counts"].setdefault(path, [0] * len(LATENCY_BUCKETS))
            for i, c in enumerate(counts[: len(acc)]):
                acc[i] += c
        for key in ("latency_sum", "latency_n"):
            for path, v in part[key].items():
                total[key][path] += v
        for k, v in (part.get("generation") or {}).items():
            if isinstance(v, (int, float)) and k not in ("service_s",):
                total["generation"][k] += v
    return total


# Generation statistics of the engine: snapshot key -> (family name, kind, help).
_GENERATION = {"rejected": ("kb_generation_rejected", "counter", "generations refused with 429 (queue full)"),
               "completed": ("kb_generation_completed", "counter", "generations finished"),
               "waiting": ("kb_generation_queue_waiting", "gauge", "generations waiting for a sequence"),
               "active": ("kb_generation_active", "gauge", "sequences being decoded now"),
               "cached_tokens": ("kb_generation_cached_prompt_tokens", "counter",
                                 "prompt tokens reused from the KV cache"),
               "prompt_tokens": ("kb_generation_prompt_tokens", "counter", "prompt tokens submitted")}


class _Collector:
    """Metric families over one summed snapshot (``prometheus_client`` renders them)."""

    def __init__(self, total: dict[str, Any], workers: int) -> None:
        self.total, self.workers = total, workers

    def collect(self) -> Iterator[Metric]:
        t = self.total
        yield _counter("kb_http_requests", "HTTP requests by method, path template and status",
                       ["method", "path", "status"], t["requests"])
        latency = HistogramMetricFamily("kb_http_request_duration_seconds", "HTTP request latency by path template",
                                        labels=["path"])
        for path, counts in sorted(t["latency_counts"].items()):
            buckets = [(repr(bound), n) for bound, n in zip(LATENCY_BUCKETS, counts)]
            latency.add_metric([path], buckets + [("+Inf", t["latency_n"][path])], t["latency_sum"][path])
        yield latency
        yield _counter("kb_answers", "answers by route and verification status", ["route", "verification"],
                       t["answers"])
        yield _counter("kb_verification", "number verification outcomes of answers", ["status"],
                       {(k,): n for k, n in t["verification"].items()})
        yield _counter("kb_jobs", "finished admin jobs by kind and final state", ["kind", "state"], t["jobs"])
        yield GaugeMetricFamily("kb_workers", "API worker processes counted in these metrics", value=self.workers)
        for key, (name, kind, help_text) in _GENERATION.items():
            if key in t["generation"]:
                family = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
                yield family(name, help_text, value=int(t["generation"][key]))


def _counter(name: str, help_text: str, labels: list[str], samples: dict[tuple[str, ...], int]) -> Metric:
    family = CounterMetricFamily(name, help_text, labels=labels)
    for values, n in sorted(samples.items()):
        family.add_metric(list(values), n)
    return family


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
