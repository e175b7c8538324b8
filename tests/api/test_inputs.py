"""Bounded inputs and what the server tells strangers (issue 21, items 4-6), against a real
uvicorn server on 127.0.0.1: the body limit (413 before parsing and before the key), history
limits, the prompt fitted to the model's window, the failed-key limiter, 4xx/507 instead of
5xx for bad input, /healthz and /metrics exposure, generic error bodies; and a bounded
hostile-input run during which /healthz keeps answering."""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path
from typing import Iterator

import httpx
import pytest
from fakes.servers import AppServer

KEY = "admin-inputs-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}
CHAT_KEY = "chat-inputs-key-0123456789"
MB = 1024 * 1024


def _settings(home: Path, **api: object):
    from config.settings import APISettings, Settings

    return Settings(home=home, api=APISettings(**api)) if api else Settings(home=home)


def _app(home: Path, generator: object = None, **api: object):
    from api.main import create_app
    from retrieval.store import IndexStore
    from router.engine import Engine
    from router.llm.extractive import ExtractiveGenerator

    settings = _settings(home, **api)
    engine = Engine(settings, IndexStore(home, settings).load(), generator=generator or ExtractiveGenerator())
    return create_app(settings, engine=engine)


@pytest.fixture()
def admin_key(monkeypatch):
    monkeypatch.setenv("KB_ADMIN_API_KEY", KEY)


def _raw(url: str, head: str, chunks: Iterator[bytes], timeout: float = 20) -> tuple[int, bytes, float]:
    """Send ``head`` then the body ``chunks`` over a plain socket, stopping as soon as the server
    answers (a server that refuses early may close before the body is sent). Returns the status,
    the response bytes and the seconds until the status line came."""
    host, port = url.rsplit("/", 1)[-1].split(":")
    start = time.monotonic()
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(head.encode("latin-1"))
        sock.setblocking(False)
        data = b""

        def read() -> bytes:
            try:
                return sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                return b""
            except (ConnectionResetError, BrokenPipeError):
                return b""

        for chunk in chunks:
            data += read()
            if b"\r\n" in data or time.monotonic() - start > timeout:
                break
            try:
                sock.setblocking(True)
                sock.settimeout(1)
                sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError, TimeoutError, socket.timeout):
                break
            finally:
                sock.setblocking(False)
        sock.setblocking(True)
        sock.settimeout(max(1.0, timeout - (time.monotonic() - start)))
        while b"\r\n\r\n" not in data:
            try:
                more = sock.recv(65536)
            except (ConnectionResetError, TimeoutError, socket.timeout):
                break
            if not more:
                break
            data += more
    took = time.monotonic() - start
    status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/") else 0
    return status, data, took


