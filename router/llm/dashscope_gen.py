"""Generation with Alibaba Cloud DashScope (Qwen models) through the ``dashscope`` SDK.

Settings: ``llm.model`` (default ``qwen-plus``), ``llm.timeout_s`` and ``llm.base_url``
(the DashScope HTTP API root such as ``https://dashscope-intl.aliyuncs.com/api/v1``;
empty = ``DASHSCOPE_HTTP_BASE_URL`` from the environment, else the SDK's default).
The key comes only from ``DASHSCOPE_API_KEY``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from knowledge.core.errors import ConfigError, GenerationError, MissingExtraError
from router.llm.base import Generator, Message, register_generator

if TYPE_CHECKING:
    from config.settings import Settings

DEFAULT_MODEL = "qwen-plus"


class DashScopeGenerator(Generator):
    """Chat generation with ``dashscope.Generation.call(result_format="message")``."""

    name = "dashscope"

    def __init__(
        self,
        api_key: str,
        *,
        model: str = DEFAULT_MODEL,
        base_url: str = "",
        timeout: float = 120,
    ) -> None:
        try:
            import dashscope  # deferred: optional extra [dashscope]
        except ImportError as exc:
            raise MissingExtraError("dashscope", "dashscope") from exc
        if not api_key:
            raise ConfigError("llm.backend 'dashscope' needs DASHSCOPE_API_KEY in the environment")
        self._call = dashscope.Generation.call
        self.api_key = api_key
        self.model = model or DEFAULT_MODEL
        # The SDK reads DASHSCOPE_HTTP_BASE_URL once at import; read it here so a later
        # setting still counts, and pass it per call instead of patching the SDK's globals.
        self.base_url = base_url or os.environ.get("DASHSCOPE_HTTP_BASE_URL", "")
        self.timeout = timeout

    @classmethod
    def from_settings(cls, settings: Settings) -> DashScopeGenerator:
        key = settings.dashscope_api_key
        return cls(
            key.get_secret_value() if key else "",
            model=settings.llm.model,
            base_url=settings.llm.base_url,
            timeout=settings.llm.timeout_s,
        )

    def _request(self, messages: list[Message], max_tokens: int, temperature: float,
                 stop: list[str] | None, stream: bool) -> Any:
        kwargs: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "result_format": "message",
            "api_key": self.api_key,
            "max_tokens": max_tokens,
            "temperature": temperature,
            "request_timeout": self.timeout,
        }
        if stop:
            kwargs["stop"] = stop
        if stream:
            kwargs.update(stream=True, incremental_output=True)
        if self.base_url:
            kwargs["base_address"] = self.base_url
        try:
            return self._call(**kwargs)
        except Exception as exc:  # the SDK raises requests/aiohttp/its own errors alike
            raise GenerationError(f"dashscope backend ({self.model}): {type(exc).__name__}: {exc}") from exc

    def generate(
        self,
        messages: list[Message],
        *,
        max_tokens: int,
        temperature: float,
        stop: list[str] | None = None,
    ) -> str:
        response = self._request(messages, max_tokens, temperature, stop, stream=False)
        return self._content(response)

    def stream(
        self,
        messages: list[Message],
        *,
        max_tokens: int,
        temperature: float,
        stop: list[str] | None = None,
    ) -> Iterator[str]:
        responses = self._request(messages, max_tokens, temperature, stop, stream=True)
        try:
            for response in responses:
                piece = self._content(response)
                if piece:
                    yield piece
        except GenerationError:
            raise
        except Exception as exc:  # connection dropped mid-stream
            raise GenerationError(f"dashscope backend ({self.model}): {type(exc).__name__}: {exc}") from exc

    def _content(self, response: Any) -> str:
        if response.status_code != HTTPStatus.OK:
            raise GenerationError(
                f"dashscope backend ({self.model}): HTTP {response.status_code} "
                f"{response.code or ''}: {response.message or ''}".rstrip()
            )
        choices = (response.output or {}).get("choices") or []
        if not choices:
            return ""
        message = choices[0].get("message") or {}
        return message.get("content") or ""


register_generator(DashScopeGenerator.name, DashScopeGenerator)
