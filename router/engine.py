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
import itertools
import re
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Iterator

from knowledge.core.errors import ValidationError
from knowledge.core.types import Chunk
from router.llm.prompts import build_rag_messages, is_refusal
from router.question import asked_units
from router.routes import RouteChoice, RouteSignals, create_router, default_routes, question_intent
from router.verifier import unsupported_text
from config.lexicon import lexicon
from retrieval.index import Hit
from router.calibration import Calibration
from router.compose import fact_answer, premise_note, quote_answer, select_units
from router.conditions import facts_by_chunk, read_rules
from router.conversation import has_topic_in, resolve
from router.evidence import content_terms, gather
from knowledge.numbers import extract_quantities
from knowledge.text_utils import SENTENCE_BREAK
from router.meaning import MeaningReader
from router.llm import create_generator
from router.llm.extractive import ExtractiveGenerator
from router.llm.prompts import detect_language, REFUSAL_EN, REFUSAL_ZH
from router.question import analyze, strip_injection
from router.terms import EmbeddingDisambiguator, find_terms, rewrite_query
from router.verifier import Verifier
import numpy as np

_CITE = re.compile(r"\[(\d{1,2})\]")
_SENTENCE_END = SENTENCE_BREAK


def _sentences(text: str) -> list[str]:
    """``text`` cut after each sentence end; the pieces join back to ``text``.

    >>> _sentences("第一条。第二条；三")
    ['第一条。', '第二条；', '三']
    """
    pieces, start = [], 0
    for m in _SENTENCE_END.finditer(text):
        if m.end() > start and m.end() < len(text):
            pieces.append(text[start:m.end()])
            start = m.end()
    pieces.append(text[start:])
    return [p for p in pieces if p] or [text]


