"""Admin views and switches behind the web console (``/admin``, same API key as the rest).

Thin routes over the store code: the document list and the glossary table come from
:mod:`retrieval.catalog`, index versions from :class:`retrieval.store.IndexStore`, adapter
versions from :class:`router.adapters.AdapterStore`, the evaluation report from
:mod:`api.evalreports`. Publishing an index or an adapter also switches the serving engine,
so the console never shows one version while the server answers with another.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import FileResponse

from api.deps import AdminAuth, AdminRoute, SettingsDep
from api.schemas import (
    AdapterVersionList, DocumentList, EvalReportOut, GlossaryTable, GlossaryVersionOut, GlossaryWriteRequest,
    IndexVersionList, PublishResult,
)
from api.evalreports import latest
from api.evaluation.assistant import SUMMARY_ROWS
from retrieval.catalog import document_rows, index_versions, read_glossary as read, write_glossary as write
from retrieval.store import IndexStore
from router.adapters import AdapterStore

router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[AdminAuth], route_class=AdminRoute)


def _store(settings: Any, request: Request | None = None) -> Any:

    engine = getattr(request.app.state, "engine", None) if request is not None else None
    embedder = engine.index.embedder if engine is not None else None
    return IndexStore(settings.home, settings, embedder=embedder)


# --- documents ---------------------------------------------------------------------------------
@router.get("/documents", response_model=DocumentList)
def list_documents(settings: SettingsDep) -> Any:
    """Stored documents: size, index state and since which version, chunks, facts, warnings."""

    store = _store(settings)
    return {"index_version": store.current_version(), "documents": document_rows(store)}


# --- index versions ----------------------------------------------------------------------------
@router.get("/indexes", response_model=IndexVersionList)
def list_indexes(settings: SettingsDep) -> Any:

    store = _store(settings)
    return {"current": store.current_version(), "versions": index_versions(store)}


def _serve_index(request: Request, version: str) -> dict[str, Any]:
    """Load ``version`` (refusing one built with another embedder), point ``current`` at it,
    then swap the serving engine; the load comes first so a bad version is never published."""
    store = _store(request.app.state.settings, request)
    if version not in store.versions():
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no index version {version!r}")
    store.load(version, embedder=store.embedder)   # refuses a version this server cannot serve
    previous = store.publish(version)
    holder = request.app.state.holder
    holder.refresh()                               # the one engine holder follows the pointer
    engine = holder.engine
    return {"artifact": "index", "version": version, "previous": previous,
            "serving": getattr(getattr(engine, "index", None), "version", None)}


@router.post("/indexes/rollback", response_model=PublishResult)
def rollback_index(request: Request) -> Any:
    """Publish the version the current index was built from, and serve it."""
    store = _store(request.app.state.settings, request)
    return _serve_index(request, store.rollback_target())


@router.post("/indexes/{version}/publish", response_model=PublishResult)
def publish_index(version: str, request: Request) -> Any:
    """Publish an existing index version (older or newer) and serve it."""
    return _serve_index(request, version)


# --- adapter versions --------------------------------------------------------------------------
def _adapters(settings: Any) -> Any:

    return AdapterStore(settings.home)


@router.get("/adapters", response_model=AdapterVersionList)
def list_adapters(request: Request, settings: SettingsDep) -> Any:
    """LoRA adapter versions, newest first, with their gate metrics and status."""
    store = _adapters(settings)
    versions = list(reversed(store.versions()))
    for v in versions:
        v.pop("report", None)  # the full gate report is large; metrics carry the comparison
    engine = request.app.state.holder.engine
    router_name = getattr(getattr(engine, "router", None), "name", "") if engine is not None else ""
    return {"current": store.current(), "serving_router": router_name or settings.router.backend,
            "versions": versions}


def _served_adapter(request: Request, version: str, previous: str | None) -> dict[str, Any]:
    request.app.state.holder.refresh()  # the holder rebuilds the LoRA router over the new adapter
    return {"artifact": "adapter", "version": version, "previous": previous,
            "serving": version if request.app.state.settings.router.backend == "lora" else None}


@router.post("/adapters/rollback", response_model=PublishResult)
def rollback_adapter(request: Request, settings: SettingsDep) -> Any:
    store = _adapters(settings)
    previous = store.current()
    return _served_adapter(request, store.rollback(), previous)


@router.post("/adapters/{version}/publish", response_model=PublishResult)
def publish_adapter(version: str, request: Request, settings: SettingsDep) -> Any:
    """Publish an adapter version (a rejected one too: an explicit override of the gate)."""
    store = _adapters(settings)
    previous = store.current()
    store.publish(version)
    return _served_adapter(request, version, previous)


# --- glossary ----------------------------------------------------------------------------------
@router.get("/glossary", response_model=GlossaryTable)
def read_glossary(settings: SettingsDep) -> Any:
    """The glossary as the next build merges it, its revision, files and saved versions."""

    return read(_store(settings))


@router.put("/glossary", response_model=GlossaryVersionOut)
def write_glossary(req: GlossaryWriteRequest, settings: SettingsDep) -> Any:
    """Save the edited table as a new glossary version (409 when ``base_revision`` is stale);
    the serving index picks it up at the next reindex."""

    entries = [e.model_dump() for e in req.entries]
    return write(_store(settings), entries, base_revision=req.base_revision, comment=req.comment)


# --- evaluation --------------------------------------------------------------------------------
def _latest_eval(settings: Any) -> dict[str, Any]:

    report = latest(settings.home)
    if report is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no evaluation report yet: run `kb eval QUESTIONS.jsonl`")
    return report


@router.get("/eval", response_model=EvalReportOut)
def latest_eval(settings: SettingsDep) -> Any:
    """The latest ``kb eval`` report: configuration, headline metrics per system, all metrics."""

    report = _latest_eval(settings)
    metrics = report["metrics"]
    summary = []
    for label, kind, get in SUMMARY_ROWS:
        values = {}
        for system, m in metrics.items():
            try:
                values[system] = get(m)
            except (KeyError, TypeError):
                values[system] = None
        summary.append({"metric": label, "kind": kind, "values": values})
    return {**{k: report[k] for k in ("report_dir", "written_at", "config", "metrics")},
            "summary": summary, "has_html": report["html"] is not None}


@router.get("/eval/report.html", response_class=FileResponse)
def latest_eval_html(settings: SettingsDep) -> Any:
    """The report's self-contained HTML page (inline SVG, no scripts)."""
    report = _latest_eval(settings)
    if report["html"] is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no report.html in {report['report_dir']}")
    return FileResponse(Path(report["html"]), media_type="text/html; charset=utf-8")
