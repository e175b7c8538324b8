"""Guards in front of every route: a request id, the body size limit, the client's address.

Pure ASGI middleware (not ``BaseHTTPMiddleware``), so a body over the limit is refused while it
arrives: before FastAPI reads it into memory, parses it as JSON, or checks any key.
"""

from __future__ import annotations

import ipaddress
import json
import uuid
from typing import Any, Awaitable, Callable

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def request_id(scope_or_request: Any) -> str:
    """The id :class:`RequestIdMiddleware` gave this request ('' outside one)."""
    state = scope_or_request.get("state") if isinstance(scope_or_request, dict) else \
        getattr(scope_or_request, "scope", {}).get("state")
    return str((state or {}).get("request_id", ""))


class RequestIdMiddleware:
    """Gives every HTTP request a fresh id (``scope["state"]["request_id"]``, header
    ``X-Request-ID``): error bodies name it, the server log has the details under it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = uuid.uuid4().hex[:16]
        scope.setdefault("state", {})["request_id"] = rid

        async def send_with_id(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (b"x-request-id", rid.encode())]}
            await send(message)

        await self.app(scope, receive, send_with_id)


class BodyTooLarge(Exception):
    """Raised from ``receive`` when a streamed body passes its limit (after a 413 went out)."""


class BodyLimitMiddleware:
    """413 for a body over ``limit_for(method, path)`` bytes: at once from ``Content-Length``,
    and by counting the bytes of a body sent without one (chunked) as they arrive.

    >>> import asyncio
    >>> sent = []
    >>> async def app(scope, receive, send): await receive()
    >>> async def receive(): return {"type": "http.request", "body": b"x" * 10, "more_body": False}
    >>> async def send(message): sent.append(message)
    >>> mw = BodyLimitMiddleware(app, lambda method, path: 4)
    >>> asyncio.run(mw({"type": "http", "method": "POST", "path": "/", "headers": []}, receive, send))
    >>> sent[0]["status"]
    413
    """

    def __init__(self, app: ASGIApp, limit_for: Callable[[str, str], int]) -> None:
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope.get("method", ""), scope.get("path", ""))
        declared = _header(scope, b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await _too_large(send, limit, scope)
            return
        seen = 0
        started = False

        async def counted() -> dict[str, Any]:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    if not started:
                        await _too_large(send, limit, scope)
                    raise BodyTooLarge(f"request body over {limit} bytes")
            return message

        async def tracked(message: dict[str, Any]) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted, tracked)
        except BodyTooLarge:
            return  # the 413 is sent; the rest of the body is never read


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value.decode("latin-1").strip()
    return None


async def _too_large(send: Send, limit: int, scope: Scope) -> None:
    message = f"request body larger than {limit} bytes (api.max_body_mb; uploads: ingest.max_file_mb)"
    rid = request_id(scope)
    body = json.dumps({"detail": message, "error": {"message": message, "type": "request_too_large"},
                       "request_id": rid}).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


def client_address(peer: str, forwarded: str | None, trusted: list[str]) -> str:
    """The client's address: the direct ``peer``, unless the peer is a trusted proxy; then the
    right-most address of the ``forwarded`` header (``X-Forwarded-For``) that is not a trusted
    proxy itself (addresses further left are the client's own claims, not to be believed).

    >>> client_address("10.0.0.5", "1.2.3.4, 10.0.0.7", ["10.0.0.0/8"])
    '1.2.3.4'
    >>> client_address("8.8.8.8", "1.2.3.4", ["10.0.0.0/8"])  # an untrusted peer's header is ignored
    '8.8.8.8'
    >>> client_address("10.0.0.5", "evil, 5.6.7.8", ["10.0.0.5"])
    '5.6.7.8'
    >>> client_address("10.0.0.5", None, ["10.0.0.5"])
    '10.0.0.5'
    """
    nets = _networks(trusted)
    if not forwarded or not _in(peer, nets):
        return peer
    for item in reversed(forwarded.split(",")):
        addr = item.strip()
        try:
            ipaddress.ip_address(addr)
        except ValueError:
            return peer  # garbage where an address should be: fall back to the proxy itself
        if not _in(addr, nets):
            return addr
    return peer


def _networks(trusted: list[str]) -> list[Any]:
    # api.trusted_proxies is checked when the settings load (config.settings.APISettings)
    return [ipaddress.ip_network(item.strip(), strict=False) for item in trusted]


def _in(addr: str, nets: list[Any]) -> bool:
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return False
    return any(ip.version == n.version and ip in n for n in nets)
