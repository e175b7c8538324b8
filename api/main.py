"""Assembles the HTTP app: lifespan loads the models once, routes are thin, errors are 4xx."""

from __future__ import annotations

import logging
import os
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from fastapi import FastAPI, Request, status  # noqa: E402
from fastapi.exceptions import RequestValidationError  # noqa: E402
from fastapi.responses import JSONResponse  # noqa: E402

from knowledge.errors import (  # noqa: E402
    ConfigError, GenerationError, IndexMismatchError, IndexNotFoundError, KBError, ValidationError,
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
        yield

    app = FastAPI(title="kb-assistant", version="0.1.0", lifespan=lifespan)
    app.state.settings = settings
    app.state.engine = engine
    _install_error_handlers(app)

    from api.routes import chat, native

    app.include_router(chat.router)
    app.include_router(native.router)
    return app


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
        return _error(status.HTTP_422_UNPROCESSABLE_ENTITY, "; ".join(parts) or "invalid request", "invalid_request_error")

    @app.exception_handler(ValidationError)
    async def _bad_input(_: Request, exc: ValidationError) -> JSONResponse:
        return _error(status.HTTP_422_UNPROCESSABLE_ENTITY, str(exc), "invalid_request_error")

    @app.exception_handler(IndexNotFoundError)
    @app.exception_handler(IndexMismatchError)
    @app.exception_handler(ConfigError)
    async def _unavailable(_: Request, exc: KBError) -> JSONResponse:
        return _error(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc), "service_unavailable")

    @app.exception_handler(GenerationError)
    async def _upstream(_: Request, exc: GenerationError) -> JSONResponse:
        return _error(status.HTTP_502_BAD_GATEWAY, str(exc), "upstream_error")

    @app.exception_handler(KBError)
    async def _kb(_: Request, exc: KBError) -> JSONResponse:
        return _error(status.HTTP_400_BAD_REQUEST, str(exc), "invalid_request_error")
