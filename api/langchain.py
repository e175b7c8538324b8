"""LangChain integration: a retriever over the hybrid index and a chat model over ``answer()``.

- :class:`KBRetriever` (a LangChain ``BaseRetriever``) returns the hybrid (dense + BM25, RRF)
  hits as ``Document`` objects whose metadata carries the citation (source, page, chunk_id, quote)
  and the fused score. Give it an ``index`` (:class:`retrieval.index.KnowledgeIndex`) or an
  ``engine`` (its index is used); with neither it uses the process-wide engine.
- :class:`KBChatModel` (a LangChain ``BaseChatModel``) answers the last user message with the
  engine's ``answer()`` — terminology layer, routing and number verification included — and puts
  the full answer object in ``response_metadata["kb"]``.

To drive the project's OpenAI-compatible ``/v1`` endpoint from LangChain instead, use
``langchain_openai.ChatOpenAI(base_url="http://127.0.0.1:8000/v1", model="kb-assistant",
api_key=...)`` (see the integrations README).

LangChain is an optional extra (``pip install 'kb-assistant[langchain]'``).

Example::

    retriever = KBRetriever(engine=get_engine(), k=3)
    for doc in retriever.invoke("出差住宿标准是多少？"):
        print(doc.metadata["source"], doc.metadata["page"], doc.page_content[:40])
"""

from __future__ import annotations

from typing import Any

from knowledge.core.errors import MissingExtraError
from api.state import get_engine
from knowledge.core.errors import ValidationError

try:
    from langchain_core.callbacks import CallbackManagerForLLMRun, CallbackManagerForRetrieverRun
    from langchain_core.documents import Document
    from langchain_core.language_models.chat_models import BaseChatModel
    from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
    from langchain_core.outputs import ChatGeneration, ChatResult
    from langchain_core.retrievers import BaseRetriever
    from pydantic import Field
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise MissingExtraError("langchain-core", "langchain") from exc


def hit_to_document(hit: Any) -> Document:
    """A retrieval ``Hit`` as a LangChain ``Document`` (chunk text + citation metadata)."""
    citation = hit.citation()
    metadata = {
        "source": citation["source"],
        "page": citation["page"],
        "chunk_id": citation["chunk_id"],
        "score": float(hit.score),
        "quote": citation["quote"],
    }
    return Document(page_content=hit.chunk.text, metadata=metadata, id=citation["chunk_id"])


def format_documents(docs: list[Document]) -> str:
    """Numbered passages with their source, ready for a prompt (an LCEL step: ``retriever | format_documents``).

    >>> format_documents([Document(page_content="每晚600元。", metadata={"source": "差旅.pdf", "page": 2})])
    '[1] (差旅.pdf, p. 2) 每晚600元。'
    """
    lines = []
    for i, doc in enumerate(docs, start=1):
        page = doc.metadata.get("page")
        where = f"{doc.metadata.get('source', '?')}, p. {page}" if page is not None else doc.metadata.get("source", "?")
        lines.append(f"[{i}] ({where}) {doc.page_content.strip()}")
    return "\n\n".join(lines)


def _default_engine() -> Any:

    return get_engine()


class KBRetriever(BaseRetriever):
    """Hybrid retrieval over the knowledge base as a LangChain retriever.

    ``k`` defaults to ``settings.retrieval.top_k`` when left at ``None``.
    """

    index: Any = None
    engine: Any = None
    k: int | None = Field(default=None, gt=0)

    def _index(self) -> Any:
        if self.index is not None:
            return self.index
        return (self.engine or _default_engine()).index

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        hits = self._index().search(query, k=self.k)
        return [hit_to_document(h) for h in hits]

    async def _aget_relevant_documents(self, query: str, *, run_manager: Any) -> list[Document]:
        # Search is CPU-bound (embedding + FAISS + BM25): run it in a worker thread so the event
        # loop keeps serving; LangChain's run_in_executor also carries the callback context.
        from langchain_core.runnables.config import run_in_executor

        return await run_in_executor(None, self._get_relevant_documents, query, run_manager=run_manager.get_sync())


def _question_and_history(messages: list[BaseMessage]) -> tuple[str, list[dict[str, str]]]:
    """The last human message as the question; earlier human/AI turns as history."""
    last = max((i for i, m in enumerate(messages) if isinstance(m, HumanMessage)), default=None)
    if last is None:
        raise ValidationError(f"KBChatModel needs a human message; got {[m.type for m in messages]}")
    history = [{"role": "user" if m.type == "human" else "assistant", "content": m.text}
               for m in messages[:last] if m.type in ("human", "ai")]
    return messages[last].text, history


class KBChatModel(BaseChatModel):
    """The knowledge base as a LangChain chat model: ``KBChatModel(engine=...).invoke("AM是什么意思？")``."""

    engine: Any = None

    @property
    def _llm_type(self) -> str:
        return "kb-assistant"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model": "kb-assistant"}

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        question, history = _question_and_history(messages)
        engine = self.engine or _default_engine()
        kb = engine.answer(question, history or None).to_dict()
        message = AIMessage(content=kb["answer"], response_metadata={"kb": kb, "model_name": "kb-assistant"})
        return ChatResult(generations=[ChatGeneration(message=message)])
