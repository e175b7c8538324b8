"""Terminology layer: find glossary terms in a question, pick their meanings, rewrite the query.

Three steps, each usable on its own:

1. :func:`~router.matching.find_terms` finds abbreviations (``AM``, ``ＰＯ``) as whole, case-aware tokens, and
   meanings written out in full (``实际成交价``, ``Purchase Order``), which point back at
   their abbreviation.
2. A :class:`~router.disambiguation.Disambiguator` (default: :class:`EmbeddingDisambiguator`)
   picks the meaning the context supports, or leaves the term undecided.
3. :func:`rewrite_query` writes the chosen meaning into the question so retrieval sees it:
   ``AM负责…`` -> ``客户经理（AM）负责…``.

:func:`expand_batch` runs steps 2-3 over a JSONL batch for ``kb expand``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from tqdm.auto import tqdm

from knowledge.core.errors import ValidationError
from knowledge.core.types import Meaning, TermMatch, TermResolution
from knowledge.glossary import Glossary
from knowledge.text_utils import normalize_width
from router.disambiguation import (
    Disambiguator,
    EmbeddingDisambiguator,
    available_disambiguators,
    create_disambiguator,
    register_disambiguator,
)
from router.matching import TermMatcher, find_terms, fold_case, is_cjk_text, locate_term

__all__ = [
    "Disambiguator",
    "EmbeddingDisambiguator",
    "TermMatch",
    "TermMatcher",
    "TermResolution",
    "available_disambiguators",
    "create_disambiguator",
    "expand_batch",
    "find_terms",
    "locate_term",
    "register_disambiguator",
    "rewrite_query",
]


# ---------------------------------------------------------------- rewriting

def format_expansion(term: str, resolution: TermResolution, meanings: list[Meaning], zh: bool) -> str:
    """The text that replaces an abbreviation in a rewritten query.

    Decided: the meaning with the term in brackets; undecided: the term with every meaning.

    >>> r = TermResolution("AM", "Account Manager", "客户经理", 0.9, [], True)
    >>> format_expansion("AM", r, [], True), format_expansion("AM", r, [], False)
    ('客户经理（AM）', 'Account Manager (AM)')
    >>> u = TermResolution("PM", "", "", 0.5, [], False)
    >>> ms = [Meaning("Product Manager", "产品经理"), Meaning("Project Manager", "项目经理")]
    >>> format_expansion("PM", u, ms, True), format_expansion("PM", u, ms, False)
    ('PM（产品经理/项目经理）', 'PM (Product Manager/Project Manager)')
    """
    if resolution.decided:
        label = _label(resolution.meaning, resolution.expansion, zh)
        return f"{label}（{term}）" if zh else f"{label} ({term})"
    labels = list(dict.fromkeys(_label(m.chinese, m.english, zh) for m in meanings))
    if not labels:
        return term
    return f"{term}（{'/'.join(labels)}）" if zh else f"{term} ({'/'.join(labels)})"


def _label(chinese: str, english: str, zh: bool) -> str:
    return (chinese or english) if zh else (english or chinese)


def rewrite_query(text: str, matches: list[TermMatch], resolutions: list[TermResolution]) -> str:
    """Write the resolved meanings into ``text`` (one resolution per match, same order).

    Abbreviations become ``meaning（ABBR）`` (Chinese text) or ``Long Form (ABBR)`` (English);
    undecided ones list every meaning: ``PM（产品经理/项目经理）``. A meaning written out in
    full gets its abbreviation: ``实际成交价（AAP）``. Nothing is added that the text already
    says (a long form already present, an abbreviation already in brackets after it).

    >>> from knowledge.core.types import GlossaryEntry, Meaning
    >>> e = GlossaryEntry("AM", [Meaning("Account Manager", "客户经理")])
    >>> m = TermMatch("AM", "AM", 0, 2, e)
    >>> r = TermResolution("AM", "Account Manager", "客户经理", 1.0, [], True)
    >>> rewrite_query("AM负责客户关系", [m], [r])
    '客户经理（AM）负责客户关系'
    """
    if len(matches) != len(resolutions):
        raise ValidationError(
            f"rewrite_query needs one resolution per match, got {len(matches)} matches "
            f"and {len(resolutions)} resolutions")
    zh = is_cjk_text(text)
    out, pos = [], 0
    for match, resolution in sorted(zip(matches, resolutions), key=lambda p: p[0].start):
        if match.start < pos:
            continue
        out.append(text[pos:match.start])
        out.append(_rewrite_one(text, match, resolution, zh))
        pos = match.end
    out.append(text[pos:])
    return "".join(out)


def _rewrite_one(text: str, match: TermMatch, resolution: TermResolution, zh: bool) -> str:
    surface = match.surface
    if match.via == "meaning":
        following = normalize_width(text[match.end:match.end + len(match.term) + 3])
        if match.term in following:
            return surface
        return f"{surface}（{match.term}）" if zh else f"{surface} ({match.term})"
    folded = fold_case(normalize_width(text))
    said = [s for s in (resolution.meaning, resolution.expansion) if s]
    if resolution.decided and any(fold_case(normalize_width(s)) in folded for s in said):
        return surface   # the text already says what the abbreviation means
    return format_expansion(surface, resolution, match.entry.meanings, zh)


# ---------------------------------------------------------------- batch expansion

def expand_batch(glossary: Glossary, items: Iterable[dict[str, Any]], disambiguator: Disambiguator,
                 batch_size: int = 64, progress: bool = False) -> Iterator[dict[str, Any]]:
    """Expand one term per item for ``kb expand --batch``.

    In: ``{"id", "text", "term"}`` (the term occurs in the text). Out, in input order:
    ``{"id", "term", "expansion", "confidence"}`` where ``expansion`` is the chosen English long
    form exactly as the glossary spells it (the Chinese meaning when the glossary has no
    English one). Items are scored ``batch_size`` at a time, so an embedding disambiguator
    embeds contexts in batches and each meaning once.

    Raises :class:`ValidationError` for a malformed item and a term the glossary lacks.
    """
    if batch_size < 1:
        raise ValidationError(f"batch_size must be at least 1, got {batch_size}")
    bar = _progress_bar(items) if progress else None
    batch: list[tuple[Any, str, TermMatch]] = []
    for n, item in enumerate(items, start=1):
        batch.append(_batch_item(item, n, glossary))
        if len(batch) >= batch_size:
            yield from _expand_chunk(batch, disambiguator)
            if bar is not None:
                bar.update(len(batch))
            batch = []
    if batch:
        yield from _expand_chunk(batch, disambiguator)
        if bar is not None:
            bar.update(len(batch))
    if bar is not None:
        bar.close()


def _progress_bar(items: Iterable[dict[str, Any]]) -> Any:
    total = len(items) if hasattr(items, "__len__") else None  # type: ignore[arg-type]
    return tqdm(total=total, desc="expand", unit="item")


def _batch_item(item: Any, n: int, glossary: Glossary) -> tuple[Any, str, TermMatch]:
    """Validate one input line and locate its term in its text."""
    if not isinstance(item, dict):
        raise ValidationError(f"batch item {n}: expected an object, got {type(item).__name__}")
    text, term = item.get("text"), item.get("term")
    if not isinstance(text, str) or not isinstance(term, str) or not term.strip():
        raise ValidationError(f"batch item {n} (id {item.get('id')!r}): needs string 'text' and 'term'")
    entry = glossary.get(term)
    if entry is None:
        raise ValidationError(f"batch item {n} (id {item.get('id')!r}): term {term!r} is not in the glossary")
    return item.get("id"), text, locate_term(text, term, entry)


def _expand_chunk(batch: list[tuple[Any, str, TermMatch]], disambiguator: Disambiguator
                  ) -> Iterator[dict[str, Any]]:
    resolutions = disambiguator.resolve_batch([(text, match) for _, text, match in batch])
    for (item_id, _, match), res in zip(batch, resolutions):
        yield {"id": item_id, "term": match.term, "expansion": res.expansion or res.meaning,
               "confidence": round(float(res.confidence), 4)}
