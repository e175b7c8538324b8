"""The row whose condition holds: answering from rules read as rules (:mod:`knowledge.rules`).

The evidence reader (:mod:`router.evidence`) says which sentences and rows are about the question;
this step reads the rules those sentences state — their conditions, tiers, caps, floors and
piecewise parts, parsed at index time into each fact's ``rule`` — and evaluates them against the
quantities the question states:

* a question that states a quantity ("工作满15年", "一年零八个月", "合同签了2年") gets the row whose
  condition holds, never a neighbour that merely shares its words (「未满6个月」 for 「满6个月」);
* a quantity that falls under a piecewise rule gets the computed result with the parts used
  ("一年零八个月" under 「每满一年计一个月；六个月以上不满一年的，按一年计算」 -> 2个月);
* a question that asks for a maximum where the documents set only a minimum (or the reverse) is
  answered with what they do set, and told that they set no such limit;
* a question about a tiered rule that states no quantity gets every tier.

What it returns is one :class:`RuleReading`: the kind of reading, the answer text (figure first,
then the deciding rows quoted with their citations) and the rows it used.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from knowledge.core.types import Fact
from knowledge.rules import (Computation, QuestionReading, RuleRow, asking_part, compute, dimension,
                             direction_conflict, read_question, select_rows)
from router.compose import Composed
from router.evidence import Evidence, Unit, _norm

__all__ = ["RuleReading", "facts_by_chunk", "read_rules"]


@dataclass
class RuleReading:
    """What the rules of the passages say about one question."""

    kind: str                      # selected | computed | direction | all_rows
    composed: Composed
    rows: list[RuleRow] = field(default_factory=list)
    computation: Computation | None = None

    @property
    def route(self) -> str:
        """A computed answer combines parts of a rule (rag); the others quote a row (fact)."""
        return "rag" if self.kind == "computed" else "fact"


@dataclass
class _Candidate:
    row: RuleRow
    fact: Fact
    score: float
    rank: int


def facts_by_chunk(index: Any) -> Callable[[str], list[Fact]]:
    """``chunk id -> facts that carry a rule``, built once per index and kept on it."""
    table = getattr(index, "_rule_facts", None)
    if table is None:
        table = {}
        for f in getattr(index, "facts", []) or []:
            if getattr(f, "rule", None):
                table.setdefault(f.chunk_id, []).append(f)
        try:
            index._rule_facts = table
        except AttributeError:  # pragma: no cover - slotted test doubles
            pass
    return lambda chunk_id: table.get(chunk_id, [])


def _overlaps(statement: str, unit: Unit) -> bool:
    a, b = _norm(statement).strip("。；;，, "), _norm(unit.text).strip("。；;，, ")
    return bool(a) and bool(b) and (a in b or b in a)


def _candidates(ev: Evidence, facts_of: Callable[[str], list[Fact]], top_units: int, min_share: float) -> list[_Candidate]:
    """Rule rows of the facts that the question's best units state, best unit first."""
    good = [u for u in ev.units if u.kind != "heading"][:top_units]
    if not good:
        return []
    best = max(u.coverage for u in good) or 1e-9
    out: list[_Candidate] = []
    seen: set[str] = set()
    for rank, u in enumerate(good):
        if u.coverage < min_share * best:
            continue
        for f in facts_of(u.chunk_id):
            if f.fact_id in seen or not _overlaps(f.statement, u):
                continue
            seen.add(f.fact_id)
            out.append(_Candidate(RuleRow.from_dict(f.rule), f, u.score, rank))
    return out


def _same_rule(anchor: _Candidate, others: list[_Candidate], facts_of: Callable[[str], list[Fact]]) -> list[_Candidate]:
    """The rows of the anchor's rule: rows of its subject in its chunk (tiers a question's words may
    not all reach) and among the candidates."""
    subject = anchor.row.subject
    rows = [c for c in others if c.row.subject == subject]
    ids = {c.fact.fact_id for c in rows}
    for f in facts_of(anchor.fact.chunk_id):
        if f.fact_id not in ids and f.rule and f.rule.get("subject") == subject:
            ids.add(f.fact_id)
            rows.append(_Candidate(RuleRow.from_dict(f.rule), f, anchor.score - 0.01, anchor.rank))
    return sorted(rows, key=lambda c: (c.fact.chunk_id != anchor.fact.chunk_id, c.fact.start))


def _subject_weight(subject: str, ev: Evidence, asking: str = "") -> float:
    """How much of what the question asks the rule's subject names: the weights of the question's
    terms it holds, counting only terms of the asking part when it has any (in 「合同期限三个月以上不满
    一年的，试用期最多多长？」 the 合同期限 of the condition does not make 续订合同期限 the subject).

    >>> class E: terms, weights = ["合同", "试用期"], {"合同": 0.8, "试用期": 2.5}
    >>> _subject_weight("试用期", E()), _subject_weight("续订合同期限", E()), _subject_weight("续订合同期限", E(), "试用期多长")
    (2.5, 0.8, 0)
    """
    s = _norm(subject)
    terms = [t for t in ev.terms if t in asking] if asking and any(t in asking for t in ev.terms) else ev.terms
    return sum(ev.weights.get(t, 0.0) for t in terms if len(t) >= 2 and t in s) if s else 0.0


def _unit_of(c: _Candidate) -> Unit:
    """The row as quoted: its clause, preceded by its condition where that stands in an earlier
    part of the sentence (「合同期限3年以上的…合同，」 + 「试用期不超过6个月」)."""
    f = c.fact
    text = f.statement
    cond = c.row.condition_text.strip("，,；; ")
    if cond and _norm(cond)[-8:] not in _norm(text):
        text = f"{cond}，{text}"
    return Unit(text, f.chunk_id, f.source, f.page, "sentence", f.start)


