"""Assembles the HTTP app: lifespan loads the models once, routes are thin, errors are 4xx."""

from __future__ import annotations

import errno
import ipaddress
import logging
import math
import os
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator, Callable

from fastapi.middleware.cors import CORSMiddleware

from api.deps import require_admin_key
from api.jobs import JobRunner, JobStore
from api.limits import BodyLimitMiddleware, RequestIdMiddleware, request_id
from api.metrics import Metrics, RequestMetricsMiddleware
from api.routes import admin, chat, console, manage, native
from api.state import EngineHolder
from config import get_settings

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from fastapi import FastAPI, Request, status  # noqa: E402
from fastapi.exceptions import RequestValidationError  # noqa: E402
from fastapi.responses import JSONResponse, PlainTextResponse  # noqa: E402

from knowledge.core.errors import (  # noqa: E402
    ConfigError, ConflictError, GenerationError, IndexMismatchError, IndexNotFoundError, KBError, OverloadedError,
    ValidationError,
)

log = logging.getLogger("kb.api")


def create_app(settings: Any = None, engine: Any = None) -> FastAPI:
    """Build the app. Pass ``engine`` to serve a prebuilt one (tests); otherwise it is loaded
    from the published index in the lifespan, once per process. Either way the app follows
    the published ``current`` pointers from then on (:class:`api.state.EngineHolder`)."""


    settings = settings or get_settings()
    holder = EngineHolder(settings, engine)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.settings = settings
        if holder.engine is None:
            holder.load()
            if holder.engine is None:
                log.warning("%s — serving /healthz only until an index is published",
                            holder.last_error or "no published index")
        app.state.jobs = _start_jobs(app)
        holder.follow(settings.api.follow_interval_s, also=app.state.jobs.store.reap)
        app.state.metrics.start_sharing()
        yield
        holder.stop()
        app.state.metrics.stop_sharing()
        app.state.jobs = None


    app = FastAPI(title="kb-assistant", version="0.1.0", lifespan=lifespan)
    app.state.settings = settings
    app.state.holder = holder
    app.state.jobs = None
    app.state.metrics = Metrics(settings.home, engine_stats=lambda: _generator_stats(holder.engine))
    app.add_middleware(RequestMetricsMiddleware, metrics=app.state.metrics)
    # Outermost last: the id first, then the body limit, before anything reads the body.
    app.add_middleware(BodyLimitMiddleware, limit_for=body_limits(settings))
    app.add_middleware(RequestIdMiddleware)
    if settings.api.cors_origins:  # off by default: no Access-Control-* headers at all
        app.add_middleware(CORSMiddleware, allow_origins=list(settings.api.cors_origins),
                           allow_methods=["GET", "POST", "DELETE"], allow_headers=["Authorization", "Content-Type",
                                                                                     "X-API-Key"])
    _install_error_handlers(app)


    app.include_router(chat.router)
    app.include_router(native.router)
    app.include_router(admin.router)
    app.include_router(manage.router)
    console.mount(app)

    @app.get("/metrics", include_in_schema=False)
    def metrics(request: Request) -> PlainTextResponse:
        if not metrics_public(settings):  # the admin key, or 403 when none is set (api.metrics_public)
            require_admin_key(request, request.headers.get("authorization"), request.headers.get("x-api-key"))
        return PlainTextResponse(app.state.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    return app


def metrics_public(settings: Any) -> bool:
    """``api.metrics_public``, where ``null`` means: public only while no admin key is set."""
    configured = settings.api.metrics_public
    return settings.admin_api_key is None if configured is None else bool(configured)


UPLOAD_PATHS = ("/admin/documents", "/admin/glossary")


def body_limits(settings: Any) -> Callable[[str, str], int]:
    """Bytes a request body may have: ``api.max_body_mb``, and for an upload (multipart POST
    to ``/admin/documents`` or ``/admin/glossary``) ``MAX_FILES`` files of ``ingest.max_file_mb``."""
    default = int(settings.api.max_body_mb * 1024 * 1024)
    upload = admin.MAX_FILES * int(settings.ingest.max_file_mb * 1024 * 1024) + (1 << 20)  # + the form's own lines

    def limit_for(method: str, path: str) -> int:
        return upload if method == "POST" and path.rstrip("/") in UPLOAD_PATHS else default

    return limit_for


def app_factory() -> FastAPI:
    """``uvicorn --factory api.main:app_factory``: the app over the environment's settings
    (what each worker of ``kb serve --workers N`` runs)."""
    return create_app()


def _generator_stats(engine: Any) -> dict[str, Any]:
    stats = getattr(getattr(engine, "generator", None), "stats", None)
    return stats() if callable(stats) else {}


def _start_jobs(app: FastAPI) -> Any:
    """Open the job store (failing jobs whose owner is gone) and the runner."""

    settings = app.state.settings
    holder = app.state.holder
    store = JobStore(Path(settings.home) / "jobs.sqlite3", lease_s=settings.api.job_lease_s)
    if store.interrupted:
        log.warning("%d admin job(s) had lost their owner and are marked failed", store.interrupted)

    def serve_result(kind: str, result: dict[str, Any]) -> str:
        holder.refresh()  # before the job reads "succeeded": what it published is served here
        return f"serving index {holder.serving.index} adapter {holder.serving.adapter}"

    return JobRunner(store, on_finish=app.state.metrics.observe_job, before_success=serve_result, settings=settings)


def check_bind(host: str, settings: Any) -> None:
    """Refuse a non-loopback address without an admin key, unless explicitly allowed.

    >>> from config.settings import Settings
    >>> check_bind("127.0.0.1", Settings())
    >>> check_bind("0.0.0.0", Settings())
    Traceback (most recent call last):
    knowledge.core.errors.ConfigError: refusing to serve on 0.0.0.0 without KB_ADMIN_API_KEY; set the key, bind 127.0.0.1, or pass --allow-insecure (KB_API__ALLOW_INSECURE_BIND=true)
    """

    name = host.strip("[]")
    try:
        loopback = name == "localhost" or ipaddress.ip_address(name).is_loopback
    except ValueError:
        loopback = False
    if loopback or settings.admin_api_key is not None or settings.api.allow_insecure_bind:
        return
    raise ConfigError(f"refusing to serve on {host} without KB_ADMIN_API_KEY; set the key, bind 127.0.0.1, or "
                      "pass --allow-insecure (KB_API__ALLOW_INSECURE_BIND=true)")


def _error(code: int, message: str, kind: str, rid: str = "") -> JSONResponse:
    # Both shapes at once: OpenAI clients read error.message, FastAPI users read detail.
    content: dict[str, Any] = {"detail": message, "error": {"message": message, "type": kind}}
    if rid:
        content["request_id"] = rid
    return JSONResponse(status_code=code, content=content)


def _hidden(request: Request, code: int, message: str, kind: str, exc: BaseException) -> JSONResponse:
    """A generic body for a stranger (no upstream addresses, paths or exception text); the
    detail goes to the server log under the request id the body names."""
    rid = request_id(request)
    log.error("request %s %s %s -> %d: %s: %s", rid, request.method, request.url.path, code,
              type(exc).__name__, exc, exc_info=code >= 500 and not isinstance(exc, GenerationError))
    return _error(code, f"{message} (request id {rid}; the server log has the details)", kind, rid)


def _disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
            parts.append(f"{loc or 'body'}: {err.get('msg', 'invalid')}")
        return _error(422, "; ".join(parts) or "invalid request", "invalid_request_error")

    @app.exception_handler(ValidationError)
    async def _bad_input(_: Request, exc: ValidationError) -> JSONResponse:
        return _error(422, str(exc), "invalid_request_error")

    @app.exception_handler(IndexNotFoundError)
    @app.exception_handler(IndexMismatchError)
    @app.exception_handler(ConfigError)
    async def _unavailable(_: Request, exc: KBError) -> JSONResponse:
        return _error(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc), "service_unavailable")

    @app.exception_handler(ConflictError)
    async def _conflict(_: Request, exc: ConflictError) -> JSONResponse:
        return _error(status.HTTP_409_CONFLICT, str(exc), "conflict")

    @app.exception_handler(OverloadedError)
    async def _overloaded(_: Request, exc: OverloadedError) -> JSONResponse:
        response = _error(status.HTTP_429_TOO_MANY_REQUESTS, str(exc), "rate_limit_exceeded")
        response.headers["Retry-After"] = str(int(math.ceil(exc.retry_after)))
        return response

    @app.exception_handler(GenerationError)
    async def _upstream(request: Request, exc: GenerationError) -> JSONResponse:
        return _hidden(request, status.HTTP_502_BAD_GATEWAY, "the language model did not answer", "upstream_error",
                       exc)

    @app.exception_handler(OSError)
    async def _os_error(request: Request, exc: OSError) -> JSONResponse:
        if _disk_full(exc):
            return _hidden(request, status.HTTP_507_INSUFFICIENT_STORAGE, "not enough disk space on the server",
                           "insufficient_storage", exc)
        return _hidden(request, status.HTTP_500_INTERNAL_SERVER_ERROR, "internal error", "server_error", exc)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        return _hidden(request, status.HTTP_500_INTERNAL_SERVER_ERROR, "internal error", "server_error", exc)

    @app.exception_handler(KBError)
    async def _kb(_: Request, exc: KBError) -> JSONResponse:
        return _error(status.HTTP_400_BAD_REQUEST, str(exc), "invalid_request_error")
