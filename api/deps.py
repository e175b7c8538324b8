"""Every dependency of the HTTP routes, as ``Annotated[..., Depends(...)]`` aliases."""

from __future__ import annotations

import hmac
import threading
import time
from collections import deque
from typing import Annotated, Any

from fastapi import Depends, Header, HTTPException, Request, Response, status


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
    """Failed key attempts per client address within a sliding window.

    After ``limit`` failures in ``window_s`` seconds a client gets 429 (with ``Retry-After``)
    for every keyed call until its oldest failure leaves the window, even with the right key,
    so a key cannot be guessed by trying many.

    >>> lim = FailureLimiter(limit=2, window_s=60)
    >>> lim.fail("1.2.3.4", now=0); lim.fail("1.2.3.4", now=1); lim.blocked_for("1.2.3.4", now=2)
    58.0
    >>> lim.blocked_for("5.6.7.8", now=2)
    0.0
    """

    MAX_CLIENTS = 10_000  # bound the table itself (a flood of addresses cannot grow it forever)

    def __init__(self, limit: int, window_s: float) -> None:
        self.limit, self.window_s = int(limit), float(window_s)
        self._fails: dict[str, deque[float]] = {}
        self._lock = threading.Lock()
        self.blocked = 0

    def _recent(self, client: str, now: float) -> deque[float]:
        q = self._fails.get(client)
        if q is None:
            return deque()
        while q and q[0] <= now - self.window_s:
            q.popleft()
        if not q:
            del self._fails[client]
        return q

    def blocked_for(self, client: str, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        with self._lock:
            q = self._recent(client, now)
            if len(q) < self.limit:
                return 0.0
            return max(1.0, q[0] + self.window_s - now)

    def fail(self, client: str, now: float | None = None) -> None:
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


def _check_key(request: Request, given: str | None, expected: str, detail: str) -> None:
    """Constant-time key check with the per-client failure limit."""
    limiter = _limiter(request)
    client = request.client.host if request.client else "?"
    wait = limiter.blocked_for(client)
    if wait:
        limiter.blocked += 1
        raise HTTPException(status.HTTP_429_TOO_MANY_REQUESTS, "too many failed key attempts; try again later",
                            headers={"Retry-After": str(int(wait) + 1)})
    if not _key_ok(given, expected):
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
    _check_key(request, _bearer(authorization, x_api_key), expected.get_secret_value(), "invalid or missing API key")


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
    _check_key(request, _bearer(authorization, x_api_key), expected.get_secret_value(), "unauthorized")


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
