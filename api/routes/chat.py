"""OpenAI-compatible chat: ``POST /v1/chat/completions`` (streaming too) and ``GET /v1/models``."""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import Any, Iterator

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from api.deps import ChatAuth, ChatRoute, EngineDep, check_history, version_headers
from api.schemas import ChatRequest, ChatResponse, ModelCard, ModelList
from api.limits import request_id
from knowledge.core.errors import GenerationError, ValidationError

router = APIRouter(prefix="/v1", tags=["openai"], dependencies=[ChatAuth], route_class=ChatRoute)
MODEL_ID = "kb-assistant"
log = logging.getLogger("kb.api")


def split_messages(req: ChatRequest) -> tuple[str, list[dict[str, str]]]:
    """The last user message is the question; earlier user/assistant turns are history.

    System messages are ignored on purpose: a client prompt must not be able to tell the
    assistant to answer from its own memory.
    """
    turns = [(m.role, m.text()) for m in req.messages if m.role in ("user", "assistant")]
    if not turns or turns[-1][0] != "user":
        raise ValidationError("the last message must come from the user")
    history = [{"role": r, "content": c} for r, c in turns[:-1]]
    return turns[-1][1], history


@router.get("/models", response_model=ModelList)
def list_models() -> ModelList:
    return ModelList(data=[ModelCard(id=MODEL_ID, created=int(time.time()))])


@router.post("/chat/completions", response_model=ChatResponse)
def chat_completions(req: ChatRequest, engine: EngineDep, request: Request) -> Any:
    question, history = split_messages(req)
    check_history(history, request.app.state.settings.api)
    question = engine.validate(question)
    cid = f"chatcmpl-{uuid.uuid4().hex[:24]}"
    created = int(time.time())
    if req.stream:
        # Start the answer before the status line goes out: a refusal to queue (429), bad input
        # or an unavailable model is then a real HTTP error, not an event inside a 200 stream.
        events = engine.answer_stream(question, history, stream=True)
        first = next(events)
        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        version_headers(headers, engine, request.app.state.holder)
        return StreamingResponse(_sse(_chain(first, events), question, history, cid, created, req.model,
                                      request_id(request)),
                                 media_type="text/event-stream", headers=headers)
    ans = engine.answer(question, history).to_dict()
    return {
        "id": cid, "object": "chat.completion", "created": created, "model": req.model or MODEL_ID,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": ans["answer"]},
                     "finish_reason": "stop"}],
        "usage": _usage(question, ans["answer"]),
        "kb": ans,
    }


def _usage(question: str, answer: str) -> dict[str, int]:
    # Character counts stand in for tokens: the answer may not come from an LLM at all.
    p, c = len(question), len(answer)
    return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}


def _chain(first: dict[str, Any], rest: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    yield first
    try:
        yield from rest
    finally:
        close = getattr(rest, "close", None)
        if close is not None:
            close()  # a client that went away frees its generation slot


def _sse(events: Iterator[dict[str, Any]], question: str, history: list[dict[str, str]], cid: str, created: int,
         model: str, rid: str = "") -> Iterator[str]:
    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
        body = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model or MODEL_ID,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}
        return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

    yield chunk({"role": "assistant", "content": ""})
    try:
        for event in events:
            if event["type"] == "delta" and event["text"]:
                yield chunk({"content": event["text"]})
            elif event["type"] == "final":
                yield chunk({}, "stop", kb=event["answer"].to_dict())
    except Exception as exc:  # the status line is already sent: report in-band, then end
        # The client learns that it failed and under which id; the detail (an upstream address,
        # a path) goes to the server log only.
        log.error("request %s: stream %s failed: %s: %s", rid, cid, type(exc).__name__, exc,
                  exc_info=not isinstance(exc, GenerationError))
        message = f"the answer failed (request id {rid}; the server log has the details)"
        err = {"error": {"message": message, "type": "server_error"}, "request_id": rid}
        yield f"data: {json.dumps(err, ensure_ascii=False)}\n\n"
    yield "data: [DONE]\n\n"
