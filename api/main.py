"""Assembles the HTTP app: lifespan loads the models once, routes are thin, errors are 4xx."""

from __future__ import annotations

import logging
import os
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from fastapi import FastAPI, Request, status  # noqa: E402
from fastapi.exceptions import RequestValidationError  # noqa: E402
from fastapi.responses import JSONResponse, PlainTextResponse  # noqa: E402

from knowledge.errors import (  # noqa: E402
    ConfigError, ConflictError, GenerationError, IndexMismatchError, IndexNotFoundError, KBError, ValidationError,
)

log = logging.getLogger("kb.api")


def create_app(settings: Any = None, engine: Any = None) -> FastAPI:
    """Build the app. Pass ``engine`` to serve a prebuilt one (tests); otherwise it is loaded
    from the published index in the lifespan, once per process."""
    from config import get_settings

    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.settings = settings
        if engine is not None:
            app.state.engine = engine
        else:
            from retrieval.store import IndexStore
            from router.engine import Engine

            try:
                index = IndexStore(settings.home).load()
            except IndexNotFoundError as exc:
                log.warning("%s — serving /healthz only until an index is built", exc)
                app.state.engine = None
            else:
                app.state.engine = Engine(settings, index)
        app.state.jobs = _start_jobs(app)
        yield
        app.state.jobs = None

    from api.metrics import Metrics, RequestMetricsMiddleware

    app = FastAPI(title="kb-assistant", version="0.1.0", lifespan=lifespan)
    app.state.settings = settings
    app.state.engine = engine
    app.state.jobs = None
    app.state.metrics = Metrics()
    app.add_middleware(RequestMetricsMiddleware, metrics=app.state.metrics)
    _install_error_handlers(app)

    from api.routes import admin, chat, console, manage, native

    app.include_router(chat.router)
    app.include_router(native.router)
    app.include_router(admin.router)
    app.include_router(manage.router)
    console.mount(app)

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> PlainTextResponse:
        return PlainTextResponse(app.state.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    return app


def swap_engine(app: FastAPI, engine: Any) -> Any:
    """Serve ``engine`` from now on; returns the previous one.

    One attribute assignment, so the swap is atomic: each request fetched its engine once (the
    ``EngineDep`` dependency) and keeps that object to the end, so no answer mixes versions.
    """
    old = getattr(app.state, "engine", None)
    app.state.engine = engine
    new_version = getattr(getattr(engine, "index", None), "version", None)
    old_version = getattr(getattr(old, "index", None), "version", None)
    log.info("serving index %s (was %s)", new_version, old_version)
    return old


def engine_for_index(app: FastAPI, index: Any) -> Any:
    """A new Engine over ``index`` that reuses the serving engine's generator, router and
    verifier, so a reindex never reloads the LLM (the disambiguator is rebuilt: it holds the
    glossary of the index)."""
    from router.engine import Engine

    settings = app.state.settings
    old = getattr(app.state, "engine", None)
    if old is None:
        return Engine(settings, index)
    return Engine(settings, index, generator=old.generator, router=old.router, verifier=old.verifier)


def _start_jobs(app: FastAPI) -> Any:
    """Open the job store (failing jobs a previous process left running) and the runner."""
    from api.jobs import JobRunner, JobStore

    store = JobStore(Path(app.state.settings.home) / "jobs.sqlite3")
    if store.interrupted:
        log.warning("%d admin job(s) were interrupted by a restart and are marked failed", store.interrupted)
    return JobRunner(store, on_finish=app.state.metrics.observe_job)


def _error(code: int, message: str, kind: str) -> JSONResponse:
    # Both shapes at once: OpenAI clients read error.message, FastAPI users read detail.
    return JSONResponse(status_code=code, content={"detail": message, "error": {"message": message, "type": kind}})


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

    @app.exception_handler(GenerationError)
    async def _upstream(_: Request, exc: GenerationError) -> JSONResponse:
        return _error(status.HTTP_502_BAD_GATEWAY, str(exc), "upstream_error")

    @app.exception_handler(KBError)
    async def _kb(_: Request, exc: KBError) -> JSONResponse:
        return _error(status.HTTP_400_BAD_REQUEST, str(exc), "invalid_request_error")
