"""The answer engine: one ``answer(question, history=None)`` for the CLI, HTTP API and agent tool.

question → terminology layer (find terms, disambiguate, rewrite) → retrieve passages and facts
→ route decision → handler (glossary | fact | rag | refuse) → number verification → Answer.

An unsupported number never reaches the user: a generated answer that fails verification is
regenerated once with the offending numbers named; if it fails again the extractive answer
(sentences copied from the passages) or a refusal is returned, and ``verification.status``
says what happened.
"""

from __future__ import annotations

import dataclasses
import importlib
import re
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Iterator

from knowledge.errors import ValidationError
from router.routes import RouteChoice, RouteSignals, create_router, default_routes

_CITE = re.compile(r"\[(\d{1,2})\]")
_SENTENCE_END = re.compile(r"(?<=[。！？!?；;])|(?<=[.])(?=\s)|\n")


@dataclass
class Answer:
    """The answer object of DESIGN.md's data contract."""

    answer: str
    route: str
    confidence: float
    terms: list[dict[str, Any]] = field(default_factory=list)
    rewritten_query: str = ""
    citations: list[dict[str, Any]] = field(default_factory=list)
    verification: dict[str, Any] = field(default_factory=lambda: {"status": "not_applicable", "numbers": []})
    timings_ms: dict[str, float] = field(default_factory=dict)
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Timer:
    """Accumulates wall time per stage in milliseconds."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.ms: dict[str, float] = {"route": 0.0, "retrieve": 0.0, "generate": 0.0, "verify": 0.0}

    def stage(self, name: str) -> "_Stage":
        return _Stage(self, name)

    def done(self) -> dict[str, float]:
        out = {k: round(v, 1) for k, v in self.ms.items()}
        out["total"] = round((time.perf_counter() - self.t0) * 1000, 1)
        return out


class _Stage:
    def __init__(self, timer: Timer, name: str):
        self.timer, self.name = timer, name

    def __enter__(self) -> None:
        self.start = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.timer.ms[self.name] = self.timer.ms.get(self.name, 0.0) + (time.perf_counter() - self.start) * 1000


class Engine:
    """Holds the loaded index, models and router; thread-safe for concurrent ``answer`` calls."""

    def __init__(self, settings: Any, index: Any, generator: Any = None, router: Any = None,
                 disambiguator: Any = None, verifier: Any = None):
        from router.llm import create_generator
        from router.llm.extractive import ExtractiveGenerator
        from router.terms import EmbeddingDisambiguator
        from router.verifier import Verifier

        self.settings = settings
        self.index = index
        self.routes = default_routes(settings.router)
        if router is None and settings.router.backend == "lora":
            # Registers the "lora" backend (llama.cpp itself loads lazily). import_module, not
            # ``import router.lora``: that would rebind the ``router`` argument of this method.
            importlib.import_module("router.lora")
        self.router = router or create_router(settings.router.backend, routes=self.routes,
                                              peak_threshold=settings.router.peak_threshold, settings=settings)
        self.generator = generator if generator is not None else create_generator(settings)
        self.extractive = ExtractiveGenerator()
        self.disambiguator = disambiguator or EmbeddingDisambiguator(index.embedder, index.glossary)
        self.verifier = verifier or Verifier()
        self._lock = threading.Lock()

    # -- public ---------------------------------------------------------------------
    def answer(self, question: str, history: list[dict[str, str]] | None = None) -> Answer:
        """Answer one question. ``history`` is a list of ``{"role", "content"}`` turns."""
        final: Answer | None = None
        for event in self.answer_stream(question, history, stream=False):
            if event["type"] == "final":
                final = event["answer"]
        assert final is not None  # answer_stream always ends with a final event
        return final

    def answer_stream(self, question: str, history: list[dict[str, str]] | None = None,
                      stream: bool = True) -> Iterator[dict[str, Any]]:
        """Yield ``{"type": "delta", "text"}`` events, then ``{"type": "final", "answer"}``.

        Text is released sentence by sentence; a sentence with a number is released only once
        its numbers are verified, so streaming never shows an unsupported figure either.
        """
        question = self.validate(question)
        timer = Timer()
        choice, signals = self.decide(question, history, timer)
        yield from self.answer_decided(question, choice, signals, timer, stream)

    def answer_decided(self, question: str, choice: RouteChoice, signals: RouteSignals, timer: Timer | None = None,
                       stream: bool = True) -> Iterator[dict[str, Any]]:
        """The events of :meth:`answer_stream` for a decision made elsewhere (e.g. over
        passages the caller supplies, see :mod:`router.passages`)."""
        handler = getattr(self, f"_route_{choice.route}")
        yield from handler(question, choice, signals, timer or Timer(), stream)

    def decide(self, question: str, history: list[dict[str, str]] | None = None,
               timer: Timer | None = None) -> tuple[RouteChoice, RouteSignals]:
        """Terminology layer, retrieval and the route decision (no generation)."""
        from router.llm.prompts import detect_language
        from router.terms import find_terms, rewrite_query

        timer = timer or Timer()
        with timer.stage("route"):
            glossary = self.index.glossary
            matches = find_terms(question, glossary)
            context = _context(question, history)
            margin = self.settings.router.ambiguity_margin
            resolutions = [self.disambiguator.resolve(context, m, margin) for m in matches]
            rewritten = rewrite_query(question, matches, resolutions) if matches else question
        with timer.stage("retrieve"):
            k = self.settings.retrieval.top_k
            hits = self.index.search(rewritten, k=k)
            fact_hits = self.index.search_facts(rewritten, k=5)
        with timer.stage("route"):
            signals = RouteSignals(question, rewritten, resolutions, matches, hits, fact_hits,
                                   detect_language(question), background_similarity(self.index, rewritten))
            choice = self.router.decide(signals)
        if choice.rewritten_query and choice.rewritten_query != rewritten:
            # The router (the LoRA model) read the terms differently from the embedding
            # disambiguator: retrieve again for its reading, so passages, facts and the
            # answer's terms all follow the router of record.
            with timer.stage("retrieve"):
                hits = self.index.search(choice.rewritten_query, k=k)
                fact_hits = self.index.search_facts(choice.rewritten_query, k=5)
            signals = dataclasses.replace(signals, rewritten_query=choice.rewritten_query,
                                          terms=list(choice.terms) or signals.terms, hits=hits,
                                          fact_hits=fact_hits)
        return choice, signals

    # -- handlers (looked up by route name) -----------------------------------------------
    def _route_glossary(self, question: str, choice: RouteChoice, signals: RouteSignals,
                        timer: Timer, stream: bool) -> Iterator[dict[str, Any]]:
        text, citations = _glossary_answer(signals)
        yield from self._finish(text, choice, signals, timer, citations, None)

    def _route_fact(self, question: str, choice: RouteChoice, signals: RouteSignals,
                    timer: Timer, stream: bool) -> Iterator[dict[str, Any]]:
        best = pick_fact(question, signals.fact_hits, self.routes["fact"].threshold)
        if best is None:
            fallback = dataclasses.replace(choice, route="rag", reason="fact below threshold; fell through to rag")
            yield from self._route_rag(question, fallback, signals, timer, stream)
            return
        fact = best.fact
        chunk = self.index.chunk(fact.chunk_id)
        with timer.stage("verify"):
            verification = self.verifier.check(fact.statement, [(chunk.chunk_id, chunk.text)], question)
        citation = {"source": fact.source, "page": fact.page, "chunk_id": fact.chunk_id,
                    "quote": fact.statement}
        yield from self._finish(fact.statement, choice, signals, timer, [citation], verification.to_dict())

    def _route_refuse(self, question: str, choice: RouteChoice, signals: RouteSignals,
                      timer: Timer, stream: bool) -> Iterator[dict[str, Any]]:
        from router.llm.prompts import REFUSAL_EN, REFUSAL_ZH

        text = REFUSAL_ZH if signals.lang == "zh" else REFUSAL_EN
        refused = dataclasses.replace(choice, route="refuse")
        yield from self._finish(text, refused, signals, timer, [], None)

    def _route_rag(self, question: str, choice: RouteChoice, signals: RouteSignals,
                   timer: Timer, stream: bool) -> Iterator[dict[str, Any]]:
        from router.llm.prompts import build_rag_messages, is_refusal
        from router.verifier import unsupported_text

        hits = signals.hits
        passages = [h.chunk.text for h in hits]
        ids = [(h.chunk.chunk_id, h.chunk.text) for h in hits]
        llm = self.settings.llm
        prompt_q = signals.rewritten_query or question
        messages = build_rag_messages(prompt_q, passages, signals.lang)
        released: list[str] = []
        status_note = ""
        text = ""
        verification = None

        with timer.stage("generate"):
            if stream:
                # Sentence-gated streaming: pass each finished sentence through the verifier.
                gate = _SentenceGate(lambda s: self.verifier.check(s, ids, question).status != "flagged")
                pieces = self.generator.stream(messages, max_tokens=llm.max_tokens, temperature=llm.temperature)
                failed = False
                for piece in pieces:
                    for ok_text in gate.feed(piece):
                        if ok_text is None:
                            failed = True
                            break
                        released.append(ok_text)
                        yield {"type": "delta", "text": ok_text}
                    if failed:
                        break
                if not failed:
                    for ok_text in gate.flush():
                        if ok_text is None:
                            failed = True
                            break
                        released.append(ok_text)
                        yield {"type": "delta", "text": ok_text}
                text = "".join(released) if not failed else gate.raw
            else:
                text = self.generator.generate(messages, max_tokens=llm.max_tokens, temperature=llm.temperature)
        if not released:
            text = text.strip()

        if released and (is_refusal(text) or is_degenerate(text)):
            text = "".join(released)  # keep what was already shown (it was verified)
        elif is_refusal(text):
            # The model read the passages and found no answer: honour it. (Answering
            # extractively here was measured to destroy refusals on negative-only passages.)
            refused = dataclasses.replace(choice, reason="the generator found no answer in the passages")
            yield from self._route_refuse(question, refused, signals, timer, stream)
            return
        elif is_degenerate(text):
            # No content beyond citation markers (small models do this): answer extractively
            # from the same passages, never from memory.
            fallback = self.extractive.compose(prompt_q, passages)
            if not fallback or is_refusal(fallback):
                refused = dataclasses.replace(choice, reason="the generator produced no answer")
                yield from self._route_refuse(question, refused, signals, timer, stream)
                return
            text = fallback
            status_note = "the generator produced no content; extractive answer from the passages"

        with timer.stage("verify"):
            verification = self.verifier.check(text, ids, question)
        if verification.status == "flagged" and not released:
            # One regeneration with the offending numbers named.
            feedback = unsupported_text(verification)
            with timer.stage("generate"):
                retry = self.generator.generate(build_rag_messages(prompt_q, passages, signals.lang, feedback),
                                                max_tokens=llm.max_tokens, temperature=llm.temperature).strip()
            with timer.stage("verify"):
                retry_v = self.verifier.check(retry, ids, question)
            if retry_v.status != "flagged" and retry and not is_refusal(retry) and not is_degenerate(retry):
                text, verification, status_note = retry, retry_v, "regenerated after unsupported numbers"
                verification = _with_status(verification, "corrected")
        if verification.status == "flagged":
            fallback = self.extractive.compose(prompt_q, passages)
            with timer.stage("verify"):
                fb_v = self.verifier.check(fallback, ids, question) if fallback else None
            prefix = "".join(released)
            if fallback and fb_v is not None and fb_v.status != "flagged":
                text = prefix + "\n" + fallback if prefix.strip() else fallback
                verification = _with_status(fb_v, "corrected")
                status_note = "generated answer had unsupported numbers; extractive answer returned"
            elif prefix.strip():
                text = prefix
                verification = _with_status(self.verifier.check(text, ids, question), "corrected")
                status_note = "unsupported sentences were withheld"
            else:
                refused = dataclasses.replace(choice, reason="answer could not be verified")
                yield from self._route_refuse(question, refused, signals, timer, stream)
                return
        citations = _rag_citations(text, hits)
        vdict = verification.to_dict()
        if status_note:
            vdict["note"] = status_note
        ans = self._answer(text, choice, signals, timer, citations, vdict)
        shown = "".join(released)
        rest = text[len(shown):] if shown and text.startswith(shown) else (text if not shown else "\n" + text)
        if rest:
            yield {"type": "delta", "text": rest}
        yield {"type": "final", "answer": ans}

    # -- helpers -------------------------------------------------------------------------
    def _finish(self, text: str, choice: RouteChoice, signals: RouteSignals, timer: Timer,
                citations: list[dict[str, Any]], verification: dict[str, Any] | None) -> Iterator[dict[str, Any]]:
        ans = self._answer(text, choice, signals, timer, citations, verification)
        yield {"type": "delta", "text": ans.answer}
        yield {"type": "final", "answer": ans}

    def _answer(self, text: str, choice: RouteChoice, signals: RouteSignals, timer: Timer,
                citations: list[dict[str, Any]], verification: dict[str, Any] | None) -> Answer:
        if verification is None:
            with timer.stage("verify"):
                verification = self.verifier.check(text, [], "").to_dict() if choice.route == "refuse" else \
                    {"status": "not_applicable", "numbers": []}
        return Answer(
            answer=text, route=choice.route, confidence=round(float(choice.confidence), 4),
            terms=[t.to_dict() for t in signals.terms], rewritten_query=signals.rewritten_query,
            citations=citations, verification=verification, timings_ms=timer.done(), reason=choice.reason,
        )

    def validate(self, question: Any) -> str:
        if not isinstance(question, str):
            raise ValidationError(f"question must be a string, got {type(question).__name__}")
        q = question.strip()
        if not q:
            raise ValidationError("question is empty")
        limit = self.settings.api.max_question_chars
        if len(q) > limit:
            raise ValidationError(f"question has {len(q)} characters; the limit is {limit}")
        return q


_ASKED_UNITS = [
    (re.compile(r"(几|多少)(个)?(工作日|天|日)|多久|days?\b"), {"天", "日", "工作日", "day"}),
    (re.compile(r"(几|多少)(个)?(小时|钟头)|hours?\b"), {"小时", "hour"}),
    (re.compile(r"(多少|几)(块)?钱|多少元|几块|金额|费用|标准|补贴|补助|yuan|RMB|how much", re.IGNORECASE), {"元", "CNY"}),
    (re.compile(r"百分之几|比例|百分比|percent|%"), {"%"}),
    (re.compile(r"(几|多少)(个)?(月)|months?\b"), {"月", "个月", "month"}),
    (re.compile(r"(几|多少)(年)|years?\b"), {"年", "year"}),
    (re.compile(r"(几|多少)(次)|times\b"), {"次"}),
    (re.compile(r"(几|多少)(位|个字符)|characters\b"), {"位", "个字符", "字符"}),
]


def asked_units(question: str) -> set[str]:
    """Units a quantity question asks for.

    >>> sorted(asked_units("婚假是几天？"))
    ['day', '天', '工作日', '日']
    """
    out: set[str] = set()
    for pattern, units in _ASKED_UNITS:
        if pattern.search(question):
            out |= units
    return out


def pick_fact(question: str, fact_hits: list[Any], threshold: float, window: float = 0.02) -> Any:
    """The fact that answers the question: among facts within ``window`` of the best score
    (and above ``threshold``), prefer one whose value carries the unit the question asks for."""
    if not fact_hits or fact_hits[0].score < threshold:
        return None
    top = fact_hits[0].score
    close = [h for h in fact_hits if h.score >= max(threshold, top - window)]
    units = asked_units(question)
    if units:
        for h in close:
            if any(q.unit in units for q in h.fact.values):
                return h
    return close[0]


def background_similarity(index: Any, query: str, sample: int = 4096) -> float:
    """Median cosine of the query to the collection (an evenly spaced sample above ``sample``).

    The router judges relevance by how far the best passage stands above this background.
    """
    import numpy as np

    vectors = index.chunk_vectors
    if len(vectors) == 0:
        return 0.0
    if len(vectors) > sample:
        vectors = vectors[:: max(1, len(vectors) // sample)]
    return float(np.median(vectors @ index.query_vector(query)))


def is_degenerate(text: str) -> bool:
    """True when an answer has no content beyond citation markers and punctuation.

    >>> is_degenerate("[1] [2] [3]")
    True
    >>> is_degenerate("每晚不超过480元[1]。")
    False
    >>> is_degenerate("8人")
    False
    """
    return not re.sub(r"\[\d{1,2}\]|[\s\W_]", "", text)


def _with_status(verification: Any, status: str) -> Any:
    verification.status = status
    return verification


def _context(question: str, history: list[dict[str, str]] | None) -> str:
    """Disambiguation context: the question plus the last two user turns."""
    if not history:
        return question
    prev = [h.get("content", "") for h in history if h.get("role") == "user"][-2:]
    return "\n".join([*prev, question])


def _glossary_answer(signals: RouteSignals) -> tuple[str, list[dict[str, Any]]]:
    """Compose a definition answer straight from the glossary (no LLM)."""
    zh = signals.lang == "zh"
    lines: list[str] = []
    citations: list[dict[str, Any]] = []
    seen: set[str] = set()
    for match, res in zip(signals.matches, signals.terms):
        entry = match.entry
        if entry.term in seen:
            continue
        seen.add(entry.term)
        meanings = entry.meanings
        if res.decided and len(meanings) > 1:
            chosen = [m for m in meanings if (m.english, m.chinese) == (res.expansion, res.meaning)] or meanings[:1]
            others = [m for m in meanings if m not in chosen]
        else:
            chosen, others = meanings, []
        parts = [_meaning_text(m) for m in chosen]
        if match.via == "meaning":
            head = f"「{match.surface}」的缩写是 {entry.term}" if zh else f'"{match.surface}" is abbreviated {entry.term}'
            lines.append(f"{head}（{'；'.join(parts)}）。" if zh else f"{head} ({'; '.join(parts)}).")
        elif len(chosen) == 1:
            lines.append(f"{entry.term} 指 {parts[0]}。" if zh else f"{entry.term} stands for {parts[0]}.")
        else:
            joined = "；".join(f"{i + 1}. {p}" for i, p in enumerate(parts))
            lines.append(f"{entry.term} 有 {len(parts)} 种含义：{joined}。具体含义需结合上下文。" if zh else
                         f"{entry.term} has {len(parts)} meanings: {'; '.join(parts)}. Which one applies depends on context.")
        if others:
            alt = "；".join(_meaning_text(m) for m in others)
            lines.append(f"（在其他语境中也可指：{alt}）" if zh else f"(In other contexts it can also mean: {alt}.)")
        citations.append({"source": entry.source or "glossary", "page": None, "chunk_id": f"glossary:{entry.term}",
                          "quote": f"{entry.term}: " + " / ".join(_meaning_text(m) for m in meanings)})
    return "\n".join(lines), citations


def _meaning_text(m: Any) -> str:
    if m.english and m.chinese:
        return f"{m.chinese}（{m.english}）"
    return m.chinese or m.english


def _rag_citations(text: str, hits: list[Any]) -> list[dict[str, Any]]:
    """Passages the answer cites with [n]; when it cites none, the top passage."""
    cited = [int(n) - 1 for n in _CITE.findall(text)]
    order = [i for i in dict.fromkeys(cited) if 0 <= i < len(hits)] or ([0] if hits else [])
    return [hits[i].citation() for i in order]


class _SentenceGate:
    """Releases streamed text sentence by sentence once ``check(sentence)`` passes.

    ``feed`` yields released sentences, or ``None`` when a sentence fails (then stop).
    """

    def __init__(self, check: Any):
        self.check = check
        self.buf = ""
        self.raw = ""

    def feed(self, piece: str) -> Iterator[str | None]:
        self.buf += piece
        self.raw += piece
        while True:
            m = _SENTENCE_END.search(self.buf, 1)
            if not m or m.end() == 0:
                return
            cut = m.end() if m.end() > 0 else len(self.buf)
            sentence, self.buf = self.buf[:cut], self.buf[cut:]
            if not sentence:
                return
            yield sentence if self.check(sentence) else None

    def flush(self) -> Iterator[str | None]:
        if self.buf:
            sentence, self.buf = self.buf, ""
            yield sentence if self.check(sentence) else None


# The process-wide engine holder lives in api/state.py (get_engine, set_engine, answer): the
# serving side owns which engine is current; this module only defines how one answers.
