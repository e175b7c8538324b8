"""Every dependency of the HTTP routes, as ``Annotated[..., Depends(...)]`` aliases."""

from __future__ import annotations

import hmac
import threading
import time
from collections import deque
from typing import Annotated, Any, Callable, Coroutine

from fastapi import Depends, Header, HTTPException, Request, Response, status
from fastapi.routing import APIRoute

from api.limits import client_address
from knowledge.core.errors import ValidationError


def get_engine(request: Request, response: Response) -> Any:
    """The engine the app's holder serves now (fetched once per request, so one request never
    mixes versions); the versions it answers from go out as response headers."""
    holder = request.app.state.holder
    engine = holder.engine
    if engine is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "no knowledge base is loaded; run `kb index`")
    version_headers(response.headers, engine, holder)
    return engine


def version_headers(headers: Any, engine: Any, holder: Any) -> None:
    """``X-KB-Index-Version`` / ``X-KB-Adapter-Version`` of the engine answering."""
    headers["X-KB-Index-Version"] = str(getattr(engine.index, "version", "") or "")
    served = getattr(holder, "serving", None)
    if served is not None and getattr(served, "index", None) == getattr(engine.index, "version", None):
        headers["X-KB-Adapter-Version"] = str(served.adapter or "")


def get_settings(request: Request) -> Any:
    return request.app.state.settings


def _key_ok(given: str | None, expected: str) -> bool:
    # Constant-time comparison so the key cannot be guessed byte by byte from timings.
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def _bearer(authorization: str | None, x_api_key: str | None) -> str | None:
    if x_api_key:
        return x_api_key
    if authorization and authorization.lower().startswith("bearer "):
        return authorization[7:].strip()
    return None


class FailureLimiter:
    """Failed key attempts per client within a sliding window.

    After ``limit`` failures in ``window_s`` seconds a client's further wrong keys get 429
    (with ``Retry-After``) instead of 401 until its oldest failure leaves the window. The right
    key is always checked and accepted, so wrong keys sent from the same address (a fuzzer, or
    everyone behind one proxy) never lock out whoever holds the key. Clients are counted per
    scope (``("admin", address)``): admin failures never limit chat users.

    >>> lim = FailureLimiter(limit=2, window_s=60)
    >>> lim.fail("1.2.3.4", now=0); lim.fail("1.2.3.4", now=1); lim.blocked_for("1.2.3.4", now=2)
    58.0
    >>> lim.blocked_for("5.6.7.8", now=2)
    0.0
    """

    MAX_CLIENTS = 10_000  # bound the table itself (a flood of addresses cannot grow it forever)

    def __init__(self, limit: int, window_s: float) -> None:
        self.limit, self.window_s = int(limit), float(window_s)
        self._fails: dict[Any, deque[float]] = {}
        self._lock = threading.Lock()
        self.blocked = 0

    def _recent(self, client: Any, now: float) -> deque[float]:
        q = self._fails.get(client)
        if q is None:
            return deque()
        while q and q[0] <= now - self.window_s:
            q.popleft()
        if not q:
            del self._fails[client]
        return q

    def blocked_for(self, client: Any, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        with self._lock:
            q = self._recent(client, now)
            if len(q) < self.limit:
                return 0.0
            return max(1.0, q[0] + self.window_s - now)

    def fail(self, client: Any, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            if client not in self._fails and len(self._fails) >= self.MAX_CLIENTS:
                self._fails.pop(next(iter(self._fails)))
            self._fails.setdefault(client, deque()).append(now)


def _limiter(request: Request) -> FailureLimiter:
    app_state = request.app.state
    limiter = getattr(app_state, "auth_limiter", None)
    if limiter is None:
        api = app_state.settings.api
        limiter = app_state.auth_limiter = FailureLimiter(api.max_auth_failures, api.auth_window_s)
    return limiter


def client_of(request: Request) -> str:
    """The client's address: the direct peer, or behind a trusted proxy the address it names in
    ``api.client_ip_header`` (off by default; see :func:`api.limits.client_address`)."""
    api = request.app.state.settings.api
    peer = request.client.host if request.client else "?"
    if not api.client_ip_header or not api.trusted_proxies:
        return peer
    return client_address(peer, request.headers.get(api.client_ip_header), list(api.trusted_proxies))


def _check_key(request: Request, given: str | None, expected: str, detail: str, scope: str) -> None:
    """Constant-time key check; a client past its failure limit gets 429 for a wrong key."""
    if _key_ok(given, expected):
        return  # the right key is always accepted, whatever others sent from this address
    limiter = _limiter(request)
    client = (scope, client_of(request))
    wait = limiter.blocked_for(client)
    if wait:
        limiter.blocked += 1
        raise HTTPException(status.HTTP_429_TOO_MANY_REQUESTS, "too many failed key attempts; try again later",
                            headers={"Retry-After": str(int(wait) + 1)})
    limiter.fail(client)
    raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail, headers={"WWW-Authenticate": "Bearer"})


def require_chat_key(
    request: Request,
    authorization: Annotated[str | None, Header()] = None,
    x_api_key: Annotated[str | None, Header()] = None,
) -> None:
    """The chat API is open unless ``KB_CHAT_API_KEY`` is set."""
    expected = request.app.state.settings.chat_api_key
    if expected is None:
        return
    _check_key(request, _bearer(authorization, x_api_key), expected.get_secret_value(), "invalid or missing API key",
               "chat")


def require_admin_key(
    request: Request,
    authorization: Annotated[str | None, Header()] = None,
    x_api_key: Annotated[str | None, Header()] = None,
) -> None:
    """The admin API is off unless ``KB_ADMIN_API_KEY`` is set; then every call needs the key.

    A missing and a wrong key get the same 401, so a caller learns nothing about the key.
    """
    expected = request.app.state.settings.admin_api_key
    if expected is None:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "admin API disabled: set KB_ADMIN_API_KEY")
    _check_key(request, _bearer(authorization, x_api_key), expected.get_secret_value(), "unauthorized", "admin")


