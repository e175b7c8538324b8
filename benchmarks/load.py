"""Load test: concurrent clients against a running server while an upload, a reindex and an
adapter publish happen; reports requests, failures, latency percentiles and the version switch.

A bounded async client (httpx): ``clients`` coroutines for ``seconds``, each looping over a
mix of streaming and non-streaming chat, native ask and glossary calls with a short think
time. A 429 is not a failure: the client waits ``Retry-After`` and sends the same request
again, up to ``retries`` times, as the official ``openai`` client does (its ``max_retries``;
``Retry-After`` up to 60 s is obeyed, else an exponential backoff of 0.5 s doubling to 8 s);
a request still refused after its retries is counted as refused. Every response carries ``X-KB-Index-Version`` and
``X-KB-Adapter-Version``; after the first response from a new version arrives, no request
started later may be answered by the old one.

    python benchmarks/load.py                       # 16 clients, 120 s, packaged model
    python benchmarks/load.py --clients 16 --seconds 60 --generator extractive

The CI test (tests/api/test_load.py) calls :func:`run_scenario` with a shorter period.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import httpx

CHAT_QUESTIONS = [  # the demo knowledge base: glossary, fact, rag and refuse routes
    "AM是什么意思？", "一线城市住宿标准每晚多少钱？", "出差住宿超标了怎么办？", "笔记本电脑丢了应该怎么处理？",
    "出差5天需要哪些人审批？", "公司明年的上市计划是什么？",
]
RAG_QUESTIONS = ["出差住宿超标了怎么办？", "笔记本电脑丢了应该怎么处理？", "出差5天需要哪些人审批？"]
GLOSSARY_TERMS = ["AM", "PM", "PO", "OA"]
PARKING_DOC = ("# 停车管理规定\n\n"
               "第一条 员工在公司地下停车场停车的，停车费为每月150元，由财务部从当月工资中扣除。\n\n"
               "第二条 访客车辆停车免费，每次最长停放4小时。\n").encode("utf-8")
PARKING_Q = "员工停车费每月多少钱？"


@dataclass
class Sample:
    kind: str
    start: float
    end: float
    status: int
    index: str = ""
    adapter: str = ""
    error: str = ""
    retry_after: float = 0.0
    retries: int = 0        # 429s waited out before this, the final answer
    first_start: float = 0.0  # when the first attempt was sent (waits included)

    @property
    def seconds(self) -> float:
        return self.end - self.start


@dataclass
class Report:
    samples: list[Sample] = field(default_factory=list)
    events: dict[str, Any] = field(default_factory=dict)
    single_chat_s: float = 0.0
    single_samples: list[float] = field(default_factory=list)

    def ok(self) -> list[Sample]:
        return [s for s in self.samples if 200 <= s.status < 300 and not s.error]

    def failures(self) -> list[Sample]:
        return [s for s in self.samples if s.status != 429 and (s.error or not 200 <= s.status < 300)]

    def summary(self) -> dict[str, Any]:
        # Latency is the answering attempt's own time (as before retries existed); the time a
        # caller saw, its Retry-After waits included, is reported as p95_with_retries_s.
        lat = sorted(s.seconds for s in self.ok())
        waited = sorted(s.end - (s.first_start or s.start) for s in self.ok())
        by_kind: dict[str, list[float]] = {}
        for s in self.ok():
            by_kind.setdefault(s.kind, []).append(s.seconds)
        p = lambda q: round(percentile(lat, q), 3) if lat else None  # noqa: E731
        return {
            "requests": len(self.samples), "ok": len(lat), "failures": len(self.failures()),
            "rejected_429": sum(s.status == 429 for s in self.samples),
            "rejected_share": round(sum(s.status == 429 for s in self.samples) / max(1, len(self.samples)), 4),
            "retries_429": sum(s.retries for s in self.samples),
            "retried_requests": sum(s.retries > 0 for s in self.samples),
            "p95_with_retries_s": round(percentile(waited, 95), 3) if waited else None,
            "p50_s": p(50), "p95_s": p(95), "p99_s": p(99), "max_s": round(lat[-1], 3) if lat else None,
            "single_client_chat_s": round(self.single_chat_s, 3),
            "p95_over_single": round(p(95) / self.single_chat_s, 2) if lat and self.single_chat_s else None,
            "by_kind": {k: {"n": len(v), "p50_s": round(percentile(sorted(v), 50), 3),
                            "p95_s": round(percentile(sorted(v), 95), 3)} for k, v in sorted(by_kind.items())},
            "events": self.events,
            "failure_examples": [s.__dict__ for s in self.failures()[:5]],
        }


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list.

    >>> percentile([1.0, 2.0, 3.0, 4.0], 50), percentile([1.0, 2.0, 3.0, 4.0], 95)
    (2.0, 4.0)
    """
    if not sorted_values:
        return 0.0
    rank = max(1, min(len(sorted_values), int(-(-q * len(sorted_values) // 100))))
    return sorted_values[rank - 1]


def retry_wait(retry_after: float, attempt: int, rng: random.Random) -> float:
    """Seconds the official ``openai`` client waits before retry ``attempt`` (0-based): the
    server's ``Retry-After`` when it is given and at most 60 s, else 0.5 s doubling up to 8 s,
    less up to a quarter of jitter.

    >>> r = random.Random(0)
    >>> retry_wait(3.0, 0, r), 0.375 <= retry_wait(0.0, 0, r) <= 0.5, 6.0 <= retry_wait(0.0, 5, r) <= 8.0
    (3.0, True, True)
    """
    if 0 < retry_after <= 60:
        return retry_after
    return min(0.5 * 2 ** attempt, 8.0) * (1 - 0.25 * rng.random())


async def _request(client: httpx.AsyncClient, kind: str, rng: random.Random, headers: dict[str, str],
                   retries: int) -> Sample:
    """One request, retried after a 429 the way the ``openai`` client does (see :func:`retry_wait`)."""
    seed = rng.random()
    first = time.monotonic()
    for attempt in range(retries + 1):
        sample = await _one(client, kind, random.Random(seed), headers)  # the same question each time
        sample.retries, sample.first_start = attempt, first
        if sample.status != 429 or attempt == retries:
            return sample
        await asyncio.sleep(retry_wait(sample.retry_after, attempt, rng))
    return sample


async def _one(client: httpx.AsyncClient, kind: str, rng: random.Random, headers: dict[str, str]) -> Sample:
    start = time.monotonic()
    q = rng.choice(CHAT_QUESTIONS)
    try:
        if kind == "chat_stream":
            body = {"model": "kb-assistant", "messages": [{"role": "user", "content": q}], "stream": True}
            async with client.stream("POST", "/v1/chat/completions", json=body, headers=headers) as r:
                text = "".join([line async for line in r.aiter_lines()])
                err = "" if r.status_code != 200 or ("[DONE]" in text and '"kb"' in text and
                                                       '"server_error"' not in text) else f"bad stream: {text[-200:]}"
                return _sample(kind, start, r, err)
        if kind == "chat":
            body = {"model": "kb-assistant", "messages": [{"role": "user", "content": q}]}
            r = await client.post("/v1/chat/completions", json=body, headers=headers)
            err = "" if r.status_code != 200 or r.json()["choices"][0]["message"]["content"] else "empty answer"
            return _sample(kind, start, r, err)
        if kind in ("ask", "ask_fast"):
            q = "AM是什么意思？" if kind == "ask_fast" else q
            r = await client.post("/api/ask", json={"question": q}, headers=headers)
            err = "" if r.status_code != 200 or r.json().get("answer") else "empty answer"
            return _sample(kind, start, r, err)
        term = rng.choice(GLOSSARY_TERMS)
        r = await client.get(f"/api/glossary/{term}", headers=headers)
        return _sample(kind, start, r, "" if r.status_code == 200 else f"glossary {term}: {r.status_code}")
    except (httpx.HTTPError, ValueError, KeyError) as exc:
        return Sample(kind, start, time.monotonic(), 0, error=f"{type(exc).__name__}: {exc}")


def _sample(kind: str, start: float, r: httpx.Response, err: str) -> Sample:
    retry = r.headers.get("retry-after", "")
    return Sample(kind, start, time.monotonic(), r.status_code, r.headers.get("x-kb-index-version", ""),
                  r.headers.get("x-kb-adapter-version", ""), "" if r.status_code == 429 else err,
                  float(retry) if retry.replace(".", "", 1).isdigit() else 0.0)


MIX = [("chat_stream", 3), ("chat", 3), ("ask", 3), ("glossary", 2)]


async def _client(url: str, end: float, seed: int, report: Report, headers: dict[str, str],
                  think: tuple[float, float], max_requests: int, timeout: float,
                  events_done: asyncio.Event | None = None, hard_end: float = 0.0, retries: int = 0) -> None:
    rng = random.Random(seed)
    kinds = [k for k, w in MIX for _ in range(w)]
    async with httpx.AsyncClient(base_url=url, timeout=timeout) as client:
        n = 0

        def going() -> bool:  # the period, and on until the admin events are done (bounded)
            now = time.monotonic()
            if n >= max_requests or now >= max(end, hard_end):
                return False
            return now < end or (events_done is not None and not events_done.is_set())

        while going():
            sample = await _request(client, rng.choice(kinds), rng, headers, retries)
            report.samples.append(sample)
            n += 1 + sample.retries
            pause = rng.uniform(*think)
            if sample.status == 429:  # a polite client waits as long as it is told
                pause = max(pause, sample.retry_after or 2.0)
            await asyncio.sleep(max(0.0, min(pause, max(end, hard_end) - time.monotonic())))


async def single_client_chat(url: str, n: int, headers: dict[str, str]) -> list[float]:
    """Seconds of ``n`` non-streaming chat requests for generated (rag) answers, one at a time."""
    out = []
    async with httpx.AsyncClient(base_url=url, timeout=180) as client:
        for i in range(n):
            q = RAG_QUESTIONS[i % len(RAG_QUESTIONS)]
            t = time.monotonic()
            r = await client.post("/v1/chat/completions", headers=headers,
                                  json={"messages": [{"role": "user", "content": q}]})
            r.raise_for_status()
            out.append(time.monotonic() - t)
    return out


async def _admin_events(url: str, report: Report, admin: dict[str, str], seconds: float,
                        publish_adapter: Callable[[], str] | None) -> None:
    """At 20% of the period upload a document and reindex; at 50% publish an adapter."""
    t0 = time.monotonic()
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        await asyncio.sleep(seconds * 0.2)
        r = await client.post("/admin/documents", headers=admin,
                              files=[("files", ("停车管理规定.md", PARKING_DOC, "text/markdown"))])
        report.events["upload_status"] = r.status_code
        r = await client.post("/admin/reindex", headers=admin, json={"full": False})
        job = r.json()
        report.events["reindex_started_s"] = round(time.monotonic() - t0, 2)
        deadline = time.monotonic() + max(120.0, 2 * seconds)
        while job.get("state") in ("queued", "running") and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            job = (await client.get(f"/admin/jobs/{job['id']}", headers=admin)).json()
        report.events["reindex_state"] = job.get("state")
        report.events["reindex_error"] = job.get("error")
        report.events["new_index"] = (job.get("result") or {}).get("version")
        report.events["reindex_done_s"] = round(time.monotonic() - t0, 2)
        if publish_adapter is not None:
            await asyncio.sleep(max(0.0, seconds * 0.5 - (time.monotonic() - t0)))
            report.events["new_adapter"] = await asyncio.to_thread(publish_adapter)
            report.events["adapter_published_s"] = round(time.monotonic() - t0, 2)


async def _scenario(url: str, clients: int, seconds: float, single_n: int, admin: dict[str, str],
                    headers: dict[str, str], publish_adapter: Callable[[], str] | None,
                    think: tuple[float, float], max_requests: int, scale: tuple[float, float] | None,
                    retries: int = 0) -> Report:
    report = Report()
    report.single_samples = await single_client_chat(url, single_n, headers)
    report.single_chat_s = statistics.median(report.single_samples)
    if scale is not None:  # a slow machine gets a proportionally longer period, within a bound
        factor, most = scale
        seconds = min(most, max(seconds, factor * report.single_chat_s))
    report.events["period_s"] = round(seconds, 1)
    timeout = max(60.0, 10 * report.single_chat_s)
    end = time.monotonic() + seconds
    done = asyncio.Event()

    async def events() -> None:
        try:
            await _admin_events(url, report, admin, seconds, publish_adapter)
        finally:
            # a little traffic after the last switch, so "answers after the switch" is measured
            await asyncio.sleep(min(10.0, 2 * report.single_chat_s))
            done.set()

    tasks = [_client(url, end, i, report, headers, think, max_requests, timeout, done, end + seconds, retries)
             for i in range(clients)]
    await asyncio.gather(events(), *tasks)
    # Every client asks once more after the last switch (fast routes: no generation queue).
    async with httpx.AsyncClient(base_url=url, timeout=timeout) as client:
        probes = [_one(client, "glossary" if i % 2 else "ask_fast", random.Random(i), headers) for i in range(clients)]
        report.samples.extend(await asyncio.gather(*probes))
    async with httpx.AsyncClient(base_url=url, timeout=180) as client:
        r = await client.post("/api/ask", json={"question": PARKING_Q}, headers=headers)
        report.events["parking_answer"] = r.json().get("answer", "") if r.status_code == 200 else r.text
        report.events["parking_sources"] = [c["source"] for c in r.json().get("citations", [])] \
            if r.status_code == 200 else []
    report.events.update(version_switch(report.samples, report.events.get("new_index"),
                                        report.events.get("new_adapter")))
    return report


def version_switch(samples: list[Sample], new_index: str | None, new_adapter: str | None) -> dict[str, Any]:
    """After the first response from a new version arrived, requests started later that were
    answered by an older one (must be 0)."""
    out: dict[str, Any] = {}
    for field_name, new in (("index", new_index), ("adapter", new_adapter)):
        answered = [s for s in samples if getattr(s, field_name) and 200 <= s.status < 300]
        first = min((s.end for s in answered if getattr(s, field_name) == new), default=None)
        later = [s for s in answered if first is not None and s.start > first]
        out[f"{field_name}_switched"] = first is not None
        out[f"{field_name}_answers_after_switch"] = len(later)
        out[f"{field_name}_stale_after_switch"] = sum(getattr(s, field_name) != new for s in later)
    return out


def run_scenario(url: str, *, clients: int = 16, seconds: float = 120, single_n: int = 3,
                 admin: dict[str, str], headers: dict[str, str] | None = None,
                 publish_adapter: Callable[[], str] | None = None, think: tuple[float, float] = (0.5, 2.0),
                 max_requests: int = 10_000, scale: tuple[float, float] | None = None,
                 retries: int = 0) -> Report:
    """Run the whole scenario against ``url`` (see the module docstring). ``scale=(k, most)``
    lengthens the period to ``k`` single-client chat times when that is longer, at most ``most`` s;
    ``retries``: 429s each client request waits out before it counts as refused."""
    return asyncio.run(_scenario(url, clients, seconds, single_n, admin, headers or {}, publish_adapter, think,
                                 max_requests, scale, retries))


def zero_adapter_publisher(home: Path) -> Callable[[], str]:
    """Publishes a zero-initialised LoRA (the base model's behaviour) as a new adapter version."""
    def publish() -> str:
        import importlib
        import tempfile

        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
        zero = importlib.import_module("fakes.adapters").zero_lora_adapter
        from router.adapters import AdapterStore

        store = AdapterStore(home)
        with tempfile.TemporaryDirectory() as tmp:
            version = store.add(zero(Path(tmp) / "a"), {"route_accuracy": 1.0}, status="rejected")
        store.publish(version)
        return version
    return publish


def main(argv: list[str] | None = None) -> int:
    import os
    import shutil
    import tempfile

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=120)
    ap.add_argument("--single", type=int, default=3, help="single-client chat requests for the baseline")
    ap.add_argument("--generator", default="llama_cpp", help="llm.backend (llama_cpp, extractive, ...)")
    ap.add_argument("--parallel", type=int, help="llm.parallel (sequences decoded together)")
    ap.add_argument("--threads", type=int, help="llm.n_threads")
    ap.add_argument("--retries", type=int, default=3, help="429s a request waits out (openai client style)")
    ap.add_argument("--out", help="write the JSON report here")
    args = ap.parse_args(argv)

    repo = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(repo))
    sys.path.insert(0, str(repo / "tests"))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ["KB_ADMIN_API_KEY"] = key = "load-test-admin-key-0123456789"
    from fakes.servers import AppServer

    from api.main import create_app
    from config.settings import LLMSettings, Settings
    from knowledge.demo import DOCS_DIR, GLOSSARY_DIR
    from retrieval.store import IndexStore

    home = Path(tempfile.mkdtemp(prefix="kb-load-"))
    try:
        store = IndexStore(home)
        store.add_documents(sorted(p for p in DOCS_DIR.iterdir() if p.is_file()))
        for g in sorted(GLOSSARY_DIR.iterdir()):
            if g.is_file():
                store.add_glossary(g)
        store.build(full=True)
        llm = {"backend": args.generator}
        if args.parallel:
            llm["parallel"] = args.parallel
        if args.threads:
            llm["n_threads"] = args.threads
        settings = Settings(home=home, llm=LLMSettings(**llm))
        with AppServer(create_app(settings)) as url:
            report = run_scenario(url, clients=args.clients, seconds=args.seconds, single_n=args.single,
                                  admin={"Authorization": f"Bearer {key}"},
                                  publish_adapter=zero_adapter_publisher(home), retries=args.retries)
            metrics = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {key}"}).text
        summary = report.summary()
        summary["config"] = {"clients": args.clients, "seconds": args.seconds, "generator": args.generator,
                             "parallel": settings.llm.parallel, "threads": settings.llm.n_threads}
        summary["generation_metrics"] = [line for line in metrics.splitlines() if line.startswith("kb_generation")]
        print(json.dumps(summary, ensure_ascii=False, indent=1))
        if args.out:
            Path(args.out).write_text(json.dumps(summary, ensure_ascii=False, indent=1), encoding="utf-8")
        return 0 if summary["failures"] == 0 else 1
    finally:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
