"""Answers composed from evidence units, without a language model: figures, whole tables, quotes.

* :func:`fact_answer` — the sentence or table row that states the asked figure; when the question
  does not say which row of a table (or which item of a list) it means, every row, each with its
  condition: "住宿标准是多少？" gets the table by grade and city class, not one row of it;
* :func:`premise_note` — a question that states a figure ("试用期是12个月吗？") is told whether the
  documents say the same; the wrong figure itself is never repeated;
* :func:`quote_answer` — the best units quoted with their citation numbers (the extractive answer
  the generator falls back to, and the answer for definitions of words the glossary lacks).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from knowledge.numbers import extract_quantities, same_quantity
from router.evidence import Evidence, Unit, _norm
from router.evidence import source_units

__all__ = ["Composed", "fact_answer", "premise_note", "quote_answer", "select_units"]

MAX_ROWS = 12


@dataclass
class Composed:
    text: str
    units: list[Unit] = field(default_factory=list)

    @property
    def citations(self) -> list[dict[str, Any]]:
        seen: dict[str, dict[str, Any]] = {}
        for u in self.units:
            c = seen.setdefault(u.chunk_id, {**u.citation, "quote": ""})
            c["quote"] = (c["quote"] + " " + u.text).strip() if u.text not in c["quote"] else c["quote"]
        return list(seen.values())


def _family(u: Unit) -> str:
    if u.kind == "record":
        return f"{u.source}:" + "|".join(k for k, _ in u.fields)
    return u.family


def _distinct_members(best: Unit, ev: Evidence) -> list[Unit]:
    """The rows of ``best``'s table (all of them, also those in chunks retrieval did not return),
    or the items of its list, scored as the retrieved ones are."""
    fam = _family(best)
    if not fam:
        return [best]
    members, seen = [], set()
    for u in ev.units:
        if _family(u) == fam and u.text not in seen:
            seen.add(u.text)
            members.append(u)
    if best.kind == "record" and ev.index is not None:
        for u in source_units(ev.index, best.source):
            if _family(u) == fam and u.text not in seen:
                seen.add(u.text)
                extra = Unit(u.text, u.chunk_id, u.source, u.page, u.kind, u.order, u.context, u.family,
                             list(u.fields), coverage=best.coverage, score=best.score - 0.01, chunk_rank=99)
                members.append(extra)
    return sorted(members, key=lambda u: (u.chunk_rank if u.chunk_id != best.chunk_id else -1, u.order))


def _is_generic(best: Unit, members: list[Unit], ev: Evidence) -> bool:
    """The question does not pick a row: the rows differ in condition words none of which the
    question uses, and they match the question about as well as the best one does."""
    if len(members) < 2:
        return False
    close = [u for u in members if u.coverage >= best.coverage - 0.08]
    if len(close) < 2:
        return False
    qterms = set(ev.terms)
    if best.kind == "record":
        # A value that tells rows apart and that the question names picks the row.
        keys = [k for k, _ in best.fields]
        for key in keys:
            values = {dict(u.fields).get(key, "") for u in members}
            if len(values) > 1 and any(_mentions(v, qterms) for v in values):
                return False
        return True
    return all(not (set(u.matched) - set(best.matched)) for u in close) and len(close) >= 2


def _mentions(value: str, terms: set[str]) -> bool:
    v = _norm(value)
    return bool(v) and any(t in v or (len(v) >= 2 and v in t) for t in terms)


def _row_text(u: Unit, ev: Evidence, keep: list[str] | None = None) -> str:
    """A table row reduced to its distinguishing conditions and the asked columns."""
    if u.kind != "record" or not u.fields:
        return u.text
    if keep is None:
        return u.text
    parts = [f"{k}: {v}" for k, v in u.fields if k in keep and v]
    return "；".join(parts) if parts else u.text


def _named_columns(u: Unit, ev: Evidence) -> list[str]:
    """Columns whose header holds a question term."""
    return [k for k, _ in u.fields if any(t in _norm(k) for t in ev.terms)]


def _asked_columns(u: Unit, ev: Evidence) -> list[str]:
    """The columns the question asks for: those whose header names the most question terms, or
    (failing that) whose value has an asked unit."""
    scored = [(sum(t in _norm(k) for t in ev.terms), k) for k, _ in u.fields]
    top = max((n for n, _ in scored), default=0)
    if top:
        return [k for n, k in scored if n == top]
    if ev.asked_units:
        return [k for k, v in u.fields if {q.unit for q in extract_quantities(f"{v}{_unit_hint(k)}")} & ev.asked_units]
    return []


def _condition_columns(rows: list[Unit]) -> list[str]:
    """Columns that tell the rows apart by a short label (城市类别: 一类城市, 职级: A类), not by a
    figure or a long description."""
    keys = [k for k, _ in rows[0].fields]
    out = []
    for k in keys:
        values = [dict(r.fields).get(k, "") for r in rows]
        if len(set(values)) > 1 and all(len(v) <= 10 and not extract_quantities(v) for v in values):
            out.append(k)
    return out


def _unit_hint(key: str) -> str:
    m = re.search(r"[（(]([^()（）]{1,8})[)）]", key)
    return m.group(1).split("/")[0] if m else ""


def fact_answer(ev: Evidence, min_coverage: float = 0.3) -> Composed | None:
    """The asked figure from the best quantity unit, or the whole table when the question is generic."""
    candidates = [u for u in ev.quantity_units(min_coverage)]
    if not candidates:
        return None
    best = candidates[0]
    # A table with a column the question names (住宿标准 → "住宿标准(元/晚)") answers a question that
    # does not pick one of its rows better than any single sentence does: 「出差住宿标准是多少？」 gets the
    # table by grade and city class, not the one rule for account managers that also says 住宿标准.
    table = next((u for u in candidates if u.kind == "record" and _named_columns(u, ev)
                  and u.coverage >= 0.5 * best.coverage), None)
    if table is not None and best.kind != "record" and _is_generic(table, _distinct_members(table, ev), ev):
        best = table
    members = _distinct_members(best, ev)
    if _is_generic(best, members, ev):
        rows = members[:MAX_ROWS]
        if best.kind == "record":
            rows = sorted(rows, key=lambda r: (r.chunk_id, r.order))
            asked = _asked_columns(best, ev)
            keep = list(dict.fromkeys([*_condition_columns(rows), *asked])) if asked else None
            lines = [_row_text(r, ev, keep) for r in rows]
        else:
            lines = [r.text for r in rows]
        head = best.context.split(" | ")[-1] if best.context else ""
        body = "\n".join(f"- {line}" for line in lines)
        return Composed((head + "\n" if head and head not in body else "") + body, rows)
    if best.kind == "record":
        asked = _asked_columns(best, ev)
        if asked:
            conditions = [k for k, v in best.fields if _mentions(v, set(ev.terms))]
            text = _row_text(best, ev, list(dict.fromkeys([*conditions, *asked])))
            return Composed(text, [best])
    return Composed(best.text, [best])


def select_units(ev: Evidence, max_units: int = 6, max_chars: int = 700, min_share: float = 0.35) -> list[Unit]:
    """The units worth showing a reader (or a generator): the best ones, the whole list or table
    the best one belongs to when the question does not pick a member, within a size budget."""
    if not ev.units:
        return []
    top = ev.units[0].coverage or 1e-9
    chosen: list[Unit] = []
    chars = 0
    for u in ev.units:
        if u.kind == "heading" or u.coverage < min_share * top or any(u.text == c.text for c in chosen):
            continue
        group = [u]
        if (u.kind in ("item", "record")) and not chosen:
            members = _distinct_members(u, ev)
            if _is_generic(u, members, ev):
                group = members[:MAX_ROWS]
        for g in group:
            if len(chosen) >= max_units + (len(group) if g is not u else 0) or chars + len(g.text) > max_chars * 1.5:
                break
            if all(g.text != c.text for c in chosen):
                chosen.append(g)
                chars += len(g.text)
        if len(chosen) >= max_units or chars >= max_chars:
            break
    return chosen


def quote_answer(units: list[Unit], lang: str) -> Composed | None:
    """The units quoted in document order per source, each passage cited as [n]."""
    if not units:
        return None
    order: list[str] = []
    for u in units:
        if u.chunk_id not in order:
            order.append(u.chunk_id)
    lines = []
    for u in sorted(units, key=lambda x: (order.index(x.chunk_id), x.order)):
        n = order.index(u.chunk_id) + 1
        body = u.text.rstrip("。．.；;，, ")
        lines.append(f"{body}[{n}]。" if lang == "zh" else f"{body} [{n}].")
    return Composed(("\n" if any(u.kind in ("item", "record") for u in units) else "").join(lines)
                    if lang == "zh" else " ".join(lines), units)


def premise_note(asserted: list[Any], units: list[Unit], lang: str) -> str:
    """"是的。" / "不是。" for a question that states a figure, from the figures of ``units``
    with the same unit ("" when the units state none of that unit).

    >>> from router.evidence import Unit
    >>> u = Unit("试用期为6个月。", "c", "a.md", None, "sentence", 0)
    >>> premise_note(extract_quantities("12个月"), [u], "zh"), premise_note(extract_quantities("6个月"), [u], "zh")
    ('不是。', '是的。')
    """
    if not asserted:
        return ""
    stated = [q for u in units for q in extract_quantities(u.text)]
    verdicts = []
    for a in asserted:
        same_unit = [q for q in stated if q.unit == a.unit or (not q.unit or not a.unit)]
        if not same_unit:
            continue
        verdicts.append(any(same_quantity(a, q) for q in same_unit))
    if not verdicts:
        return ""
    if all(verdicts):
        return "是的。" if lang == "zh" else "Yes."
    return "不是。" if lang == "zh" else "No."
