"""Load under change, in CI: 16 clients for a bounded period against the real packaged model
(continuous batching in llama.cpp) while an upload, a reindex and an adapter publish happen.

The long variant is ``python benchmarks/load.py`` (120 s by default)."""

from __future__ import annotations

import json
import os
import sys
import warnings
from pathlib import Path

import pytest
from fakes.servers import AppServer

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import load  # noqa: E402

KEY = "admin-load-key-0123456789"
CLIENTS, SECONDS = 16, 45
RETRIES = 3          # 429s a client request waits out (Retry-After), as the official openai client does
REFUSED_SHARE = 0.05  # requests still refused after their retries
# p95 of the answering attempt over the single-client chat time, on an idle machine. Refused callers
# now come back by appointment (llama_batch: Retry-After spread one completion apart) and are
# served instead of refused again: at the same offered load more generations share the 4 sequences,
# so the answered ones are slower. Measured here with one decode thread: 3-4 % refused after
# retries at p95/single 4.5-5.1 (before the appointments: 24 % refused at about 1.8-2.0).
P95_OVER_SINGLE = 6.0
GLOSSARY_P95_S = 1.0


@pytest.mark.load
def test_sixteen_clients_through_upload_reindex_and_adapter_publish(copy_home, monkeypatch, capsys):
    from api.main import create_app
    from config.settings import LLMSettings, Settings

    # The latency bound is a claim about this service, not about other people's work on the
    # machine: it is asserted when the machine was otherwise idle when the test began.
    busy_before = os.getloadavg()[0] / max(1, len(os.sched_getaffinity(0)))
    monkeypatch.setenv("KB_ADMIN_API_KEY", KEY)
    # One decode thread: on a shared 2-core machine the second core is the API's (README, Threads).
    settings = Settings(home=copy_home, llm=LLMSettings(backend="llama_cpp", n_ctx=2048, parallel=4, n_threads=1,
                                                        max_tokens=64))
    app = create_app(settings)
    with AppServer(app) as url:
        report = load.run_scenario(url, clients=CLIENTS, seconds=SECONDS, single_n=2,
                                   admin={"Authorization": f"Bearer {KEY}"},
                                   publish_adapter=load.zero_adapter_publisher(copy_home), max_requests=400,
                                   scale=(4.0, 240.0), retries=RETRIES)
        gen = app.state.holder.engine.generator.stats()
    summary = report.summary()
    summary["generation"] = gen
    with capsys.disabled():
        print("\nload test:", json.dumps({k: v for k, v in summary.items() if k != "failure_examples"},
                                        ensure_ascii=False))
    ev = summary["events"]
    assert summary["failures"] == 0, summary["failure_examples"]  # no error but 429
    assert summary["requests"] >= CLIENTS and ev["upload_status"] == 201
    assert ev["reindex_state"] == "succeeded", ev
    assert ev["index_switched"] and ev["index_stale_after_switch"] == 0, ev
    assert ev["adapter_switched"] and ev["adapter_stale_after_switch"] == 0, ev
    assert "150" in ev["parking_answer"] and "停车管理规定.md" in ev["parking_sources"], ev
    # 429 is the answer when a generation would wait past the latency bound; a client waits out
    # Retry-After and asks again (up to RETRIES times, as the openai client does). What is still
    # refused after that is the service's real refusal rate.
    assert summary["rejected_429"] <= REFUSED_SHARE * summary["requests"], summary
    assert summary["by_kind"]["glossary"]["p95_s"] <= GLOSSARY_P95_S, summary
    assert gen["completed"] > 0 and gen["failed"] == 0
    single = summary["single_client_chat_s"]
    fast = summary["by_kind"]["glossary"]["p95_s"], summary["by_kind"]["ask_fast"]["p95_s"]
    assert max(fast) <= single, summary  # fast routes never wait behind generation
    if busy_before < 1.0:
        assert summary["p95_s"] <= P95_OVER_SINGLE * single, summary
    else:
        warnings.warn(f"p95 {summary['p95_s']} s = {summary['p95_over_single']}x the single-client chat time; "
                      f"not asserted: the machine was busy ({busy_before:.1f} runnable per core) before the test")
