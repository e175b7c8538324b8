"""DashScope (Alibaba Cloud Model Studio) text embeddings through the official SDK.

The key comes from ``DASHSCOPE_API_KEY`` (never from YAML). ``DASHSCOPE_HTTP_BASE_URL``
points the SDK at another endpoint (a private gateway, or the test stand-in on 127.0.0.1);
it is read on every call and passed as ``base_address`` because the SDK itself reads the
variable only once, at import.
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np

from knowledge.core.errors import ConfigError, KBError, MissingExtraError

from .base import Embedder, l2_normalise
from config.settings import get_settings

DEFAULT_MODEL = "text-embedding-v4"
# Output sizes of the models DashScope serves; v3/v4 take a "dimension" parameter.
_DEFAULT_DIMS = {
    "text-embedding-v1": 1536,
    "text-embedding-v2": 1536,
    "text-embedding-v3": 1024,
    "text-embedding-v4": 1024,
}
_SIZED_MODELS = {"text-embedding-v3", "text-embedding-v4"}
# Texts per request: the service rejects more than 10 for v3/v4 and more than 25 for v1/v2.
_MAX_BATCH = {"text-embedding-v1": 25, "text-embedding-v2": 25}
_RETRY_STATUS = {429, 500, 502, 503, 504}


class DashScopeEmbedder(Embedder):
    """``dashscope.TextEmbedding.call`` with text_type query/document and request batching."""

    name = "dashscope"

    def __init__(
        self,
        model: str = "",
        api_key: str | None = None,
        dimension: int | None = None,
        base_url: str | None = None,
        retries: int = 2,
    ):
        self.model_id = model or DEFAULT_MODEL
        self._api_key = api_key or _configured_key()
        self._base_url = base_url
        self._retries = retries
        try:
            from dashscope import TextEmbedding  # deferred: optional extra [dashscope]
        except ImportError as exc:
            raise MissingExtraError("dashscope", "dashscope") from exc
        self._api = TextEmbedding
        self.max_batch = _MAX_BATCH.get(self.model_id, 10)
        self._dimension = dimension if self.model_id in _SIZED_MODELS else None
        known = dimension or _DEFAULT_DIMS.get(self.model_id)
        # An unknown model: ask the service once rather than guess the size.
        self.dim = int(known) if known else len(self._request(["dimension probe"], "query")[0])

    def embed_batch(self, texts: list[str], kind: str) -> np.ndarray:
        return l2_normalise(np.asarray(self._request(texts, kind), dtype=np.float32))

    def _request(self, texts: list[str], kind: str) -> list[list[float]]:
        params: dict[str, Any] = {"text_type": "query" if kind == "query" else "document"}
        if self._dimension:
            params["dimension"] = self._dimension
        base = self._base_url or os.environ.get("DASHSCOPE_HTTP_BASE_URL") or None
        if base:
            params["base_address"] = base
        for attempt in range(self._retries + 1):
            resp = self._api.call(model=self.model_id, input=texts, api_key=self._api_key, **params)
            if resp.status_code == 200:
                return _vectors(resp.output, len(texts))
            if resp.status_code not in _RETRY_STATUS or attempt == self._retries:
                break
            time.sleep(0.5 * 2**attempt)
        raise KBError(
            f"DashScope embedding request failed (model {self.model_id!r}): "
            f"HTTP {resp.status_code} {resp.code}: {resp.message}"
        )


def _configured_key() -> str:

    secret = get_settings().dashscope_api_key
    if secret is None:
        raise ConfigError(
            "the dashscope embedder needs an API key: set the environment variable DASHSCOPE_API_KEY"
        )
    return secret.get_secret_value()


def _vectors(output: Any, n: int) -> list[list[float]]:
    items = (output or {}).get("embeddings") or []
    if len(items) != n:
        raise KBError(f"DashScope returned {len(items)} embeddings for {n} texts")
    # The service reports each vector's input position as text_index; do not trust order.
    ordered = sorted(items, key=lambda item: item.get("text_index", item.get("index", 0)))
    return [item["embedding"] for item in ordered]
