"""Native API: ``POST /api/ask``, ``GET /api/glossary/{term}``, ``GET /healthz``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request, status

from api.deps import ChatAuth, EngineDep
from api.schemas import AnswerOut, AskRequest, GlossaryEntryOut, HealthOut

router = APIRouter(tags=["native"])


@router.post("/api/ask", response_model=AnswerOut, dependencies=[ChatAuth])
def ask(req: AskRequest, engine: EngineDep) -> Any:
    history = [t.model_dump() for t in req.history]
    return engine.answer(req.question, history).to_dict()


@router.get("/api/glossary/{term}", response_model=GlossaryEntryOut, dependencies=[ChatAuth])
def glossary_term(term: str, engine: EngineDep) -> Any:
    entry = engine.index.glossary.get(term)
    if entry is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"term {term!r} is not in the glossary")
    return entry.to_dict()


def current_adapter_version(home: Any) -> str | None:
    """The published LoRA adapter's version, when finetune's AdapterStore is present."""
    try:
        from finetune.adapters import AdapterStore
    except ImportError:
        return None
    try:
        return AdapterStore(home).current()
    except OSError:
        return None


@router.get("/healthz", response_model=HealthOut)
def healthz(request: Request) -> Any:
    import os

    from api.state import effective_router

    holder = request.app.state.holder
    engine = holder.engine
    if engine is None:
        return {"status": "degraded", "index_version": None, "documents": 0, "chunks": 0, "facts": 0,
                "glossary_terms": 0, "embedder": "", "generator": "", "router": "", "worker": os.getpid(),
                "detail": holder.last_error}
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
        "worker": os.getpid(), "detail": holder.last_error,
    }