def is_admin(request: Request) -> bool:
    """Whether the caller may see server details (``/healthz`` counts, models and errors): it
    sent the admin key, or no admin key is set (the server then binds to loopback only, unless
    ``--allow-insecure``). Never refuses: a wrong key just gets the public view, and counts as a
    failed admin attempt (the chat key sent by a chat client does not)."""
    settings = request.app.state.settings
    expected = settings.admin_api_key
    if expected is None:
        return True
    given = _bearer(request.headers.get("authorization"), request.headers.get("x-api-key"))
    if given is None:
        return False
    if _key_ok(given, expected.get_secret_value()):
        return True
    chat = settings.chat_api_key
    if chat is None or not _key_ok(given, chat.get_secret_value()):
        _limiter(request).fail(("admin", client_of(request)))
    return False


class KeyFirstRoute(APIRoute):
    """A route whose key check runs before FastAPI reads and parses the request body (a route's
    own dependencies run only after that): an unauthenticated caller cannot make the server
    parse a large JSON body. The route's ``AdminAuth``/``ChatAuth`` dependency still documents
    the headers and checks again (cheap) once the body is read."""

    check: Callable[..., None] = staticmethod(require_admin_key)

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        check = type(self).check

        async def keyed(request: Request) -> Response:
            check(request, request.headers.get("authorization"), request.headers.get("x-api-key"))
            return await handler(request)

        return keyed


class AdminRoute(KeyFirstRoute):
    check = staticmethod(require_admin_key)


class ChatRoute(KeyFirstRoute):
    check = staticmethod(require_chat_key)


def check_history(history: list[dict[str, str]], api: Any) -> list[dict[str, str]]:
    """Refuse (422) a history longer than ``api.max_history_turns`` turns or
    ``api.max_history_chars`` characters, or a user turn longer than ``api.max_question_chars``
    (an earlier user turn can become the standalone question).

    >>> from config.settings import APISettings
    >>> check_history([{"role": "user", "content": "hi"}], APISettings())
    [{'role': 'user', 'content': 'hi'}]
    >>> check_history([{"role": "user", "content": "x" * 9}], APISettings(max_history_chars=8))
    Traceback (most recent call last):
    knowledge.core.errors.ValidationError: history has 9 characters; the limit is 8 (api.max_history_chars)
    """
    if len(history) > api.max_history_turns:
        raise ValidationError(f"history has {len(history)} turns; the limit is {api.max_history_turns} "
                              "(api.max_history_turns)")
    total = sum(len(t.get("content") or "") for t in history)
    if total > api.max_history_chars:
        raise ValidationError(f"history has {total} characters; the limit is {api.max_history_chars} "
                              "(api.max_history_chars)")
    for turn in history:
        if turn.get("role") == "user" and len(turn.get("content") or "") > api.max_question_chars:
            raise ValidationError(f"a history turn has {len(turn['content'])} characters; the limit is "
                                  f"{api.max_question_chars} (api.max_question_chars)")
    return history


def get_jobs(request: Request) -> Any:
    """The admin job runner started in the app's lifespan."""
    runner = getattr(request.app.state, "jobs", None)
    if runner is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "the job runner is not started")
    return runner


EngineDep = Annotated[Any, Depends(get_engine)]
SettingsDep = Annotated[Any, Depends(get_settings)]
JobsDep = Annotated[Any, Depends(get_jobs)]
ChatAuth = Depends(require_chat_key)
AdminAuth = Depends(require_admin_key)
