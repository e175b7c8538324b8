"""Request/response schemas, in named families (chat, native ask, glossary, health)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


# --- answer object (ARCHITECTURE.md, Data contracts) -------------------------------------------------------
class Citation(BaseModel):
    source: str
    page: int | None = None
    chunk_id: str
    quote: str


class NumberCheckOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    text: str
    value: float | None = None
    unit: str = ""
    supported: bool
    evidence: str | None = None


class VerificationOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    status: Literal["verified", "corrected", "flagged", "not_applicable"]
    numbers: list[NumberCheckOut] = []


class TermOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    term: str
    expansion: str = ""
    meaning: str = ""
    alternatives: list[Any] = []


class AnswerOut(BaseModel):
    answer: str
    route: Literal["glossary", "fact", "rag", "refuse"]
    confidence: float
    terms: list[TermOut] = []
    rewritten_query: str = ""
    citations: list[Citation] = []
    verification: VerificationOut
    timings_ms: dict[str, float] = {}
    reason: str = ""
    standalone_question: str = Field("", description="the self-contained question a follow-up was rewritten into")


# --- native API ------------------------------------------------------------------------
class ChatTurn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["user", "assistant", "system"]
    content: str


class AskRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    question: str = Field(..., min_length=1, description="the question, Chinese or English")
    history: list[ChatTurn] = []


class GlossaryMeaningOut(BaseModel):
    english: str = ""
    chinese: str = ""


class GlossaryEntryOut(BaseModel):
    term: str
    meanings: list[GlossaryMeaningOut]
    source: str = ""


class HealthOut(BaseModel):
    """Without the admin key only ``status`` and the versions are sent (api.deps.is_admin)."""

    status: Literal["ok", "degraded"]
    index_version: str | None
    adapter_version: str | None = None
    documents: int | None = None
    chunks: int | None = None
    facts: int | None = None
    glossary_terms: int | None = None
    embedder: str = ""
    generator: str = ""
    router: str = Field("", description="the router that is really deciding (the rule fallback when an adapter failed)")
    router_configured: str = ""
    router_reason: str = Field("", description="why the configured router is not the one deciding")
    worker: int = Field(0, description="process id of the API worker that answered")
    detail: str = ""


# --- OpenAI-compatible chat ---------------------------------------------------------------
class ContentPart(BaseModel):
    """One part of an OpenAI message's ``content`` list; only text parts are read (an image or
    audio part is accepted and ignored), and a text part's ``text`` must be a string."""

    model_config = ConfigDict(extra="ignore")
    type: str = "text"
    text: str | None = None


class ChatMessage(BaseModel):
    # OpenAI clients send extra keys (name, tool_calls, ...): accepted and ignored.
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str | list[ContentPart] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(p.text or "" for p in self.content if p.type == "text")
        return self.content or ""


class ChatRequest(BaseModel):
    # Unknown OpenAI parameters (top_p, n, user, ...) are ignored rather than rejected so any
    # OpenAI-compatible client works; the ones we read are typed.
    model_config = ConfigDict(extra="ignore")
    model: str = "kb-assistant"
    messages: list[ChatMessage] = Field(..., min_length=1)
    stream: bool = False
    temperature: float | None = Field(None, ge=0, le=2)
    max_tokens: int | None = Field(None, ge=1, le=8192)


class ChatChoice(BaseModel):
    index: int = 0
    message: dict[str, Any]
    finish_reason: str = "stop"


