"""Native API: ``POST /api/ask``, ``GET /api/glossary/{term}``, ``GET /api/chunks/{id}``, ``GET /healthz``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request, status

from api.deps import ChatAuth, ChatRoute, EngineDep, check_history, is_admin
from api.schemas import AnswerOut, AskRequest, GlossaryEntryOut, HealthOut, PassageOut
from knowledge.core.errors import KBError
from router.adapters import AdapterStore
from api.state import effective_router
import os

router = APIRouter(tags=["native"])
# The chat-keyed routes: the key is checked before a body is read (api.deps.KeyFirstRoute).
keyed = APIRouter(tags=["native"], route_class=ChatRoute)


@keyed.post("/api/ask", response_model=AnswerOut, dependencies=[ChatAuth])
def ask(req: AskRequest, engine: EngineDep, request: Request) -> Any:
    history = check_history([t.model_dump() for t in req.history], request.app.state.settings.api)
    return engine.answer(req.question, history).to_dict()


@keyed.get("/api/glossary/{term}", response_model=GlossaryEntryOut, dependencies=[ChatAuth])
def glossary_term(term: str, engine: EngineDep) -> Any:
    entry = engine.index.glossary.get(term)
    if entry is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"term {term!r} is not in the glossary")
    return entry.to_dict()


GLOSSARY_PREFIX = "glossary:"  # the chunk id the engine gives a glossary citation


@keyed.get("/api/chunks/{chunk_id:path}", response_model=PassageOut, dependencies=[ChatAuth])
def passage(chunk_id: str, engine: EngineDep) -> Any:
    """The whole passage a citation or a verified number points at, with its source and page."""
    idx = engine.index
    if chunk_id.startswith(GLOSSARY_PREFIX):
        entry = idx.glossary.get(chunk_id[len(GLOSSARY_PREFIX):])
        if entry is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no glossary entry for {chunk_id!r}")
        lines = [f"{entry.term}: " + " / ".join(
            f"{m.chinese}（{m.english}）" if m.chinese and m.english else (m.chinese or m.english)
            for m in entry.meanings)]
        return {"chunk_id": chunk_id, "kind": "glossary", "source": entry.source or "glossary", "page": None,
                "text": "\n".join(lines), "index_version": idx.version}
    try:
        chunk = idx.chunk(chunk_id)
    except KBError:
        raise HTTPException(status.HTTP_404_NOT_FOUND,
                            f"index {idx.version} has no passage {chunk_id!r} (it may be from an older index)") from None
    return {"chunk_id": chunk.chunk_id, "kind": "chunk", "source": chunk.source, "page": chunk.page,
            "heading_path": list(chunk.heading_path), "text": chunk.text, "index_version": idx.version}


def current_adapter_version(home: Any) -> str | None:
    """The published LoRA adapter's version (``None`` when there is none or it cannot be read)."""
    try:
        return AdapterStore(home).current()
    except OSError:
        return None


@router.get("/healthz", response_model=HealthOut, response_model_exclude_unset=True)
def healthz(request: Request) -> Any:
    """Status and the served versions for anyone; counts, model names, the worker and the
    last error (which may name files) only with the admin key (see :func:`api.deps.is_admin`)."""
    holder = request.app.state.holder
    body = _health(request, holder)
    if is_admin(request):
        return body
    return {k: body[k] for k in PUBLIC_HEALTH if k in body}


PUBLIC_HEALTH = ("status", "index_version", "adapter_version")


def _health(request: Request, holder: Any) -> dict[str, Any]:
    engine = holder.engine
    if engine is None:
        return {"status": "degraded", "index_version": None, "documents": 0, "chunks": 0, "facts": 0,
                "glossary_terms": 0, "embedder": "", "generator": "", "router": "", "worker": os.getpid(),
                "detail": holder.last_error or ""}
    idx = engine.index
    routing = effective_router(engine)
    degraded = bool(routing["reason"]) or bool(holder.last_error)
    return {
        "status": "degraded" if degraded else "ok", "index_version": idx.version,
        "adapter_version": holder.serving.adapter if holder.serving.index == idx.version
        else current_adapter_version(request.app.state.settings.home),
        "documents": len(idx.manifest.get("documents", {})), "chunks": len(idx.chunks), "facts": len(idx.facts),
        "glossary_terms": len(idx.glossary), "embedder": idx.embedder.name,
        "generator": getattr(engine.generator, "name", type(engine.generator).__name__),
        "router": routing["router"], "router_configured": routing["configured"], "router_reason": routing["reason"],
        "worker": os.getpid(), "detail": holder.last_error or "",
    }


router.include_router(keyed)
