"""Route decisions: which path answers a question.

Routes are data (a name, a threshold, a description); the engine owns the handlers. Every
router returns one :class:`RouteChoice`; below every threshold the decision falls back to
``rag`` when the knowledge base holds relevant passages and to ``refuse`` when it does not.

The first router of record is :class:`SignalRouter`: a small calibrated classifier over
retrieval signals (best passage cosine, best fact cosine, BM25 evidence, glossary matches)
plus the intent of the question (definition, single quantity, procedure or comparison).
The LoRA model of the finetune pipeline plugs in behind the same :class:`Router` interface.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from knowledge.core.errors import KBError
from knowledge.core.numeric import sigmoid as _sigmoid
from knowledge.core.registry import Registry
from config.lexicon import lexicon
from router.calibration import answerability, features_for

if TYPE_CHECKING:  # pragma: no cover
    from retrieval.index import FactHit, Hit

ROUTE_NAMES = ("glossary", "fact", "rag", "refuse")


@dataclass(frozen=True)
class Route:
    """A route as data: the engine looks its handler up by ``name``."""

    name: str
    threshold: float
    description: str


def default_routes(router_settings: Any) -> dict[str, Route]:
    """Routes with thresholds taken from ``settings.router``."""
    s = router_settings
    return {
        "glossary": Route("glossary", s.glossary_threshold, "what an abbreviation or term means"),
        "fact": Route("fact", s.fact_threshold, "a single quantity or rule a stored fact answers"),
        "rag": Route("rag", s.rag_threshold, "procedures, several conditions, synthesis"),
        "refuse": Route("refuse", 0.0, "the knowledge base does not contain the answer"),
    }


@dataclass
class RouteChoice:
    """What every router returns."""

    route: str
    confidence: float
    terms: list[Any] = field(default_factory=list)          # router.terms.TermResolution
    rewritten_query: str = ""
    scores: dict[str, float] = field(default_factory=dict)  # per-route scores, for reports
    reason: str = ""

    def __post_init__(self) -> None:
        if self.route not in ROUTE_NAMES:
            raise KBError(f"unknown route {self.route!r}; expected one of {ROUTE_NAMES}")


@dataclass
class RouteSignals:
    """Everything a router may look at, computed once by the engine."""

    question: str
    rewritten_query: str
    terms: list[Any]                      # TermResolution, in question order
    matches: list[Any]                    # TermMatch
    hits: list["Hit"]                     # hybrid passage hits for the rewritten query
    fact_hits: list["FactHit"]
    lang: str = "zh"
    background: float = 0.0               # typical similarity of the query to any chunk
    evidence: Any = None                  # router.evidence.Evidence (None: passages-only mode)
    form: Any = None                      # router.question.QuestionForm
    original: str = ""                    # the question as the user wrote it
    standalone: str = ""                  # the follow-up resolved into a standalone question ("" if none)
    calibration: Any = None               # router.calibration.Calibration of the index
    ruled: Any = None                     # router.conditions.RuleReading: the rule row that decides it


class Router(ABC):
    """One required method: decide a route from the signals."""

    name: str = "base"

    @abstractmethod
    def decide(self, signals: RouteSignals) -> RouteChoice:
        """Return the route for this question."""


_ROUTERS: Registry[Callable[..., Router]] = Registry("router")


def register_router(name: str, factory: Callable[..., Router]) -> None:
    _ROUTERS.register(name, factory)


def create_router(name: str, **kwargs: Any) -> Router:
    return _ROUTERS.get(name)(**kwargs)


# --- question intent -------------------------------------------------------------------
# Why patterns and not a model here: these are closed-class words of the question's form
# (how people ask what something means, or how much), not company knowledge. They live in
# config/lexicon.yaml (``intent:``).


def question_intent(question: str) -> dict[str, bool]:
    """Form of the question, independent of any knowledge base.

    >>> question_intent("PM是什么意思")["definition"]
    True
    >>> question_intent("报销流程是怎样的")["synthesis"]
    True
    """
    intent = lexicon().intent
    return {name: bool(intent[name].search(question)) for name in ("definition", "quantity", "synthesis")}


_CLAUSE = re.compile(r"[，,。？?！!；;：:\n]")


def _residual_length(question: str, matches: list[Any]) -> int:
    """Characters left in the defining clause once terms and definition words are removed.

    A definition question is short once its term is taken out ("AM是什么意思" -> 0); a long
    residual means the term is only part of a larger question. Only the clause that asks
    (「…，这里的AM是什么意思？」) counts, so context given before it does not hide the intent.

    >>> class M: start, end, term = 0, 2, "AM"
    >>> _residual_length("AM是什么意思？", [M()])
    0
    """
    definition, filler = lexicon().intent["definition"], lexicon().intent["filler"]
    spans = [(m.start, m.end) for m in matches]
    pieces, pos = [], 0
    for part in _CLAUSE.split(question):
        start = question.find(part, pos)
        pos = start + len(part)
        pieces.append((start, part))
    asking = [(st, p) for st, p in pieces if definition.search(p)] or pieces
    best = None
    for st, part in asking:
        text = part
        for a, b in sorted(spans, reverse=True):
            a2, b2 = max(a - st, 0), min(b - st, len(part))
            if a2 < b2:
                text = text[:a2] + text[b2:]
        text = definition.sub("", text)
        text = filler.sub("", text)
        text = re.sub(r"[\s\W_]+", "", text)
        best = len(text) if best is None else min(best, len(text))
    return best or 0


class SignalRouter(Router):
    """Calibrated rules over retrieval signals and question form (the first router of record).

    * glossary: terms were found and the question asks what one means (or for an
      abbreviation) with little else in it;
    * fact: the best stored fact clears ``fact_threshold`` and the question asks for one
      quantity, not a procedure or comparison;
    * rag: the best passage stands out from the query's background similarity by
      ``peak_threshold`` (and clears the absolute floor ``rag_threshold``);
    * refuse: otherwise.

    Confidences are logistic in the margin to the threshold, so they are comparable
    across routes and can be calibrated by changing one scale.
    """

    name = "signals"

    def __init__(self, routes: dict[str, Route], peak_threshold: float = 0.04, scale: float = 40.0,
                 weights: dict[str, float] | None = None, fact_coverage: float = 0.5):
        self.routes = routes
        self.peak_threshold = peak_threshold
        self.scale = scale
        self.weights = weights
        self.fact_coverage = fact_coverage

    def decide(self, signals: RouteSignals) -> RouteChoice:
        if signals.evidence is not None:
            return self._decide_from_evidence(signals)
        return self._decide_from_cosines(signals)

    def _decide_from_evidence(self, signals: RouteSignals) -> RouteChoice:
        """Glossary, then answerability from the evidence, then fact or rag."""

        intent = question_intent(signals.question)
        ev = signals.evidence
        features = features_for(signals)
        scores: dict[str, float] = dict(features)
        glossary = self._glossary_choice(signals, intent, scores)
        if glossary is not None:
            return glossary
        p = answerability(features, self.weights)
        scores["answerable"] = round(p, 4)
        if ev.focus_absent:
            return RouteChoice("refuse", max(0.8, 1 - p), signals.terms, signals.rewritten_query, scores,
                               f"the follow-up asks about {', '.join(ev.focus_absent[:3])}, which the documents "
                               f"do not cover")
        if ev.missing_sibling:
            t, sibs = next(iter(ev.siblings.items()))
            return RouteChoice("refuse", max(0.8, 1 - p), signals.terms, signals.rewritten_query, scores,
                               f"the documents cover {', '.join(sibs[:3])} but not {t}")
        if p < 0.5:
            missing = f"; not in the knowledge base: {', '.join(ev.absent[:3])}" if ev.absent else ""
            return RouteChoice("refuse", 1 - p, signals.terms, signals.rewritten_query, scores,
                               f"no passage answers it (answerable {p:.2f}: coverage {ev.best_coverage:.2f}, "
                               f"margin {ev.peak:.3f}){missing}")

        form = signals.form
        yes_no_rule = form is not None and form.yes_no and not form.asserted
        numeric = bool(lexicon().numeric_question.search(signals.question)) or bool(form and form.asserted)
        if numeric and not intent["synthesis"] and not yes_no_rule:
            q_units = ev.quantity_units(0.0)
            if q_units and q_units[0].coverage >= self.fact_coverage:
                conf = min(p, 0.5 + q_units[0].coverage / 2)
                return RouteChoice("fact", conf, signals.terms, signals.rewritten_query, scores,
                                   f"a {q_units[0].kind} states the asked figure (coverage {q_units[0].coverage:.2f})")
        return RouteChoice("rag", p, signals.terms, signals.rewritten_query, scores, "passages answer it")

    def _glossary_choice(self, signals: RouteSignals, intent: dict[str, bool],
                         scores: dict[str, float]) -> RouteChoice | None:
        glossary_terms = list(signals.matches)
        if glossary_terms and intent["definition"]:
            residual = _residual_length(signals.question, glossary_terms)
            conf = _sigmoid((self.routes["glossary"].threshold * 20 - residual) / 3.0)
            scores["glossary"] = round(conf, 4)
            if conf >= 0.5:
                return RouteChoice("glossary", conf, signals.terms, signals.rewritten_query, scores,
                                   f"definition question about {glossary_terms[0].term}")
        return None

    def _decide_from_cosines(self, signals: RouteSignals) -> RouteChoice:
        """Passages given with the question (no index, no evidence terms): cosine margins only."""
        intent = question_intent(signals.question)
        best_passage = max((h.dense or 0.0 for h in signals.hits), default=0.0)
        best_fact = signals.fact_hits[0].score if signals.fact_hits else 0.0
        scores = {"passage": round(best_passage, 4), "fact": round(best_fact, 4)}

        glossary = self._glossary_choice(signals, intent, scores)
        if glossary is not None:
            return glossary

        # Relevance is the margin of the best passage over the query's background similarity
        # (median over the collection): E5 cosines sit in a narrow band that shifts with the
        # language and length of the question, the margin does not.
        rag_t = self.routes["rag"].threshold
        peak = best_passage - signals.background
        scores["peak"] = round(peak, 4)
        if best_passage < rag_t or peak < self.peak_threshold:
            conf = _sigmoid(self.scale * 4 * (self.peak_threshold - peak))
            return RouteChoice("refuse", conf, signals.terms, signals.rewritten_query, scores,
                               f"best passage {best_passage:.3f} is only {peak:.3f} above the background "
                               f"(needs {self.peak_threshold:.3f})")

        fact_t = self.routes["fact"].threshold
        if best_fact >= fact_t and intent["quantity"] and not intent["synthesis"]:
            conf = _sigmoid(self.scale * (best_fact - fact_t) + 1.0)
            return RouteChoice("fact", conf, signals.terms, signals.rewritten_query, scores,
                               f"fact similarity {best_fact:.3f} >= {fact_t:.2f}")

        conf = _sigmoid(self.scale * (best_passage - rag_t) + 1.0)
        return RouteChoice("rag", conf, signals.terms, signals.rewritten_query, scores,
                           "relevant passages found")


# ``settings`` is accepted (and unused) so the engine can pass it to every backend alike.
def _signal_router(routes: dict[str, Route], settings: Any = None, **kw: Any) -> SignalRouter:
    if settings is not None:
        kw.setdefault("weights", dict(settings.router.answerability) or None)
        kw.setdefault("fact_coverage", settings.router.fact_coverage)
    return SignalRouter(routes, **kw)


register_router("signals", _signal_router)