@dataclass
class Answer:
    """The answer object (ARCHITECTURE.md, Data contracts)."""

    answer: str
    route: str
    confidence: float
    terms: list[dict[str, Any]] = field(default_factory=list)
    rewritten_query: str = ""
    citations: list[dict[str, Any]] = field(default_factory=list)
    verification: dict[str, Any] = field(default_factory=lambda: {"status": "not_applicable", "numbers": []})
    timings_ms: dict[str, float] = field(default_factory=dict)
    reason: str = ""
    standalone_question: str = ""   # the standalone question a follow-up was resolved into ("" if none)

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
    """Holds the loaded index, models and router; thread-safe for concurrent ``answer`` calls.

    The answer path is a few small steps, the same for streaming and non-streaming calls:
    :meth:`decide` (conversation → question form → terms → retrieval → evidence → route), then the
    route's handler (registered by name in :attr:`handlers`) gathers what it answers from, generates
    or composes, verifies, and falls back.
    """

    def __init__(self, settings: Any, index: Any, generator: Any = None, router: Any = None,
                 disambiguator: Any = None, verifier: Any = None):

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
        self.disambiguator = disambiguator or EmbeddingDisambiguator.from_settings(index.embedder, index.glossary, settings)
        self.verifier = verifier or Verifier()
        describe = getattr(index.embedder, "describe", None)
        self.calibration = Calibration.from_manifest(getattr(index, "manifest", {}) or {},
                                                     describe() if callable(describe) else None)
        self.reader = MeaningReader.for_index(index, settings) if hasattr(index, "path") else None
        self.handlers: dict[str, Any] = {}
        for name, handler in (("glossary", self._route_glossary), ("fact", self._route_fact),
                              ("rag", self._route_rag), ("refuse", self._route_refuse)):
            self.register_handler(name, handler)

    def register_handler(self, route: str, handler: Any) -> None:
        """Attach the handler of a route (one per route name; a second one is an error)."""
        if route in self.handlers:
            raise ValidationError(f"route {route!r} already has a handler")
        if route not in self.routes:
            raise ValidationError(f"unknown route {route!r}; routes are {sorted(self.routes)}")
        self.handlers[route] = handler

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
        its numbers are verified, so streaming never shows an unsupported figure either. With
        ``stream=False`` the same steps run and only the final event carries the text.
        """
        question = self.validate(question)
        timer = Timer()
        choice, signals = self.decide(question, history, timer)
        yield from self.answer_decided(question, choice, signals, timer, stream)

    def answer_decided(self, question: str, choice: RouteChoice, signals: RouteSignals, timer: Timer | None = None,
                       stream: bool = True) -> Iterator[dict[str, Any]]:
        """The events of :meth:`answer_stream` for a decision made elsewhere (e.g. over
        passages the caller supplies, see :mod:`router.passages`)."""
        handler = self.handlers[choice.route]
        for event in handler(question, choice, signals, timer or Timer(), stream):
            if event["type"] == "final" or stream:
                yield event

    def decide(self, question: str, history: list[dict[str, str]] | None = None,
               timer: Timer | None = None) -> tuple[RouteChoice, RouteSignals]:
        """Conversation, question form, terminology layer, retrieval, evidence and the route (no generation)."""

        timer = timer or Timer()
        with timer.stage("route"):
            clean, _ = strip_injection(question)
            conv = resolve(clean, history, has_topic_in(self.index)) if history else None
            standalone = conv.standalone if conv is not None and conv.followup else clean
            form = analyze(standalone)
            search = form.search_text
            glossary = self.index.glossary
            matches = find_terms(search, glossary)
            context = _context(standalone, history)
            margin = self.settings.router.ambiguity_margin
            # One disambiguation per distinct term: a question repeating a term is not slower for it.
            by_term: dict[str, Any] = {}
            resolutions = [by_term[m.term] if m.term in by_term else by_term.setdefault(
                m.term, self.disambiguator.resolve(context, m, margin)) for m in matches]
            rewritten = rewrite_query(search, matches, resolutions) if matches else search
        hits, fact_hits = self._retrieve(rewritten, timer)
        with timer.stage("route"):
            background = background_similarity(self.index, rewritten)
            focus = conv.question if conv is not None and conv.followup else ""
            evidence = gather(rewritten, hits, self.index, fact_hits=fact_hits, background=background,
                              asked=form.asked_units, focus=focus, reader=self.reader,
                              polarity_weight=self.settings.router.polarity_weight) \
                if hasattr(self.index, "bm25") else None
            signals = RouteSignals(standalone, rewritten, resolutions, matches, hits, fact_hits,
                                   detect_language(question), background, evidence=evidence, form=form,
                                   original=question, standalone=standalone if standalone != clean else "",
                                   calibration=self.calibration)
            choice = self.router.decide(signals)
        if choice.rewritten_query and choice.rewritten_query != rewritten:
            signals, choice = self._reread(choice, signals, form, focus, background, timer)
        return self._read_rules(choice, signals)

    def _read_rules(self, choice: RouteChoice, signals: RouteSignals) -> tuple[RouteChoice, RouteSignals]:
        """Read the rules the evidence states: the row whose condition holds decides the answer
        (and a question the router sent to rag that a rule row answers becomes a fact question)."""
        cfg = self.settings.router.rules
        if not cfg.enabled or choice.route not in ("fact", "rag") or signals.evidence is None:
            return choice, signals
        if choice.route == "rag" and not lexicon().numeric_question.search(signals.question):
            return choice, signals  # a procedure or a list is asked, not the figure of one row
        ruled = read_rules(signals.question, signals.evidence, facts_by_chunk(self.index), signals.lang,
                           top_units=cfg.top_units, min_share=cfg.min_share)
        if ruled is None or (ruled.kind == "all_rows" and choice.route != "fact"):
            return choice, signals
        route = ruled.route if ruled.kind != "computed" else choice.route
        choice = dataclasses.replace(choice, route=route, reason=f"rule read: {ruled.kind} ({choice.reason})")
        return choice, dataclasses.replace(signals, ruled=ruled)

    def _reread(self, choice: RouteChoice, signals: RouteSignals, form: Any, focus: str, background: float,
                timer: Timer) -> tuple[RouteSignals, RouteChoice]:
        """The router (the LoRA model) read the terms differently from the embedding disambiguator:
        retrieve again for its reading, so passages, facts and the answer's terms all follow the
        router of record."""
        hits, fact_hits = self._retrieve(choice.rewritten_query, timer)
        evidence = gather(choice.rewritten_query, hits, self.index, fact_hits=fact_hits, background=background,
                          asked=form.asked_units, focus=focus, reader=self.reader,
                              polarity_weight=self.settings.router.polarity_weight) \
            if signals.evidence is not None else None
        signals = dataclasses.replace(signals, rewritten_query=choice.rewritten_query,
                                      terms=list(choice.terms) or signals.terms, hits=hits,
                                      fact_hits=fact_hits, evidence=evidence)
        return signals, choice

    def _retrieve(self, query: str, timer: Timer) -> tuple[list[Any], list[Any]]:
        with timer.stage("retrieve"):
            return self.index.search(query, k=self.settings.retrieval.top_k), self.index.search_facts(query, k=5)

    # -- handlers (registered by route name) ------------------------------------------------
    def _route_glossary(self, question: str, choice: RouteChoice, signals: RouteSignals,
                        timer: Timer, stream: bool) -> Iterator[dict[str, Any]]:
        text, citations = _glossary_answer(signals)
        yield from self._finish(text, choice, signals, timer, citations, None)

    def _route_fact(self, question: str, choice: RouteChoice, signals: RouteSignals,
                    timer: Timer, stream: bool) -> Iterator[dict[str, Any]]:
        if signals.ruled is not None:
            yield from self._answer_ruled(question, choice, signals, timer)
            return

        composed = fact_answer(signals.evidence) if signals.evidence is not None else None
        if composed is None:
            fallback = dataclasses.replace(choice, route="rag", reason="no unit states the figure; answered by rag")
            yield from self._route_rag(question, fallback, signals, timer, stream)
            return
        text = self._with_premise(composed.text, composed.units, signals)
        with timer.stage("verify"):
            verification = self.verifier.check(text, self._unit_passages(composed.units), question)
        if verification.status == "flagged":  # a table row read wrongly: quote the passages instead
            fallback = dataclasses.replace(choice, route="rag", reason="fact answer failed verification")
            yield from self._route_rag(question, fallback, signals, timer, stream)
            return
        yield from self._finish(text, choice, signals, timer, composed.citations, verification.to_dict())

    def _route_refuse(self, question: str, choice: RouteChoice, signals: RouteSignals,
                      timer: Timer, stream: bool) -> Iterator[dict[str, Any]]:

        text = REFUSAL_ZH if signals.lang == "zh" else REFUSAL_EN
        refused = dataclasses.replace(choice, route="refuse")
        yield from self._finish(text, refused, signals, timer, [], None)

    def _route_rag(self, question: str, choice: RouteChoice, signals: RouteSignals,
                   timer: Timer, stream: bool) -> Iterator[dict[str, Any]]:
        """The rag answer as steps, each returning a value: the evidence to answer from
        (:meth:`_rag_evidence`), a draft generated sentence by sentence behind the verifier
        (:meth:`_draft`), one regeneration when the draft had unsupported numbers
        (:meth:`_regenerate`), and the fallback policy — keep the draft, quote the evidence, or
        refuse — decided in one place (:func:`settle`)."""
        if signals.ruled is not None:  # a rule computes the answer: no generator needed
            yield from self._answer_ruled(question, choice, signals, timer)
            return
        plan = self._rag_evidence(signals)
        if plan is None:
            refused = dataclasses.replace(choice, reason="no passage sentence bears on the question")
            yield from self._route_refuse(question, refused, signals, timer, stream)
            return
        if getattr(self.generator, "name", "") == "extractive" or plan.definition_only:
            # No model, or a word the glossary lacks: never compose a definition, quote it.
            text = plan.quoted.text if plan.quoted is not None else \
                self.extractive.compose(signals.rewritten_query, plan.passages)
            if not text or is_refusal(text):
                yield from self._route_refuse(question, dataclasses.replace(choice, reason="nothing to quote"),
                                              signals, timer, stream)
                return
            text = plan.note + text
            with timer.stage("verify"):
                verification = self.verifier.check(text, plan.ids, question)
            citations = plan.quoted.citations if plan.quoted is not None else _rag_citations(text, plan.hits)
            yield from self._finish(text, choice, signals, timer, citations, verification.to_dict(), stream)
            return

        draft = yield from self._draft(question, plan, signals, timer, stream)
        if draft.failed and not draft.text:
            retry = self._regenerate(question, plan, draft, signals, timer)
            if retry:
                draft.text, draft.note = retry, "regenerated after unsupported numbers"
                draft.released.append(retry)
                if stream:
                    draft.streamed += retry
                    yield {"type": "delta", "text": retry}
        elif draft.failed:
            draft.note = "unsupported sentences were withheld"
        unsure = choice.scores.get("answerable", 1.0) < self.settings.router.trust_generator_below
        outcome = settle(draft.text, f"{question}\n{plan.prompt_question}", plan.quoted is not None, unsure,
                         bool(draft.released))
        if outcome == "refuse":
            refused = dataclasses.replace(choice, reason="the generator found no answer in the passages")
            yield from self._route_refuse(question, refused, signals, timer, stream)
            return
        if outcome == "quote":
            yield from self._quote_instead(question, choice, signals, timer, stream, plan, draft)
            return
        text = draft.streamed if stream else "".join(draft.released)
        with timer.stage("verify"):
            verification = self.verifier.check(text, plan.ids, question)
        if draft.failed:
            verification = _with_status(verification, "corrected")
        vdict = verification.to_dict()
        if draft.note:
            vdict["note"] = draft.note
        citations = _rag_citations(text, plan.hits)
        yield {"type": "final", "answer": self._answer(text, choice, signals, timer, citations, vdict)}

    def _rag_evidence(self, signals: RouteSignals) -> "_RagPlan | None":
        """The units that answer (None: the evidence holds none), as prompt passages, verification
        passages and citation hits, with the premise note and the quoted fallback."""
        units = select_units(signals.evidence) if signals.evidence is not None else []
        if signals.evidence is not None and not units:
            return None
        if units and self.settings.llm.rag_context == "units":
            passages, ids, hits = self._passages_of(units)
        else:  # whole chunks: passages given with the question, or llm.rag_context = chunks
            hits = signals.hits
            passages = [h.chunk.text for h in hits]
            ids = [(h.chunk.chunk_id, h.chunk.text) for h in hits]
        note = premise_note(signals.form.asserted, units, signals.lang) if signals.form is not None and units else ""
        return _RagPlan(units=units, passages=passages, ids=ids, hits=hits, note=note,
                        quoted=quote_answer(units, signals.lang) if units else None,
                        prompt_question=_prompt_question(signals),
                        definition_only=question_intent(signals.question)["definition"] and not signals.matches)

    def _draft(self, question: str, plan: "_RagPlan", signals: RouteSignals, timer: Timer,
               stream: bool) -> Iterator[dict[str, Any]]:
        """Generate behind the sentence gate, streaming what passes; returns the :class:`_Draft`."""
        released: list[str] = []
        if plan.note:
            released.append(plan.note)
            if stream:
                yield {"type": "delta", "text": plan.note}
        llm = self.settings.llm
        gate = _SentenceGate(lambda sent: self.verifier.check(sent, plan.ids, question).status != "flagged",
                             partial=llm.stream_release == "text")
        failed = False
        with timer.stage("generate"):
            pieces = self.generator.stream(build_rag_messages(plan.prompt_question, plan.passages, signals.lang),
                                           max_tokens=answer_budget(signals, llm.max_tokens) if llm.cap_by_kind
                                           else llm.max_tokens,
                                           temperature=llm.temperature)
            for piece in itertools.chain(pieces, [None]):
                outs = gate.feed(piece) if piece is not None else gate.flush()
                for ok_text in outs:
                    if ok_text is None:
                        failed = True
                        break
                    released.append(ok_text)
                    if stream:
                        yield {"type": "delta", "text": ok_text}
                if failed:
                    break
        streamed = "".join(released) if stream else ""
        if failed and gate.dangling and "".join(released).endswith(gate.dangling):
            # the number-free head of the sentence that failed: not part of the answer (a reader of
            # the stream has seen it; the streamed answer keeps it, see ``_Draft.streamed``)
            joined = "".join(released)[: -len(gate.dangling)]
            released = [plan.note, joined[len(plan.note):]] if plan.note else [joined]
        text = "".join(released[1:] if plan.note else released).strip()
        return _Draft(released=released, text=text, failed=failed, raw=gate.raw, streamed=streamed)

    def _regenerate(self, question: str, plan: "_RagPlan", draft: "_Draft", signals: RouteSignals,
                    timer: Timer) -> str:
        """One regeneration with the offending numbers named ("" when it fails again or declines)."""
        llm = self.settings.llm
        with timer.stage("verify"):
            first = self.verifier.check(draft.raw, plan.ids, question)
        with timer.stage("generate"):
            retry = self.generator.generate(
                build_rag_messages(plan.prompt_question, plan.passages, signals.lang, unsupported_text(first)),
                max_tokens=llm.max_tokens, temperature=llm.temperature).strip()
        with timer.stage("verify"):
            retry_ok = self.verifier.check(retry, plan.ids, question).status != "flagged"
        return retry if retry_ok and retry and not is_refusal(retry) and not is_degenerate(retry) else ""

    def _quote_instead(self, question: str, choice: RouteChoice, signals: RouteSignals, timer: Timer,
                       stream: bool, plan: "_RagPlan", draft: "_Draft") -> Iterator[dict[str, Any]]:
        """The quoted evidence in place of a draft that declined, echoed or said nothing (what was
        already streamed stays; the rest of the quote follows it)."""
        assert plan.quoted is not None  # settle() quotes only when there is a quote
        text = plan.note + plan.quoted.text
        shown = draft.streamed if stream else ""
        if stream and text.startswith(shown):
            rest = text[len(shown):]
        else:
            rest = ("\n" if shown else "") + text if stream else ""
        if rest:
            yield {"type": "delta", "text": rest}
        text = (shown + rest) if stream else text
        with timer.stage("verify"):
            verification = self.verifier.check(text, plan.ids, question)
        vdict = _with_status(verification, "corrected" if draft.failed else verification.status).to_dict()
        vdict["note"] = ("the generator declined or produced no content; the passages are quoted"
                         if not draft.failed else "generated answer had unsupported numbers; the passages are quoted")
        yield {"type": "final", "answer": self._answer(text, choice, signals, timer, plan.quoted.citations, vdict)}

    def _answer_ruled(self, question: str, choice: RouteChoice, signals: RouteSignals,
                      timer: Timer) -> Iterator[dict[str, Any]]:
        """The answer a rule row (or a piecewise computation) gives, quoted and verified: a computed
        figure counts as supported by the rows it was computed from, with the steps as its detail."""
        ruled = signals.ruled
        text = self._with_premise(ruled.composed.text, ruled.composed.units, signals)
        with timer.stage("verify"):
            verification = self.verifier.check(text, self._unit_passages(ruled.composed.units), question)
        result = ruled.computation
        if result is not None:
            for n in verification.numbers:
                if not n.supported and abs(n.value - result.value) < 1e-9:
                    n.supported, n.evidence = True, ruled.composed.units[0].chunk_id
                    n.detail = "computed by the rule: " + "; ".join(result.steps)
            if not verification.unsupported and verification.status == "flagged":
                verification.status = "verified"
        if verification.status == "flagged":  # a row read wrongly: let the passages speak instead
            fallback = dataclasses.replace(choice, reason="the rule answer failed verification")
            handler = self._route_rag if choice.route == "rag" else self._route_fact
            yield from handler(question, fallback, dataclasses.replace(signals, ruled=None), timer, False)
            return
        yield from self._finish(text, choice, signals, timer, ruled.composed.citations, verification.to_dict())

    # -- helpers -------------------------------------------------------------------------
    def _with_premise(self, text: str, units: list[Any], signals: RouteSignals) -> str:
        note = premise_note(signals.form.asserted, units, signals.lang) if signals.form is not None else ""
        if note and signals.lang != "zh":
            note += " "
        return note + text

    def _unit_passages(self, units: list[Any]) -> list[tuple[str, str]]:
        """(chunk id, whole chunk text) of the chunks the units come from: numbers are verified
        against the full passage, so a figure stated in the sentence before still counts."""
        out, seen = [], set()
        for u in units:
            if u.chunk_id in seen:
                continue
            seen.add(u.chunk_id)
            try:
                out.append((u.chunk_id, self.index.chunk(u.chunk_id).text))
            except Exception:  # noqa: BLE001 - passages mode: the unit is all there is
                out.append((u.chunk_id, u.text))
        return out

    def _passages_of(self, units: list[Any]) -> tuple[list[str], list[tuple[str, str]], list[Any]]:
        """The prompt passages (the selected units of each chunk, in document order), the whole chunks
        for verification, and one Hit per chunk for citations."""

        order: list[str] = []
        by_chunk: dict[str, list[Any]] = {}
        for u in units:
            if u.chunk_id not in by_chunk:
                order.append(u.chunk_id)
            by_chunk.setdefault(u.chunk_id, []).append(u)
        passages, hits = [], []
        for cid in order:
            us = sorted(by_chunk[cid], key=lambda u: u.order)
            context = us[0].context.split(" | ")[0] if us[0].context else ""
            body = "\n".join(u.text for u in us)
            passages.append(f"（{context}）{body}" if context else body)
            try:
                chunk = self.index.chunk(cid)
            except Exception:  # noqa: BLE001
                chunk = Chunk(cid, us[0].source, body, us[0].page)
            hits.append(Hit(chunk, 0.0, 0.0, None))
        return passages, self._unit_passages(units), hits

    def _finish(self, text: str, choice: RouteChoice, signals: RouteSignals, timer: Timer,
                citations: list[dict[str, Any]], verification: dict[str, Any] | None,
                stream: bool = True) -> Iterator[dict[str, Any]]:
        ans = self._answer(text, choice, signals, timer, citations, verification)
        # A composed answer (quoted passages, a table, a definition) is already whole; it is still
        # sent sentence by sentence, as generated answers are, so a client shows it the same way.
        for sentence in _sentences(ans.answer):
            yield {"type": "delta", "text": sentence}
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
            standalone_question=signals.standalone,
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


@dataclass
class _RagPlan:
    """What a rag answer is made from (see :meth:`Engine._rag_evidence`)."""

    units: list[Any]
    passages: list[str]
    ids: list[tuple[str, str]]
    hits: list[Any]
    note: str
    quoted: Any
    prompt_question: str
    definition_only: bool


@dataclass
class _Draft:
    """A generated draft: the pieces released to the reader, its text, and whether the gate stopped it."""

    released: list[str]
    text: str
    failed: bool
    raw: str
    streamed: str = ""     # every piece sent to a streaming reader (the final answer of a stream)
    note: str = ""


def settle(text: str, question: str, can_quote: bool, unsure: bool, streamed: bool) -> str:
    """The fallback policy of a rag answer, in one place: ``"generated"`` (keep the draft),
    ``"quote"`` (quote the evidence instead) or ``"refuse"``.

    A draft that is empty, declines, has no content or only echoes the question is not kept. It is
    replaced by the quoted evidence — a declining small model must never make the answer worse
    than the passages — except where the router was unsure the passages answer and the model
    declined before anything was shown: then the model's reading settles it as a refusal.

    >>> settle("每晚不超过480元[1]。", "住宿每晚多少？", True, False, True)
    'generated'
    >>> settle("住宿每晚多少[1]。", "住宿每晚多少？", True, False, True)
    'quote'
    >>> settle(REFUSAL_ZH, "住宿每晚多少？", True, True, False), settle("", "q", False, False, False)
    ('refuse', 'refuse')
    """
    if text and not is_refusal(text) and not is_degenerate(text) and not is_echo(text, question):
        return "generated"
    if not can_quote or (is_refusal(text) and unsure and not streamed):
        return "refuse"
    return "quote"


def answer_budget(signals: RouteSignals, configured: int) -> int:
    """Tokens an answer of this kind needs: a figure or a yes/no in a sentence or two, a
    procedure in a short paragraph; never more than ``llm.max_tokens``.

    >>> from router.routes import RouteSignals
    >>> answer_budget(RouteSignals("婚假是几天？", "", [], [], [], []), 256), answer_budget(RouteSignals("报销流程是怎样的？", "", [], [], [], []), 256)
    (96, 192)
    """

    intent = question_intent(signals.question)
    if intent["synthesis"]:
        return min(configured, 192)
    if lexicon().numeric_question.search(signals.question) or (signals.form is not None and signals.form.yes_no):
        return min(configured, 96)
    return min(configured, 160)


def _prompt_question(signals: RouteSignals) -> str:
    """What the generator is asked: the standalone question with its terms spelt out, without
    injected instructions or asserted figures (the premise note handles those)."""
    return signals.rewritten_query or signals.question


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


def is_echo(answer: str, question: str) -> bool:
    """True when an answer adds nothing to the question: no word and no figure beyond its own (a
    small model answering 「在多长时间内…」 with the question's words). Such an answer is replaced
    by the quoted evidence.

    >>> is_echo("员工应在多长时间内提交报销单[1]。", "员工应在多长时间内提交报销单？")
    True
    >>> is_echo("员工应在出差结束后30天内提交报销单[1]。", "员工应在多长时间内提交报销单？")
    False
    """
    own = set(content_terms(question))
    words = [w for w in content_terms(_CITE.sub("", answer)) if w not in own]
    figures = {q.value for q in extract_quantities(answer)} - {q.value for q in extract_quantities(question)}
    return not words and not figures


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


_NUMERAL = re.compile(r"[0-9０-９零〇一二两三四五六七八九十百千万亿半%％]")


class _SentenceGate:
    """Releases streamed text as it comes, holding back only what may carry a number.

    The head of an unfinished sentence is released up to its first digit or numeral character;
    from there on the sentence waits for its end and is released once ``check(sentence)`` passes.
    ``feed`` yields released text, or ``None`` when a sentence fails (then stop); ``dangling`` is
    then the number-free head of the failed sentence that was already released.

    >>> gate = _SentenceGate(lambda s: "999" not in s)
    >>> list(gate.feed("住宿费按")), list(gate.feed("标准执行，每晚")), list(gate.feed("480元。其"))
    (['住宿费按'], ['标准执行，每晚'], ['480元。', '其'])
    >>> list(gate.feed("他999元。")), gate.dangling
    ([None], '其')
    """

    def __init__(self, check: Any, partial: bool = True):
        self.check = check
        self.partial = partial  # False: whole sentences only (llm.stream_release: sentence)
        self.buf = ""
        self.raw = ""
        self.shown = 0          # characters of ``buf`` (the unfinished sentence) already released
        self.dangling = ""

    def feed(self, piece: str) -> Iterator[str | None]:
        self.buf += piece
        self.raw += piece
        while True:
            m = _SENTENCE_END.search(self.buf, 1)
            if not m or m.end() == 0:
                break
            cut = m.end() if m.end() > 0 else len(self.buf)
            sentence, self.buf = self.buf[:cut], self.buf[cut:]
            if not sentence:
                break
            shown, self.shown = self.shown, 0
            if not self.check(sentence):
                self.dangling = sentence[:shown]
                yield None
                return
            if sentence[shown:]:
                yield sentence[shown:]
        if not self.partial:
            return
        numeral = _NUMERAL.search(self.buf)
        head = self.buf[: numeral.start()] if numeral else self.buf
        if len(head) > self.shown:
            yield head[self.shown:]
            self.shown = len(head)

    def flush(self) -> Iterator[str | None]:
        if self.buf:
            sentence, self.buf = self.buf, ""
            shown, self.shown = self.shown, 0
            if not self.check(sentence):
                self.dangling = sentence[:shown]
                yield None
            elif sentence[shown:]:
                yield sentence[shown:]


# The process-wide engine holder lives in api/state.py (get_engine, set_engine, answer): the
# serving side owns which engine is current; this module only defines how one answers.
