"""Every dependency of the HTTP routes, as ``Annotated[..., Depends(...)]`` aliases."""

from __future__ import annotations

import hmac
from typing import Annotated, Any

from fastapi import Depends, Header, HTTPException, Request, status


def get_engine(request: Request) -> Any:
    """The engine loaded once in the app's lifespan (hot-swappable via ``app.state``)."""
    engine = getattr(request.app.state, "engine", None)
    if engine is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "no knowledge base is loaded; run `kb index`")
    return engine


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


def require_chat_key(
    request: Request,
    authorization: Annotated[str | None, Header()] = None,
    x_api_key: Annotated[str | None, Header()] = None,
) -> None:
    """The chat API is open unless ``KB_CHAT_API_KEY`` is set."""
    expected = request.app.state.settings.chat_api_key
    if expected is None:
        return
    if not _key_ok(_bearer(authorization, x_api_key), expected.get_secret_value()):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "invalid or missing API key",
                            headers={"WWW-Authenticate": "Bearer"})


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
    if not _key_ok(_bearer(authorization, x_api_key), expected.get_secret_value()):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "unauthorized", headers={"WWW-Authenticate": "Bearer"})


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
