"""Generation through any OpenAI-compatible chat endpoint (vLLM, llama.cpp server, Ollama, OpenAI).

Settings: ``llm.base_url`` (e.g. ``http://127.0.0.1:8000/v1``), ``llm.model`` (empty =
the first model the server lists), ``llm.timeout_s``; the key comes from
``KB_LLM_API_KEY`` / ``OPENAI_API_KEY`` and defaults to ``"EMPTY"`` for local servers.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from knowledge.core.errors import ConfigError, GenerationError, MissingExtraError
from router.llm.base import Generator, Message, register_generator

if TYPE_CHECKING:
    from config.settings import Settings

# Local servers ignore the key, but the openai client refuses to start without one.
LOCAL_API_KEY = "EMPTY"


class OpenAIGenerator(Generator):
    """Chat completions from an OpenAI-compatible HTTP server."""

    name = "openai"

    def __init__(
        self,
        base_url: str | None,
        *,
        api_key: str = LOCAL_API_KEY,
        model: str = "",
        timeout: float = 120,
    ) -> None:
        try:
            import openai  # deferred: optional extra [openai]
        except ImportError as exc:
            raise MissingExtraError("openai", "openai") from exc
        self.base_url = base_url
        self._model = model
        self._model_lock = threading.Lock()
        # Retries are left to the caller: a slow local model retried 2x triples the wait.
        self._client = openai.OpenAI(base_url=base_url, api_key=api_key, timeout=timeout, max_retries=0)

    @classmethod
    def from_settings(cls, settings: Settings) -> OpenAIGenerator:
        llm = settings.llm
        key = settings.llm_api_key
        if not llm.base_url and key is None:
            # Without a URL the client would call api.openai.com; never do that by accident.
            raise ConfigError("llm.backend 'openai' needs llm.base_url (or an API key for api.openai.com)")
        return cls(
            llm.base_url or None,
            api_key=key.get_secret_value() if key else LOCAL_API_KEY,
            model=llm.model,
            timeout=llm.timeout_s,
        )

    @property
    def model(self) -> str:
        """The model name sent with each request; asked from ``/models`` when not configured."""
        with self._model_lock:
            if not self._model:
                self._model = self._first_model()
            return self._model

    def _first_model(self) -> str:
        with _errors(self.base_url):
            models = self._client.models.list()
            first = next(iter(models), None)
        if first is None:
            raise GenerationError(f"openai backend: server {self.base_url} lists no models; set llm.model")
        return first.id

    def _request(self, messages: list[Message], max_tokens: int, temperature: float,
                 stop: list[str] | None, stream: bool) -> Any:
        return self._client.chat.completions.create(
            model=self.model, messages=messages, max_tokens=max_tokens,  # type: ignore[arg-type]
            temperature=temperature, stop=stop or None, stream=stream,
        )

    def generate(
        self,
        messages: list[Message],
        *,
        max_tokens: int,
        temperature: float,
        stop: list[str] | None = None,
    ) -> str:
        with _errors(self.base_url):
            response = self._request(messages, max_tokens, temperature, stop, stream=False)
        if not response.choices:
            raise GenerationError(f"openai backend: {self.base_url} returned no choices")
        return response.choices[0].message.content or ""

    def stream(
        self,
        messages: list[Message],
        *,
        max_tokens: int,
        temperature: float,
        stop: list[str] | None = None,
    ) -> Iterator[str]:
        with _errors(self.base_url):
            for chunk in self._request(messages, max_tokens, temperature, stop, stream=True):
                if chunk.choices and chunk.choices[0].delta.content:
                    yield chunk.choices[0].delta.content


@contextmanager
def _errors(base_url: str | None) -> Iterator[None]:
    """Turn the openai client's exceptions into ``GenerationError`` with status and message."""
    import openai  # deferred: optional extra [openai]

    where = base_url or "api.openai.com"
    try:
        yield
    except openai.APIStatusError as exc:
        raise GenerationError(f"openai backend: HTTP {exc.status_code} from {where}: {exc.message}") from exc
    except openai.APITimeoutError as exc:
        raise GenerationError(f"openai backend: {where} timed out") from exc
    except openai.APIConnectionError as exc:
        raise GenerationError(f"openai backend: cannot reach {where}: {exc}") from exc


register_generator(OpenAIGenerator.name, OpenAIGenerator)
