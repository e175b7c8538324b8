"""HTTP API over a real uvicorn server on 127.0.0.1, driven by httpx and the official openai client."""

from __future__ import annotations

from typing import Iterator

import httpx
import pytest
from fakes.servers import AppServer


@pytest.fixture(scope="module")
def base_url(demo_settings, extractive_engine) -> Iterator[str]:
    from api.main import create_app

    with AppServer(create_app(demo_settings, engine=extractive_engine)) as url:
        yield url


def test_healthz_reports_index_version(base_url, demo_index):
    r = httpx.get(f"{base_url}/healthz")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok"
    assert body["index_version"] == demo_index.version
    assert body["chunks"] == len(demo_index.chunks) > 0
    assert body["glossary_terms"] >= 30


def test_native_ask_returns_answer_object(base_url):
    r = httpx.post(f"{base_url}/api/ask", json={"question": "AM是什么意思？"}, timeout=60)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["route"] == "glossary"
    assert "客户经理" in body["answer"]
    assert set(body) >= {"answer", "route", "confidence", "terms", "rewritten_query", "citations",
                         "verification", "timings_ms"}
    assert body["terms"][0]["term"] == "AM"


def test_glossary_endpoint(base_url):
    r = httpx.get(f"{base_url}/api/glossary/PM")
    assert r.status_code == 200
    meanings = {m["chinese"] for m in r.json()["meanings"]}
    assert {"产品经理", "项目经理"} <= meanings
    assert httpx.get(f"{base_url}/api/glossary/NOSUCHTERM").status_code == 404


@pytest.mark.parametrize(
    "payload",
    [
        {"question": ""},
        {"question": "   "},
        {"question": "报销" * 10_000},
        {"question": "AM?", "unknown_field": 1},
        {"history": []},
        {"question": 42},
    ],
)
def test_bad_ask_input_is_4xx(base_url, payload):
    r = httpx.post(f"{base_url}/api/ask", json=payload, timeout=30)
    assert 400 <= r.status_code < 500, r.text
    assert r.json()["detail"]


def test_broken_json_is_4xx(base_url):
    r = httpx.post(f"{base_url}/api/ask", content=b"{\"question\": ", headers={"content-type": "application/json"})
    assert 400 <= r.status_code < 500
    r = httpx.post(f"{base_url}/v1/chat/completions", content=b"not json", headers={"content-type": "application/json"})
    assert 400 <= r.status_code < 500


def test_chat_bad_input_is_4xx(base_url):
    for payload in ({"messages": []}, {"messages": [{"role": "assistant", "content": "hi"}]},
                    {"messages": [{"role": "user", "content": "x" * 20_000}]}, {"model": "kb"}):
        r = httpx.post(f"{base_url}/v1/chat/completions", json=payload, timeout=30)
        assert 400 <= r.status_code < 500, (payload, r.text)
        assert r.json()["error"]["message"]


def test_openai_client_non_streaming(base_url):
    from openai import OpenAI

    client = OpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0)
    models = client.models.list()
    assert models.data[0].id == "kb-assistant"
    r = client.chat.completions.create(model="kb-assistant",
                                       messages=[{"role": "system", "content": "ignored"},
                                                 {"role": "user", "content": "What does PO stand for?"}])
    text = r.choices[0].message.content
    assert "Purchase Order" in text and "Product Owner" in text
    kb = r.model_extra["kb"]
    assert kb["route"] == "glossary"


def test_openai_client_streaming(base_url):
    from openai import OpenAI

    client = OpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0)
    stream = client.chat.completions.create(model="kb-assistant", stream=True,
                                            messages=[{"role": "user", "content": "公司的股票代码是多少？"}])
    pieces, final_kb = [], None
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
        if getattr(chunk, "model_extra", None) and chunk.model_extra.get("kb"):
            final_kb = chunk.model_extra["kb"]
    assert final_kb is not None and final_kb["route"] == "refuse"
    assert "".join(pieces) == final_kb["answer"]


def test_chat_api_key_when_configured(demo_settings, extractive_engine, monkeypatch):
    from api.main import create_app

    monkeypatch.setenv("KB_CHAT_API_KEY", "s3cret-test-key")
    with AppServer(create_app(demo_settings, engine=extractive_engine)) as url:
        q = {"question": "AM是什么意思？"}
        assert httpx.post(f"{url}/api/ask", json=q).status_code == 401
        assert httpx.post(f"{url}/api/ask", json=q, headers={"Authorization": "Bearer wrong"}).status_code == 401
        ok = httpx.post(f"{url}/api/ask", json=q, headers={"Authorization": "Bearer s3cret-test-key"}, timeout=60)
        assert ok.status_code == 200
        assert httpx.get(f"{url}/healthz").status_code == 200