def _body_of(url: str, method: str, path: str, size: int, key: str = "", chunked: bool = False) -> tuple[int, float]:
    """A ``size``-byte JSON-ish body sent for real, in 1 MiB pieces."""
    auth = f"Authorization: Bearer {key}\r\n" if key else ""
    length = "Transfer-Encoding: chunked\r\n" if chunked else f"Content-Length: {size}\r\n"
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n{auth}{length}\r\n"

    def pieces() -> Iterator[bytes]:
        sent = 0
        while sent < size:
            n = min(MB, size - sent)
            piece = b"[" + b"1," * ((n - 2) // 2) + b"1]"[: n - 1 - 2 * ((n - 2) // 2)]
            piece = piece[:n].ljust(n, b" ")
            sent += n
            yield (f"{n:x}\r\n".encode() + piece + b"\r\n") if chunked else piece
        if chunked:
            yield b"0\r\n\r\n"

    status, _, took = _raw(url, head, pieces())
    return status, took


# --- 4. bodies ---------------------------------------------------------------------------------
def test_a_body_over_the_limit_is_413_before_it_is_read_parsed_or_keyed(copy_home, admin_key):
    with AppServer(_app(copy_home)) as url:
        # 30 MB unauthenticated to an admin route: refused from Content-Length, before any byte is read.
        status, took = _body_of(url, "PUT", "/admin/glossary", 30 * MB)
        assert status == 413 and took < 5, (status, took)
        # Without Content-Length (chunked): counted as it arrives, refused past the limit.
        status, took = _body_of(url, "POST", "/v1/chat/completions", 5 * MB, chunked=True)
        assert status == 413 and took < 10, (status, took)
        # The admin key is checked before the body is parsed: broken JSON without the key is 401, not 422.
        r = httpx.put(f"{url}/admin/glossary", content=b"{not json", headers={"Content-Type": "application/json"})
        assert r.status_code == 401, r.text
        r = httpx.put(f"{url}/admin/glossary", content=b"{not json", headers={**AUTH, "Content-Type": "application/json"})
        assert r.status_code == 422, r.text
        # A body under the limit is served as before.
        r = httpx.post(f"{url}/api/ask", json={"question": "AM是什么意思？"}, timeout=60)
        assert r.status_code == 200, r.text
    with AppServer(_app(copy_home, max_body_mb=0.01)) as url:  # the setting decides
        r = httpx.post(f"{url}/api/ask", json={"question": "AM是什么意思？", "history": [
            {"role": "assistant", "content": "x" * 20000}]})
        assert r.status_code == 413 and "api.max_body_mb" in r.json()["detail"], r.text


def test_uploads_have_their_own_larger_limit(copy_home, admin_key):
    with AppServer(_app(copy_home, max_body_mb=0.01)) as url:
        doc = ("# 停车管理规定\n\n" + "第一条 员工停车费每月150元。\n" * 2000).encode("utf-8")  # ~70 KB > 0.01 MB
        r = httpx.post(f"{url}/admin/documents", headers=AUTH, files=[("files", ("停车.md", doc, "text/markdown"))],
                       timeout=60)
        assert r.status_code == 201, r.text


def test_history_is_bounded_in_turns_and_characters(copy_home):
    with AppServer(_app(copy_home, max_history_turns=4, max_history_chars=300, max_question_chars=100)) as url:
        def chat(history: list[dict[str, str]]) -> httpx.Response:
            return httpx.post(f"{url}/v1/chat/completions", timeout=60,
                              json={"messages": [*history, {"role": "user", "content": "AM是什么意思？"}]})

        def ask(history: list[dict[str, str]]) -> httpx.Response:
            return httpx.post(f"{url}/api/ask", json={"question": "AM是什么意思？", "history": history}, timeout=60)

        turns = [{"role": "user", "content": "一线城市住宿标准？"}, {"role": "assistant", "content": "每晚500元。"}]
        for call in (chat, ask):
            assert call(turns).status_code == 200
            many = call(turns * 3)
            assert many.status_code == 422 and "api.max_history_turns" in many.json()["detail"], many.text
            long = call([{"role": "assistant", "content": "好" * 301}])
            assert long.status_code == 422 and "api.max_history_chars" in long.json()["detail"], long.text
            # An earlier user turn can become the standalone question: it obeys the question limit.
            first = call([{"role": "user", "content": "住" * 101}])
            assert first.status_code == 422 and "api.max_question_chars" in first.json()["detail"], first.text


# --- 4. the prompt fits the model's window --------------------------------------------------------
@pytest.fixture(scope="module")
def small_window_llama():
    from config.settings import LLMSettings, Settings
    from router.llm import create_generator

    return create_generator(Settings(llm=LLMSettings(backend="llama_cpp", n_ctx=512, parallel=1, n_threads=1)))


def test_a_prompt_over_the_window_is_fitted_not_refused(small_window_llama):
    from router.llm.llama_cpp import prompt_budget
    from router.llm.prompts import build_rag_messages, fit_messages, parse_rag_messages

    gen = small_window_llama
    passages = ["一线城市住宿标准为每晚500元。"] + [f"第{i}条 其他规定：" + "员工应遵守公司制度。" * 12 for i in range(12)]
    msgs = build_rag_messages("一线城市住宿标准是多少？", passages, "zh")
    assert len(gen.tokens(msgs)[0]) > 512  # far over the window
    text = gen.generate(msgs, max_tokens=16, temperature=0)  # was: GenerationError (502)
    assert isinstance(text, str)
    fitted = fit_messages(msgs, lambda ms: len(gen.tokens(ms)[0]), prompt_budget(512, 16))
    question, kept = parse_rag_messages(fitted)
    assert question == "一线城市住宿标准是多少？" and kept[0] == passages[0] and 1 <= len(kept) < len(passages)
    # A question alone longer than the window is clipped too.
    assert isinstance(gen.generate([{"role": "user", "content": "word " * 3000}], max_tokens=4, temperature=0), str)


def test_chat_answers_when_question_and_passages_exceed_n_ctx(copy_home, small_window_llama):
    settings_q = "出差住宿超标了怎么办？" * 30  # with its passages, over the 512-token window
    with AppServer(_app(copy_home, generator=small_window_llama, max_question_chars=4000)) as url:
        r = httpx.post(f"{url}/api/ask", json={"question": settings_q}, timeout=120)
        assert r.status_code == 200, r.text


# --- 4. the failed-key limiter -------------------------------------------------------------------
def test_wrong_keys_never_lock_out_the_right_key_or_chat_users(copy_home, admin_key, monkeypatch):
    monkeypatch.setenv("KB_CHAT_API_KEY", CHAT_KEY)
    with AppServer(_app(copy_home, max_auth_failures=3, auth_window_s=60)) as url:
        codes = [httpx.get(f"{url}/admin/jobs", headers={"X-API-Key": f"guess{i}"}).status_code for i in range(5)]
        assert codes == [401, 401, 401, 429, 429]
        assert httpx.get(f"{url}/admin/jobs", headers=AUTH).status_code == 200  # the right key: always
        wrong = httpx.get(f"{url}/admin/jobs", headers={"X-API-Key": "guess9"})
        assert wrong.status_code == 429 and int(wrong.headers["retry-after"]) >= 1
        # Admin failures never limit chat: the chat key works, a wrong chat key is a plain 401.
        assert httpx.get(f"{url}/v1/models", headers={"X-API-Key": CHAT_KEY}).status_code == 200
        assert httpx.get(f"{url}/v1/models", headers={"X-API-Key": "nope"}).status_code == 401
        assert httpx.post(f"{url}/api/ask", json={"question": "AM是什么意思？"}, timeout=60,
                          headers={"X-API-Key": CHAT_KEY}).status_code == 200


def test_the_proxy_header_is_believed_only_from_a_trusted_peer(copy_home, admin_key):
    def guesses(url: str, client: str, n: int) -> list[int]:
        return [httpx.get(f"{url}/admin/jobs", headers={"X-API-Key": f"g{i}", "X-Forwarded-For": client}).status_code
                for i in range(n)]

    trusted = dict(max_auth_failures=2, auth_window_s=60, client_ip_header="X-Forwarded-For",
                   trusted_proxies=["127.0.0.1"])
    with AppServer(_app(copy_home, **trusted)) as url:  # behind our load balancer: one client per header
        assert guesses(url, "203.0.113.7", 3) == [401, 401, 429]
        assert guesses(url, "198.51.100.9", 1) == [401]  # another client behind the same proxy
        spoof = httpx.get(f"{url}/admin/jobs", headers={"X-API-Key": "g", "X-Forwarded-For": "10.9.9.9, 203.0.113.7"})
        assert spoof.status_code == 429  # the right-most untrusted address counts, not the client's claim
    untrusted = {**trusted, "trusted_proxies": ["10.0.0.0/8"]}
    with AppServer(_app(copy_home, **untrusted)) as url:  # the peer is not a proxy: its header is ignored
        assert guesses(url, "203.0.113.7", 2) == [401, 401]
        assert guesses(url, "198.51.100.9", 1) == [429]
    with AppServer(_app(copy_home, max_auth_failures=2, auth_window_s=60)) as url:  # off by default
        assert guesses(url, "203.0.113.7", 2) == [401, 401] and guesses(url, "198.51.100.9", 1) == [429]


# --- 5. no 5xx from bad input ----------------------------------------------------------------------
def test_a_number_as_a_content_part_is_422_without_a_key(copy_home, admin_key):
    with AppServer(_app(copy_home)) as url:
        r = httpx.post(f"{url}/v1/chat/completions",
                       json={"messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]})
        assert r.status_code == 422, r.text
        ok = httpx.post(f"{url}/v1/chat/completions", timeout=60, json={"messages": [{"role": "user", "content": [
            {"type": "text", "text": "AM是什么意思？"}, {"type": "image_url", "image_url": {"url": "x"}}]}]})
        assert ok.status_code == 200, ok.text


def test_a_nul_byte_in_a_document_name_is_400(copy_home, admin_key):
    with AppServer(_app(copy_home)) as url:
        for name in ("a%00b", "a%01b.md", "x" * 5000):
            r = httpx.delete(f"{url}/admin/documents/{name}", headers=AUTH)
            assert r.status_code in (400, 404), (name, r.status_code, r.text)
        assert httpx.delete(f"{url}/admin/documents/a%00b", headers=AUTH).status_code == 400


def _documents(home: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for folder in ("documents", "glossary") for p in sorted((home / folder).glob("*"))
            if p.is_file()}


@pytest.mark.parametrize("point", ["upload.stage", "upload.commit"])
def test_a_full_disk_during_an_upload_is_507_and_stores_nothing(copy_home, admin_key, monkeypatch, point):
    before = _documents(copy_home)
    existing = sorted((copy_home / "documents").glob("*.md"))[0].name
    files = [("files", ("停车管理规定.md", "# 停车\n\n第一条 停车费每月150元。\n".encode(), "text/markdown")),
             ("files", (existing, "# 改写\n\n全部改写的内容。\n".encode(), "text/markdown"))]
    with AppServer(_app(copy_home)) as url:
        monkeypatch.setenv("KB_FAILPOINTS", f"{point}=enospc")
        r = httpx.post(f"{url}/admin/documents", headers=AUTH, files=files, timeout=60)
        assert r.status_code == 507, r.text
        assert "No space" not in r.text and r.json()["request_id"]
        assert _documents(copy_home) == before  # all or none: the replaced file is back, the new one gone
        assert not any((copy_home / ".uploads").iterdir())
        monkeypatch.delenv("KB_FAILPOINTS")
        r = httpx.post(f"{url}/admin/documents", headers=AUTH, files=files, timeout=60)
        assert r.status_code == 201, r.text  # and the disk once free again, the same upload works


# --- 6. what the server tells strangers ---------------------------------------------------------
def test_healthz_details_and_metrics_need_the_admin_key(copy_home, admin_key):
    with AppServer(_app(copy_home)) as url:
        public = httpx.get(f"{url}/healthz")
        assert public.status_code == 200 and public.json()["status"] == "ok"
        assert set(public.json()) <= {"status", "index_version", "adapter_version"}, public.json()
        assert str(copy_home) not in public.text and ".gguf" not in public.text
        full = httpx.get(f"{url}/healthz", headers=AUTH).json()
        assert full["chunks"] > 0 and full["embedder"] and full["generator"] and full["worker"] > 0
        wrong = httpx.get(f"{url}/healthz", headers={"X-API-Key": "wrong"})  # a health check never fails on a key
        assert wrong.status_code == 200 and set(wrong.json()) <= {"status", "index_version", "adapter_version"}
        assert httpx.get(f"{url}/metrics").status_code == 401
        assert "kb_http_requests_total" in httpx.get(f"{url}/metrics", headers=AUTH).text
    with AppServer(_app(copy_home, metrics_public=True)) as url:
        assert httpx.get(f"{url}/metrics").status_code == 200


def test_without_an_admin_key_a_loopback_server_shows_everything(copy_home):
    with AppServer(_app(copy_home)) as url:
        assert httpx.get(f"{url}/metrics").status_code == 200
        assert httpx.get(f"{url}/healthz").json()["chunks"] > 0
    with AppServer(_app(copy_home, metrics_public=False)) as url:  # closed, and no key to open it
        assert httpx.get(f"{url}/metrics").status_code == 403


class _Failing:
    """A generator whose upstream fails the way a remote one does: its error names the upstream."""

    name = "openai"

    def generate(self, messages, *, max_tokens, temperature, stop=None):
        from knowledge.core.errors import GenerationError

        raise GenerationError("POST http://10.1.2.3:8080/v1/chat/completions: connection refused (model qwen.gguf)")

    def stream(self, messages, *, max_tokens, temperature, stop=None):
        yield "住宿超标需要审批。"  # the status line goes out with the first sentence, then it fails
        self.generate(messages, max_tokens=max_tokens, temperature=temperature)


def test_error_bodies_are_generic_with_a_request_id(copy_home, caplog):
    question = {"messages": [{"role": "user", "content": "出差住宿超标了怎么办？"}]}
    with AppServer(_app(copy_home, generator=_Failing())) as url:
        r = httpx.post(f"{url}/v1/chat/completions", json=question, timeout=60)
        assert r.status_code == 502, r.text
        rid = r.json()["request_id"]
        assert rid and rid in r.json()["detail"] and r.headers["x-request-id"] == rid
        assert "10.1.2.3" not in r.text and "gguf" not in r.text and "refused" not in r.text
        with httpx.stream("POST", f"{url}/v1/chat/completions", json={**question, "stream": True}, timeout=60) as s:
            text = "".join(s.iter_text())
        assert s.status_code == 200 and '"server_error"' in text and "request id" in text, text
        assert "10.1.2.3" not in text and "GenerationError" not in text
    assert "10.1.2.3" in caplog.text  # the detail is in the server log
    with AppServer(_app(copy_home, generator=_Broken())) as url:  # a bug, not an upstream failure
        r = httpx.post(f"{url}/v1/chat/completions", json=question, timeout=60)
        assert r.status_code == 500 and r.json()["request_id"], r.text
        assert "/srv/secret" not in r.text and "RuntimeError" not in r.text


class _Broken(_Failing):
    def generate(self, messages, *, max_tokens, temperature, stop=None):
        raise RuntimeError("cannot open /srv/secret/model.bin")


# --- the acceptance run: hostile input against a running server ----------------------------------
def test_hostile_inputs_get_a_prompt_4xx_and_healthz_keeps_answering(copy_home, admin_key):
    slow: list[float] = []
    stop = threading.Event()

    def watch(url: str) -> None:
        while not stop.is_set():
            t = time.monotonic()
            try:
                ok = httpx.get(f"{url}/healthz", timeout=5).status_code == 200
            except httpx.HTTPError:
                ok = False
            took = time.monotonic() - t
            slow.append(took if ok else 99.0)
            stop.wait(0.1)

    with AppServer(_app(copy_home)) as url:
        watcher = threading.Thread(target=watch, args=(url,), daemon=True)
        watcher.start()
        try:
            results = {}
            history = [{"role": "user", "content": "住" * 1000}, {"role": "assistant", "content": "好" * 1000}] * 1300
            body = json.dumps({"messages": [*history, {"role": "user", "content": "AM是什么意思？"}]}).encode()
            assert len(body) > 5 * MB
            status, _, took = _raw(url, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: "
                                   f"application/json\r\nContent-Length: {len(body)}\r\n\r\n",
                                   iter([body[i:i + MB] for i in range(0, len(body), MB)]))
            results["5 MB history"] = (status, took)
            results["30 MB admin body"] = _body_of(url, "PUT", "/admin/glossary", 30 * MB)
            t = time.monotonic()
            r = httpx.post(f"{url}/v1/chat/completions", timeout=30,
                           json={"messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]})
            results["number content part"] = (r.status_code, time.monotonic() - t)
            t = time.monotonic()
            r = httpx.delete(f"{url}/admin/documents/a%00b", headers=AUTH, timeout=30)
            results["NUL in a document name"] = (r.status_code, time.monotonic() - t)
        finally:
            stop.set()
            watcher.join(timeout=10)
        after = httpx.get(f"{url}/healthz", headers=AUTH).json()
        answer = httpx.post(f"{url}/api/ask", json={"question": "AM是什么意思？"}, timeout=60)
    for name, (status, took) in results.items():
        assert 400 <= status < 500 and took < 5, (name, status, took, results)
    assert slow and max(slow) < 2.0, max(slow)
    assert after["status"] == "ok" and answer.status_code == 200
