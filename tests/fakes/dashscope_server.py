"""A local stand-in for DashScope's text-embedding HTTP API, for tests.

It speaks the wire format the official SDK uses (dashscope 1.x/2.x ``TextEmbedding.call``):

    POST {base}/services/embeddings/text-embedding/text-embedding
    Authorization: Bearer <key>
    {"model": "text-embedding-v4", "input": {"texts": [...]},
     "parameters": {"text_type": "query"|"document", "dimension": 1024}}

    200 {"output": {"embeddings": [{"text_index": 0, "embedding": [...]}, ...]},
         "usage": {"total_tokens": N}, "request_id": "..."}
    4xx {"code": "InvalidParameter", "message": "...", "request_id": "..."}

Vectors are deterministic bags of hashed character bigrams, so texts sharing words get
similar vectors and retrieval through the stand-in behaves sensibly. Embeddings come back
in reverse order (with correct ``text_index``) to prove the client reorders them.

Start it with :func:`start` (binds 127.0.0.1 on a free port); the returned server has
``base_url`` (pass as ``DASHSCOPE_HTTP_BASE_URL``), ``requests`` (what it received) and
``stop()``.
"""

from __future__ import annotations

import hashlib
import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np

PATH = "/api/v1/services/embeddings/text-embedding/text-embedding"
MAX_TEXTS = 10  # v3/v4 limit; the real service rejects bigger batches the same way
DEFAULT_DIM = 1024


def fake_vector(text: str, dim: int) -> list[float]:
    """A unit vector from hashed character unigrams and bigrams of ``text``."""
    vec = np.zeros(dim, dtype=np.float64)
    grams = list(text) + [text[i : i + 2] for i in range(len(text) - 1)]
    for gram in grams or [" "]:
        h = int.from_bytes(hashlib.sha256(gram.encode("utf-8")).digest()[:8], "little")
        vec[h % dim] += 1.0 if (h >> 32) & 1 else -1.0
    norm = np.linalg.norm(vec) or 1.0
    return (vec / norm).tolist()


class _Handler(BaseHTTPRequestHandler):
    server: "FakeDashScope"

    def log_message(self, *args: Any) -> None:  # keep test output clean
        pass

    def do_POST(self) -> None:  # noqa: N802 - http.server naming
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        try:
            body = json.loads(raw or b"{}")
        except json.JSONDecodeError:
            return self._send(400, _error("InvalidParameter", "request body is not JSON"))
        self.server.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
        if self.path != PATH:
            return self._send(404, _error("NotFound", f"no such API: {self.path}"))
        if self.headers.get("Authorization") != f"Bearer {self.server.api_key}":
            return self._send(401, _error("InvalidApiKey", "Invalid API-key provided."))
        texts = (body.get("input") or {}).get("texts")
        if not isinstance(texts, list) or not texts:
            return self._send(400, _error("InvalidParameter", "input.texts must be a non-empty list"))
        if len(texts) > MAX_TEXTS:
            return self._send(400, _error(
                "InvalidParameter", f"batch size is invalid, it should not be larger than {MAX_TEXTS}."))
        params = body.get("parameters") or {}
        dim = int(params.get("dimension") or DEFAULT_DIM)
        items = [{"text_index": i, "embedding": fake_vector(t, dim)} for i, t in enumerate(texts)]
        self._send(200, {
            "output": {"embeddings": list(reversed(items))},
            "usage": {"total_tokens": sum(len(t) for t in texts)},
            "request_id": str(uuid.uuid4()),
        })

    def _send(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def _error(code: str, message: str) -> dict[str, Any]:
    return {"code": code, "message": message, "request_id": str(uuid.uuid4())}


class FakeDashScope(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, api_key: str):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.api_key = api_key
        self.requests: list[dict[str, Any]] = []
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/api/v1"

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


def start(api_key: str = "sk-test") -> FakeDashScope:
    server = FakeDashScope(api_key)
    server._thread.start()
    return server
