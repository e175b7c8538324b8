"""router/routes.py: question intent, the definition residual, SignalRouter decisions on hand-built
signals (no index, no model), default routes and the router registry."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from knowledge.core.errors import KBError
from router.evidence import Evidence, Unit
from router.question import analyze
from router.routes import (ROUTE_NAMES, RouteChoice, RouteSignals, SignalRouter, _residual_length, create_router,
                           default_routes, question_intent, register_router)

SETTINGS = SimpleNamespace(glossary_threshold=0.55, fact_threshold=0.86, rag_threshold=0.70)


class M:
    """A term match: only ``start``, ``end`` and ``term`` are read."""

    def __init__(self, text: str, term: str):
        self.start = text.index(term)
        self.end = self.start + len(term)
        self.term = term


def signals(question: str, *, matches=(), passage: float = 0.0, fact: float | None = None,
            background: float = 0.0, evidence: Evidence | None = None, form=None) -> RouteSignals:
    hits = [SimpleNamespace(dense=passage)] if passage else []
    fact_hits = [SimpleNamespace(score=fact)] if fact is not None else []
    return RouteSignals(question=question, rewritten_query=question, terms=[], matches=list(matches), hits=hits,
                        fact_hits=fact_hits, background=background, evidence=evidence, form=form)


def router(**kw) -> SignalRouter:
    return SignalRouter(default_routes(SETTINGS), **kw)


def evidence(coverage: float = 0.9, *, units: set[str] = frozenset({"元"}), asked: set[str] = frozenset({"元"}),
             peak: float = 0.1, absent: list[str] | None = None, absent_share: float = 0.0,
             siblings: dict[str, list[str]] | None = None) -> Evidence:
    unit = Unit("一类城市住宿每晚不超过500元。", "c1", "travel.md", 1, "sentence", 0, units=set(units),
                coverage=coverage)
    return Evidence(terms=["住宿"], weights={"住宿": 1.0}, absent=absent or [], siblings=siblings or {},
                    units=[unit], asked_units=set(asked), best_coverage=coverage, absent_share=absent_share,
                    peak=peak)


# --- question intent ----------------------------------------------------------------------------
@pytest.mark.parametrize("question,definition,quantity,synthesis", [
    ("PM是什么意思？", True, False, False),
    ("What does SLA stand for?", True, False, False),
    ("What is SLA?", True, False, False),          # capitals after "what is": an abbreviation
    ("What is the limit?", False, True, False),    # ... lower case is an ordinary question
    ("年假有几天？", False, True, False),
    ("How much is the meal allowance?", False, True, False),
    ("报销流程是怎样的？", False, False, True),
    ("年假和病假有什么区别？", False, False, True),
    ("Why is the deadline 30 days?", False, True, True),
    ("公司食堂在哪里", False, False, False),
])
def test_question_intent(question, definition, quantity, synthesis):
    assert question_intent(question) == {"definition": definition, "quantity": quantity, "synthesis": synthesis}


def test_what_is_with_a_possessive_is_not_a_definition():
    # "What is PTO's limit" asks about PTO, not what PTO stands for.
    assert not question_intent("What is PTO's limit?")["definition"]


# --- residual of a definition question ----------------------------------------------------------
@pytest.mark.parametrize("question,term,residual", [
    ("AM是什么意思？", "AM", 0),
    ("请问这里的AM是什么意思？", "AM", 0),                      # filler words do not count
    ("What does AM mean in our company?", "AM", 0),
    ("报销单上签字的人很多，这个AM是什么意思？", "AM", 0),      # only the clause that asks counts
    ("AM出差住宿标准和餐费补贴报销上限是什么", "AM", 15),
])
def test_residual_length(question, term, residual):
    assert _residual_length(question, [M(question, term)]) == residual


def test_residual_without_a_definition_word_measures_the_whole_question():
    q = "AM审批"
    assert _residual_length(q, [M(q, "AM")]) == 2


# --- SignalRouter: passages only (no evidence) ----------------------------------------------------
def test_a_short_definition_question_with_a_term_goes_to_the_glossary():
    q = "AM是什么意思？"
    choice = router().decide(signals(q, matches=[M(q, "AM")]))
    assert choice.route == "glossary" and choice.confidence > 0.9
    assert "AM" in choice.reason


def test_a_term_inside_a_larger_question_does_not_go_to_the_glossary():
    q = "AM出差住宿标准和餐费补贴报销上限是什么"
    choice = router().decide(signals(q, matches=[M(q, "AM")], passage=0.9, background=0.75))
    assert choice.route != "glossary"
    assert choice.scores["glossary"] < 0.5


def test_a_definition_question_without_a_term_is_not_glossary():
    choice = router().decide(signals("PM是什么意思？", passage=0.6))
    assert choice.route == "refuse"


def test_a_passage_that_does_not_stand_out_is_refused():
    # 0.80 clears the absolute floor (0.70) but is only 0.01 above the background.
    choice = router().decide(signals("年假有几天？", passage=0.80, fact=0.95, background=0.79))
    assert choice.route == "refuse"
    assert choice.scores["peak"] == pytest.approx(0.01)


def test_below_the_absolute_floor_is_refused():
    choice = router().decide(signals("年假有几天？", passage=0.65, background=0.40))
    assert choice.route == "refuse"


def test_a_close_fact_answers_a_quantity_question():
    choice = router().decide(signals("出差住宿每晚最多多少钱？", passage=0.85, fact=0.90, background=0.75))
    assert choice.route == "fact" and choice.confidence > 0.5


def test_a_procedure_question_goes_to_rag_even_with_a_close_fact():
    choice = router().decide(signals("报销流程是怎样的？", passage=0.85, fact=0.95, background=0.75))
    assert choice.route == "rag"


def test_a_fact_below_its_threshold_leaves_the_question_to_rag():
    choice = router().decide(signals("年假有几天？", passage=0.85, fact=0.80, background=0.75))
    assert choice.route == "rag"


# --- SignalRouter: evidence -------------------------------------------------------------------------
def test_a_unit_stating_the_asked_figure_takes_the_fact_route():
    choice = router().decide(signals("一类城市住宿每晚多少钱？", evidence=evidence()))
    assert choice.route == "fact"
    assert choice.scores["answerable"] > 0.5
    assert "sentence" in choice.reason


def test_a_unit_without_the_asked_unit_leaves_it_to_rag():
    choice = router().decide(signals("一类城市住宿每晚多少钱？", evidence=evidence(units={"天"})))
    assert choice.route == "rag"


def test_fact_coverage_is_the_routers_setting():
    ev = evidence(coverage=0.6)
    assert router(fact_coverage=0.5).decide(signals("住宿每晚多少钱？", evidence=ev)).route == "fact"
    assert router(fact_coverage=0.7).decide(signals("住宿每晚多少钱？", evidence=ev)).route == "rag"


def test_a_missing_sibling_is_refused_and_named():
    ev = evidence(siblings={"丧假": ["婚假", "产假"]})
    choice = router().decide(signals("丧假几天？", evidence=ev))
    assert choice.route == "refuse" and choice.confidence >= 0.8
    assert "婚假" in choice.reason and "丧假" in choice.reason


def test_low_answerability_is_refused_with_the_absent_words():
    ev = evidence(coverage=0.1, peak=0.0, absent=["食堂"], absent_share=0.9)
    choice = router().decide(signals("食堂几点开门？", evidence=ev))
    assert choice.route == "refuse"
    assert choice.scores["answerable"] < 0.5
    assert "食堂" in choice.reason


def test_a_synthesis_question_goes_to_rag_from_evidence():
    choice = router().decide(signals("住宿和餐费一共能报多少钱？", evidence=evidence()))
    assert choice.route == "rag"


def test_a_yes_no_rule_question_goes_to_rag_but_a_stated_figure_to_fact():
    q = "住宿费是否有上限？"
    assert router().decide(signals(q, evidence=evidence(), form=analyze(q))).route == "rag"
    q = "住宿费上限是500元吗？"
    form = analyze(q)
    assert form.asserted
    assert router().decide(signals(q, evidence=evidence(), form=form)).route == "fact"


# --- routes as data, the registry -------------------------------------------------------------------
def test_default_routes_take_their_thresholds_from_the_settings():
    routes = default_routes(SETTINGS)
    assert tuple(routes) == ROUTE_NAMES
    assert {n: r.threshold for n, r in routes.items()} == {"glossary": 0.55, "fact": 0.86, "rag": 0.70,
                                                          "refuse": 0.0}
    assert all(r.name == n and r.description for n, r in routes.items())


def test_an_unknown_route_is_an_error():
    with pytest.raises(KBError, match="unknown route 'chat'"):
        RouteChoice("chat", 1.0)


def test_create_router_passes_the_settings_through():
    settings = SimpleNamespace(router=SimpleNamespace(answerability={"bias": 0.5}, fact_coverage=0.33))
    r = create_router("signals", routes=default_routes(SETTINGS), settings=settings)
    assert isinstance(r, SignalRouter)
    assert r.weights == {"bias": 0.5} and r.fact_coverage == 0.33
    plain = create_router("signals", routes=default_routes(SETTINGS))
    assert plain.weights is None and plain.fact_coverage == 0.5


def test_a_second_registration_of_a_router_name_is_an_error():
    with pytest.raises(KBError, match="router 'signals' is already registered"):
        register_router("signals", SignalRouter)
    assert isinstance(create_router("signals", routes=default_routes(SETTINGS)), SignalRouter)