class ChatResponse(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: dict[str, int]
    kb: AnswerOut


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "kb-assistant"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ErrorOut(BaseModel):
    error: dict[str, Any]


# --- admin API ---------------------------------------------------------------------------------
class JobStatus(BaseModel):
    id: str
    kind: Literal["reindex", "retrain"]
    state: Literal["queued", "running", "succeeded", "failed", "cancelled"]
    progress: float = Field(0, ge=0, le=100, description="percent done")
    params: dict[str, Any] = {}
    log_tail: list[str] = []
    result: dict[str, Any] | None = None
    error: str | None = None
    cancel_requested: bool = False
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None

    @classmethod
    def from_row(cls, job: dict[str, Any], tail: int = 50) -> "JobStatus":
        return cls(**{k: v for k, v in job.items() if k != "log"}, log_tail=(job.get("log") or [])[-tail:])


class JobList(BaseModel):
    jobs: list[JobStatus]


class ReindexRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    full: bool = False


class StoredFile(BaseModel):
    name: str
    bytes: int
    sha256: str
    kind: str = Field(description="content family found by sniffing: pdf, zip, ole, text")
    status: Literal["stored", "unchanged", "glossary"] = Field(
        "stored", description="unchanged: the same bytes were already stored under this name")
    warnings: list[str] = Field([], description="what the loader reported (scanned pages, encoding), or why "
                                                "the file will not be indexed")
    imported_as: str | None = None
    glossary_entries: int | None = None


class UploadResult(BaseModel):
    stored: list[StoredFile]
    note: str = "run POST /admin/reindex to publish the change"


class DeleteResult(BaseModel):
    deleted: str
    note: str = "run POST /admin/reindex to publish the change"


# --- admin console: documents, versions, glossary, evaluation ----------------------------------
class PassageOut(BaseModel):
    chunk_id: str
    kind: Literal["chunk", "glossary"]
    source: str
    page: int | None = None
    heading_path: list[str] = []
    text: str
    index_version: str | None = None


class DocumentRow(BaseModel):
    name: str
    state: Literal["indexed", "new", "changed", "duplicate", "failed", "removed"]
    bytes: int | None = None
    modified: float | None = None
    sha256: str = ""
    since: str | None = Field(None, description="oldest index version serving this exact content")
    chunks: int | None = None
    facts: int | None = None
    title: str = ""
    warnings: list[str] = []
    error: str = ""
    duplicate_of: str | None = None


class DocumentList(BaseModel):
    index_version: str | None
    documents: list[DocumentRow]


class IndexVersionOut(BaseModel):
    version: str
    current: bool
    created_at: str = ""
    documents: int | None = None
    chunks: int | None = None
    facts: int | None = None
    glossary_entries: int | None = None
    embedder: str = ""
    full: bool = False
    previous: str | None = None
    seconds: float | None = None
    errors: int = 0


class IndexVersionList(BaseModel):
    current: str | None
    versions: list[IndexVersionOut]


class AdapterVersionOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    version: str
    current: bool = False
    status: str = ""
    created_at: str = ""
    base_model: str = ""
    metrics: dict[str, Any] = {}


class AdapterVersionList(BaseModel):
    current: str | None
    serving_router: str = Field("", description="the router the server answers with (lora uses the adapter)")
    versions: list[AdapterVersionOut]


class PublishResult(BaseModel):
    artifact: Literal["index", "adapter"]
    version: str
    previous: str | None = None
    serving: str | None = Field(None, description="what the server answers with now")


class GlossaryMeaningIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    english: str = Field("", max_length=500)
    chinese: str = Field("", max_length=500)


class GlossaryEntryIn(BaseModel):
    model_config = ConfigDict(extra="ignore")  # "source" comes back from GET; ignored
    term: str = Field(..., min_length=1, max_length=500)
    meanings: list[GlossaryMeaningIn] = Field(..., min_length=1)


class GlossaryWriteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    entries: list[GlossaryEntryIn] = Field(..., max_length=50_000)
    base_revision: str | None = Field(None, description="the revision the edit started from; 409 if it moved")
    comment: str = Field("", max_length=500)


class GlossaryEntryRow(BaseModel):
    term: str
    meanings: list[GlossaryMeaningOut]
    source: str = ""


class GlossaryTable(BaseModel):
    revision: str
    published: bool = Field(description="the serving index was built from exactly these glossary files")
    files: list[dict[str, Any]]
    skipped: list[dict[str, Any]] = []
    versions: list[dict[str, Any]] = []
    entries: list[GlossaryEntryRow]


class GlossaryVersionOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    version: str
    created_at: str
    terms: int
    meanings: int
    replaced: list[str] = []
    revision: str
    note: str = "run POST /admin/reindex to publish the change"


class EvalSummaryRow(BaseModel):
    metric: str
    kind: Literal["rate", "ms"]
    values: dict[str, float | None]


class EvalReportOut(BaseModel):
    report_dir: str
    written_at: str = ""
    config: dict[str, Any] = {}
    summary: list[EvalSummaryRow] = []
    metrics: dict[str, Any] = {}
    has_html: bool = False
