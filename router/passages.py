"""Answer over passages the caller supplies, through the engine's own rag path (no index).

Benchmarks (and callers that bring their own documents) need the product's answer path
without a published index: the given passages are embedded with the configured embedder
and ranked by cosine, the router's refusal gate sees the same signals it sees in
production (best cosine, lexical support), and the engine's rag handler generates with
``build_rag_messages``, verifies numbers, regenerates or falls back, and refuses by the
same rules. Nothing here re-implements those steps.

    engine = passage_engine(settings)                       # no KnowledgeIndex needed
    ans = answer_over_passages(engine, "住宿标准？", ["住宿每晚500元。", "餐补每天100元。"])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from knowledge.core.errors import KBError, ValidationError
from knowledge.core.types import Chunk
from knowledge.glossary import Glossary
from retrieval.embedders import get_embedder
from retrieval.index import Hit
from router.engine import Engine, Timer
from router.llm.prompts import detect_language
from router.routes import RouteChoice, RouteSignals
import numpy as np


@dataclass
class PassageIndex:
    """The part of a KnowledgeIndex an Engine uses when there is no published index."""

    embedder: Any
    glossary: Any
    chunks: list[Any] = field(default_factory=list)
    facts: list[Any] = field(default_factory=list)
    version: str = "passages"

    def search(self, query: str, k: int | None = None) -> list[Any]:
        raise KBError("PassageIndex has no documents: use answer_over_passages(engine, question, passages)")

    dense_search = search

    def search_facts(self, query: str, k: int = 5) -> list[Any]:
        return []

    def chunk(self, chunk_id: str) -> Any:
        raise KBError(f"PassageIndex has no chunk {chunk_id!r}")


def passage_engine(settings: Any, generator: Any = None, embedder: Any = None) -> Any:
    """An Engine with an empty glossary and no index, for :func:`answer_over_passages`."""

    index = PassageIndex(embedder or get_embedder(settings), Glossary([]))
    return Engine(settings, index, generator=generator)


def rank_passages(embedder: Any, question: str, passages: Sequence[str],
                  sources: Sequence[str] | None = None) -> list[Any]:
    """Passages as retrieval Hits, best cosine first (score == dense == cosine)."""


    if not passages:
        return []
    vectors = embedder.embed(list(passages), "passage")
    cos = vectors @ np.asarray(embedder.embed_query(question), dtype=np.float32)
    names = list(sources) if sources is not None else [f"passage {i + 1}" for i in range(len(passages))]
    hits = [Hit(Chunk(f"passage-{i:04d}", names[i], p), float(c), float(c), None)
            for i, (p, c) in enumerate(zip(passages, cos.tolist()))]
    return sorted(hits, key=lambda h: -h.score)


def answer_over_passages(engine: Any, question: str, passages: Sequence[str],
                         sources: Sequence[str] | None = None, k: int | None = None) -> Any:
    """The engine's answer to ``question`` from ``passages`` only (an ``Answer``).

    Route is "rag" or "refuse": the terminology, glossary and fact routes need an index.
    """

    question = engine.validate(question)
    if sources is not None and len(sources) != len(passages):
        raise ValidationError(f"{len(sources)} sources for {len(passages)} passages")
    timer = Timer()
    with timer.stage("retrieve"):
        hits = rank_passages(engine.index.embedder, question, passages, sources)
        hits = hits[: k or engine.settings.retrieval.top_k]
    with timer.stage("route"):
        # No collection, so no background similarity: only the router's absolute floor
        # (rag_threshold) can refuse here; the generator and verifier rules still apply.
        signals = RouteSignals(question=question, rewritten_query=question, terms=[], matches=[], hits=hits,
                               fact_hits=[], lang=detect_language(question))
        choice = engine.router.decide(signals)
    if choice.route not in ("rag", "refuse"):
        choice = RouteChoice("rag", choice.confidence, choice.terms, choice.rewritten_query, choice.scores,
                             f"{choice.route} needs an index; answered from the passages")
    final = None
    for event in engine.answer_decided(question, choice, signals, timer, stream=False):
        if event["type"] == "final":
            final = event["answer"]
    if final is None:
        raise KBError("engine produced no final answer")
    return final