def _quote(cands: list[_Candidate], lang: str) -> tuple[str, list[Unit]]:
    """The deciding rows, each quoted once with its citation number (one number per passage)."""
    units: list[Unit] = []
    for c in cands:
        unit = _unit_of(c)
        if all(u.text != unit.text for u in units):
            units.append(unit)
    order = list(dict.fromkeys(u.chunk_id for u in units))
    lines = []
    for u in units:
        body = u.text.rstrip("。．.；;，, ")
        n = order.index(u.chunk_id) + 1
        lines.append(f"{body}[{n}]。" if lang == "zh" else f"{body} [{n}].")
    return ("\n" if lang == "zh" else " ").join(lines), units


def _fmt(value: float) -> str:
    return f"{value:g}"


def _figure(row: RuleRow, lang: str) -> str:
    """The row's figure as the answer's first words ("不超过二个月", "at most 2 months")."""
    if row.value is None:
        return ""
    if row.direction == "max":
        return f"最多{row.value.text}" if lang == "zh" else f"at most {row.value.text}"
    if row.direction == "min":
        return f"至少{row.value.text}" if lang == "zh" else f"at least {row.value.text}"
    return row.value.text


def _selected(rows: list[_Candidate], reading: QuestionReading, lang: str) -> RuleReading | None:
    conditioned = [c for c in rows if c.row.condition is not None and not c.row.piecewise]
    if not conditioned:
        return None
    chosen_rows = select_rows([c.row for c in conditioned], reading)
    chosen = [c for c in conditioned if any(c.row is r for r in chosen_rows)]
    if not chosen:
        return None
    quote, units = _quote(chosen, lang)
    figures = "、".join(dict.fromkeys(_figure(c.row, lang) for c in chosen if c.row.value is not None))
    head = (f"{figures}。" if lang == "zh" else f"{figures}. ") if figures else ""
    return RuleReading("selected", Composed(head + ("\n" if lang == "zh" else "") + quote, units),
                       [c.row for c in chosen])


def _computed(rows: list[_Candidate], reading: QuestionReading, lang: str) -> RuleReading | None:
    piecewise = [c for c in rows if c.row.piecewise]
    if not piecewise:
        return None
    result = compute([c.row for c in piecewise], reading)
    if result is None:
        return None
    quote, units = _quote(piecewise, lang)
    total = f"{_fmt(result.value)}{'个' if result.unit == '月' and lang == 'zh' else ''}{result.unit}"
    # The steps go into the verification detail, not the text: every figure of the text is either
    # quoted from the rule or the computed result.
    if lang == "zh":
        head = f"按规定计算为{total}。\n依据："
    else:
        head = f"By the rule this comes to {_fmt(result.value)} {result.unit}. Source: "
    return RuleReading("computed", Composed(head + quote, units), [c.row for c in piecewise], result)


def _direction(rows: list[_Candidate], reading: QuestionReading, lang: str) -> RuleReading | None:
    if not direction_conflict(reading, [c.row for c in rows]):
        return None
    stated = [c for c in rows if c.row.value is not None and c.row.direction != reading.asked]
    if not stated:
        return None
    quote, units = _quote(stated, lang)
    figures = "、".join(dict.fromkeys(_figure(c.row, lang) for c in stated))
    if lang == "zh":
        limit = "上限" if reading.asked == "max" else "下限"
        head = f"文件只规定了{figures}，没有规定{limit}。\n"
    else:
        limit = "maximum" if reading.asked == "max" else "minimum"
        head = f"The documents set only {figures}; they set no {limit}. "
    return RuleReading("direction", Composed(head + quote, units), [c.row for c in stated])


def _all_rows(rows: list[_Candidate], reading: QuestionReading, lang: str) -> RuleReading | None:
    conditioned = [c for c in rows if c.row.condition is not None and not c.row.piecewise
                   and c.row.value is not None]
    dims = {c.row.condition.dim for c in conditioned if c.row.condition is not None}
    if len(conditioned) < 2 or any(reading.stated(d) for d in dims):
        return None
    asked = {dimension(u) for u in reading.asked_units}
    if asked and not any(dimension(c.row.value.unit) in asked for c in conditioned):  # type: ignore[union-attr]
        return None
    quote, units = _quote(conditioned, lang)
    return RuleReading("all_rows", Composed(quote, units), [c.row for c in conditioned])


def read_rules(question: str, ev: Evidence | None, facts_of: Callable[[str], list[Fact]], lang: str,
               top_units: int = 8, min_share: float = 0.6) -> RuleReading | None:
    """What the rules stated by the question's best units answer (None: no rule decides it).

    ``top_units`` best units of the evidence, those covering at least ``min_share`` of the best
    one's coverage, lend their rules; the rule of the best of them (its subject) is read.
    """
    if ev is None or not ev.units:
        return None
    cands = _candidates(ev, facts_of, top_units, min_share)
    if not cands:
        return None
    reading = read_question(question)
    # The rule the question is about: one whose subject the question names (试用期, not the
    # 续订合同期限 of a neighbouring table that shares the question's other words), best unit first.
    asking = _norm(asking_part(question))
    anchor = min(cands, key=lambda c: (-_subject_weight(c.row.subject, ev, asking), c.rank, -c.score))
    rows = _same_rule(anchor, cands, facts_of)
    for step in (_computed, _selected, _direction):
        found = step(rows, reading, lang)
        if found is not None:
            return found
    if any(c.row.condition is not None for c in rows) and any(
            reading.stated(c.row.condition.dim) for c in rows if c.row.condition is not None):
        return None  # the question states a quantity no row of this rule covers: not for us to guess
    return _all_rows(rows, reading, lang)
