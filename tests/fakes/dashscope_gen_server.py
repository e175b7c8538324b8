"""A local stand-in for DashScope's text-generation HTTP API, for tests.

It speaks the wire protocol the ``dashscope`` SDK uses (checked against dashscope 2.0.2):

* ``POST {base}/services/aigc/text-generation/generation`` with
  ``Authorization: Bearer <key>`` and the JSON body
  ``{"model": ..., "input": {"messages": [...]}, "parameters": {...}}``;
* plain reply: ``{"request_id", "output": {"choices": [{"finish_reason", "message":
  {"role", "content"}}]}, "usage": {"input_tokens", "output_tokens", "total_tokens"}}``;
* streaming when the request carries ``X-DashScope-SSE: enable``: ``text/event-stream``
  events ``id:N / event:result / :HTTP_STATUS/200 / data:{same JSON}``; with
  ``parameters.incremental_output`` each event holds only the new text, otherwise the
  text so far; the last event has ``finish_reason: "stop"`` (earlier ones ``"null"``);
* errors: HTTP status with ``{"code", "message", "request_id"}`` (as an ``event:error``
  SSE event when streaming).

Usage::

    with DashScopeStandIn(api_key="sk-test", reply="你好") as server:
        os.environ["DASHSCOPE_HTTP_BASE_URL"] = server.base_url   # ends in /api/v1
        ...
    server.requests  # every request: {"path", "headers", "body"}

Models other than ``server.models`` get 400 ``InvalidParameter``/"Model not exist.";
a wrong key gets 401 ``InvalidApiKey``. ``reply`` may be a string or a function of
the request body; by default it echoes the last user message. ``max_tokens`` cuts the
reply to that many "tokens" (one CJK character or one word each).
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

GENERATION_PATH = "/api/v1/services/aigc/text-generation/generation"
_TOKEN = re.compile(r"[\u3400-\u9fff]|\s*[^\s\u3400-\u9fff]+\s*|\s+")

Reply = str | Callable[[dict[str, Any]], str]


def split_tokens(text: str) -> list[str]:
    """Crude tokens: a CJK character, or a word with its surrounding spaces; joined they give text back.

    >>> split_tokens("Hi there 你好")
    ['Hi ', 'there ', '你', '好']
    """
    return _TOKEN.findall(text)


def echo_reply(body: dict[str, Any]) -> str:
    messages = body.get("input", {}).get("messages", [])
    last_user = next((m.get("content", "") for m in reversed(messages) if m.get("role") == "user"), "")
    return f"Echo: {last_user}"


class DashScopeStandIn:
    """Runs the stand-in on ``127.0.0.1`` in a background thread (a context manager)."""

    def __init__(
        self,
        api_key: str = "sk-test",
        reply: Reply = echo_reply,
        models: tuple[str, ...] = ("qwen-plus", "qwen-turbo", "qwen-max"),
        chunk_tokens: int = 2,
    ) -> None:
        self.api_key = api_key
        self.reply = reply
        self.models = models
        self.chunk_tokens = chunk_tokens  # tokens per SSE event
        self.requests: list[dict[str, Any]] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        # A short poll interval keeps shutdown() quick (it waits for one poll).
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    @property
    def base_url(self) -> str:
        """The HTTP API root to give the SDK (``DASHSCOPE_HTTP_BASE_URL`` / ``base_address``)."""
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/api/v1"

    def start(self) -> DashScopeStandIn:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> DashScopeStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- protocol -------------------------------------------------------------------
    def respond(self, headers: dict[str, str], body: dict[str, Any]) -> tuple[int, dict[str, Any], list[str]]:
        """``(status, error-or-empty, reply pieces)`` for one request."""
        request_id = str(uuid.uuid4())
        auth = headers.get("authorization", "")
        if auth != f"Bearer {self.api_key}":
            return 401, _error("InvalidApiKey", "Invalid API-key provided.", request_id), []
        if body.get("model") not in self.models:
            return 400, _error("InvalidParameter", "Model not exist.", request_id), []
        messages = body.get("input", {}).get("messages")
        if not isinstance(messages, list) or not messages or not all(
            isinstance(m, dict) and "role" in m and "content" in m for m in messages
        ):
            return 400, _error("InvalidParameter", "Input messages must be a non-empty list.", request_id), []
        text = self.reply(body) if callable(self.reply) else self.reply
        tokens = split_tokens(text)
        max_tokens = body.get("parameters", {}).get("max_tokens")
        if isinstance(max_tokens, int) and max_tokens > 0:
            tokens = tokens[:max_tokens]
        return 200, {"request_id": request_id}, tokens


def _error(code: str, message: str, request_id: str) -> dict[str, Any]:
    return {"code": code, "message": message, "request_id": request_id}


def _payload(request_id: str, content: str, finish: str, body: dict[str, Any], n_out: int) -> dict[str, Any]:
    n_in = sum(len(split_tokens(str(m.get("content", "")))) for m in body["input"]["messages"])
    choice = {"finish_reason": finish, "message": {"role": "assistant", "content": content}}
    if body.get("parameters", {}).get("result_format") != "message":
        return {"request_id": request_id, "output": {"text": content, "finish_reason": finish},
                "usage": {"input_tokens": n_in, "output_tokens": n_out}}
    return {"request_id": request_id, "output": {"choices": [choice]},
            "usage": {"input_tokens": n_in, "output_tokens": n_out, "total_tokens": n_in + n_out}}


def _make_handler(stand_in: DashScopeStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - keep test output quiet
            return

        def do_POST(self) -> None:  # noqa: N802 - http.server naming
            headers = {k.lower(): v for k, v in self.headers.items()}
            raw = self.rfile.read(int(headers.get("content-length", "0") or 0))
            try:
                body = json.loads(raw or b"{}")
            except json.JSONDecodeError:
                body = None
            stand_in.requests.append({"path": self.path, "headers": headers, "body": body})
            sse = headers.get("x-dashscope-sse", "").lower() == "enable"
            if self.path != GENERATION_PATH:
                return self._send_error(404, _error("NotFound", f"no such path {self.path}", "none"), sse)
            if not isinstance(body, dict):
                return self._send_error(400, _error("InvalidParameter", "body is not JSON", "none"), sse)
            status, meta, tokens = stand_in.respond(headers, body)
            if status != 200:
                return self._send_error(status, meta, sse)
            if sse:
                return self._send_stream(meta["request_id"], body, tokens)
            content = "".join(tokens)
            self._send_json(200, _payload(meta["request_id"], content, "stop", body, len(tokens)))

        def _send_json(self, status: int, obj: dict[str, Any]) -> None:
            data = json.dumps(obj, ensure_ascii=False).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _send_error(self, status: int, error: dict[str, Any], sse: bool) -> None:
            if not sse:
                return self._send_json(status, error)
            self._start_sse(status)
            self._event(1, "error", status, error)

        def _start_sse(self, status: int) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "text/event-stream;charset=UTF-8")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True

        def _event(self, event_id: int, kind: str, status: int, obj: dict[str, Any]) -> None:
            data = json.dumps(obj, ensure_ascii=False)
            frame = f"id:{event_id}\nevent:{kind}\n:HTTP_STATUS/{status}\ndata:{data}\n\n"
            self.wfile.write(frame.encode("utf-8"))
            self.wfile.flush()

        def _send_stream(self, request_id: str, body: dict[str, Any], tokens: list[str]) -> None:
            incremental = bool(body.get("parameters", {}).get("incremental_output"))
            step = max(1, stand_in.chunk_tokens)
            groups = [tokens[i : i + step] for i in range(0, len(tokens), step)] or [[]]
            self._start_sse(200)
            sent = 0
            for index, group in enumerate(groups, start=1):
                sent += len(group)
                last = index == len(groups)
                content = "".join(group) if incremental else "".join(tokens[:sent])
                payload = _payload(request_id, content, "stop" if last else "null", body, sent)
                self._event(index, "result", 200, payload)

    return Handler
