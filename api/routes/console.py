"""The web console at ``/ui/``: static HTML, CSS and JavaScript from ``api/console/static``.

No build step and no third-party script. Every response carries a Content-Security-Policy that
lets the page load and contact only the server that served it, so the console works offline
and cannot leak a question to another address even if a file were changed to try.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).resolve().parents[1] / "console" / "static"
# 'unsafe-inline' styles only: the evaluation report (shown in a sandboxed srcdoc frame) has
# inline CSS; scripts come from this server alone and none are inline.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
       "connect-src 'self'; frame-src 'none'; object-src 'none'; base-uri 'none'; form-action 'none'; "
       "frame-ancestors 'self'")
HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
           "Cache-Control": "no-cache"}

router = APIRouter(include_in_schema=False)


@router.get("/")
def root() -> RedirectResponse:
    return RedirectResponse("/ui/")


class ConsoleFiles(StaticFiles):
    """Static files with the console's security headers."""

    async def get_response(self, path: str, scope: Any) -> Any:
        response = await super().get_response(path, scope)
        response.headers.update(HEADERS)
        return response


def mount(app: FastAPI) -> None:
    """Serve the console at ``/ui/`` (``/`` redirects there)."""
    app.include_router(router)
    app.mount("/ui", ConsoleFiles(directory=STATIC_DIR, html=True), name="console")
