"""Finding glossary terms in text: whole, case-aware tokens, full-width aware, and meanings
written out in full, which point back at their abbreviation.

:func:`find_terms` is the entry point; :class:`TermMatcher` is built once per glossary and
cached (:func:`get_matcher`). The pure helpers below decide what counts as a token boundary,
a clock time (``8 AM``) and an allowed case variant. :mod:`router.terms` (rewriting, batch
expansion) and :mod:`router.disambiguation` both build on this module.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Iterator

from knowledge.core.types import GlossaryEntry, Meaning, TermMatch
from knowledge.glossary import Glossary
from knowledge.text_utils import is_cjk, normalize_width

__all__ = ["TermMatch", "TermMatcher", "find_terms", "get_matcher", "locate_term", "meaning_forms"]

# A Latin token may hold these inside it (R&D, A/R, CI/CD, Wi-Fi, C++); the characters that
# decide a token boundary are letters and digits only, so "AM负责" and "(AM)" both split.
_ALNUM = re.compile(r"[A-Za-z0-9]")
# "8 AM", "10:30 PM", "8am", "9:30pm": a clock time, not an abbreviation.
_TIME_BEFORE = re.compile(r"\d{1,2}(?:[:：.]\d{2})?\s*$")
_TIME_AFTER = re.compile(r"^\s*\d{1,2}[:：]\d{2}")
_TIME_WORDS = {"am", "pm"}
# Reverse lookup needs enough text to be meaningful: 2 CJK characters or 4 Latin ones.
_MIN_CJK_MEANING = 2
_MIN_LATIN_MEANING = 4


# ---------------------------------------------------------------- pure helpers

def fold_case(text: str) -> str:
    """Lower-case ``text`` one character at a time so offsets survive.

    (``str.lower`` can lengthen a string: ``"İ".lower()`` has two characters.)

    >>> fold_case("Purchase ORDER")
    'purchase order'
    >>> len(fold_case("İx")) == 2
    True
    """
    return "".join(low if len(low := ch.lower()) == 1 else ch for ch in text)


def is_token_boundary(text: str, start: int, end: int) -> bool:
    """True when ``text[start:end]`` is not glued to a letter or digit on either side.

    Chinese characters and punctuation are boundaries, so ``AM`` is a token in ``AM负责`` and
    ``(AM)`` but not in ``AMOUNT`` or ``3AM``.

    >>> is_token_boundary("AM负责", 0, 2), is_token_boundary("AMOUNT", 0, 2)
    (True, False)
    >>> is_token_boundary("the AM.", 4, 6), is_token_boundary("3AM", 1, 3)
    (True, False)
    """
    before = text[start - 1] if start > 0 else ""
    after = text[end] if end < len(text) else ""
    glued_left = bool(before) and bool(_ALNUM.match(before)) and bool(_ALNUM.match(text[start]))
    glued_right = bool(after) and bool(_ALNUM.match(after)) and bool(_ALNUM.match(text[end - 1]))
    return not (glued_left or glued_right)


def is_time_expression(text: str, start: int, end: int) -> bool:
    """True when the AM/PM at ``text[start:end]`` belongs to a clock time.

    >>> is_time_expression("at 8 AM", 5, 7), is_time_expression("10:30 PM开会", 6, 8)
    (True, True)
    >>> is_time_expression("PM 9:30到岗", 0, 2), is_time_expression("the PM said", 4, 6)
    (True, False)
    """
    if text[start:end].lower() not in _TIME_WORDS:
        return False
    return bool(_TIME_BEFORE.search(text[:start]) or _TIME_AFTER.match(text[end:]))


def case_allows(surface: str, term: str) -> bool:
    """Whether ``surface`` (found case-insensitively) may stand for the glossary ``term``.

    The glossary's own spelling always matches. Otherwise only an all-capitals surface
    matches, and only a term that has capitals itself: ``SAAS`` may be ``SaaS``, but ``am``
    (a word) is never ``AM`` and ``Go`` is never the glossary's ``GO``.

    >>> case_allows("AM", "AM"), case_allows("am", "AM"), case_allows("Am", "AM")
    (True, False, False)
    >>> case_allows("SAAS", "SaaS"), case_allows("saas", "SaaS")
    (True, False)
    """
    if surface == term:
        return True
    has_letters = any(ch.isalpha() for ch in surface)
    return has_letters and surface.isupper() and any(ch.isupper() for ch in term)


def is_cjk_text(text: str) -> bool:
    """True when ``text`` holds any CJK character (then rewrites use Chinese punctuation).

    >>> is_cjk_text("AM负责"), is_cjk_text("the AM")
    (True, False)
    """
    return any(is_cjk(ch) for ch in text)


# ---------------------------------------------------------------- matcher

class TermMatcher:
    """Finds one glossary's terms in texts; built once per glossary (see :func:`find_terms`).

    Abbreviations and English long forms are looked up through dictionaries keyed by their
    case-folded, width-normalised form, so a scan costs one dictionary probe per token span
    rather than one regex per glossary entry.
    """

    def __init__(self, glossary: Glossary):
        self.glossary = glossary
        self._abbr: dict[str, list[GlossaryEntry]] = {}
        self._latin_meanings: dict[str, list[GlossaryEntry]] = {}
        self._cjk_meanings: dict[str, dict[str, list[GlossaryEntry]]] = {}
        self._cjk_terms: dict[str, dict[str, list[GlossaryEntry]]] = {}   # Chinese abbreviations (双碳)
        self._max_abbr_words = 1
        self._max_meaning_words = 1
        for entry in glossary:
            self._index_entry(entry)

    # -- building --------------------------------------------------------------------
    def _index_entry(self, entry: GlossaryEntry) -> None:
        term = normalize_width(entry.term).strip()
        if term and is_cjk_text(term):
            self._cjk_terms.setdefault(term[0], {}).setdefault(term, []).append(entry)
        elif term:
            self._abbr.setdefault(fold_case(term), []).append(entry)
            self._max_abbr_words = max(self._max_abbr_words, len(term.split()))
        for meaning in entry.meanings:
            for form in meaning_forms(meaning):
                self._index_meaning(form, entry)

    def _index_meaning(self, form: str, entry: GlossaryEntry) -> None:
        form = normalize_width(form).strip()
        if is_cjk_text(form):
            if len(form) >= _MIN_CJK_MEANING:
                bucket = self._cjk_meanings.setdefault(form[0], {}).setdefault(form, [])
                if entry not in bucket:
                    bucket.append(entry)
        elif len(form) >= _MIN_LATIN_MEANING:
            key = " ".join(fold_case(form).split())
            bucket = self._latin_meanings.setdefault(key, [])
            if entry not in bucket:
                bucket.append(entry)
            self._max_meaning_words = max(self._max_meaning_words, len(key.split()))

    # -- scanning --------------------------------------------------------------------
    def find(self, text: str) -> list[TermMatch]:
        """All matches in ``text``, longest first on overlaps, in text order."""
        norm = normalize_width(text)
        candidates = [*self._find_abbreviations(text, norm), *self._find_latin_meanings(text, norm),
                      *_scan_cjk(text, norm, self._cjk_terms, "abbr"),
                      *_scan_cjk(text, norm, self._cjk_meanings, "meaning")]
        return _longest_non_overlapping(candidates)

    def _find_abbreviations(self, text: str, norm: str) -> Iterator[TermMatch]:
        for start, end in _latin_spans(norm, self._max_abbr_words):
            entries = self._abbr.get(fold_case(norm[start:end]))
            if not entries or is_time_expression(norm, start, end):
                continue
            surface = norm[start:end]
            entry = _pick_by_case(surface, entries)
            if entry is not None:
                yield TermMatch(entry.term, text[start:end], start, end, entry, "abbr")

    def _find_latin_meanings(self, text: str, norm: str) -> Iterator[TermMatch]:
        folded = fold_case(norm)
        for start, end in _latin_spans(norm, self._max_meaning_words):
            key = " ".join(folded[start:end].split())
            for entry in self._latin_meanings.get(key, ()):
                yield TermMatch(entry.term, text[start:end], start, end, entry, "meaning")



def _scan_cjk(text: str, norm: str, table: dict[str, dict[str, list[GlossaryEntry]]], via: str
              ) -> Iterator[TermMatch]:
    """Occurrences of Chinese strings (bucketed by first character) in ``norm``.

    Chinese has no word boundaries, so any occurrence counts; overlaps are settled later
    by the longest-match rule.
    """
    for start, ch in enumerate(norm):
        for form, entries in table.get(ch, {}).items():
            end = start + len(form)
            if norm.startswith(form, start) and is_token_boundary(norm, start, end):
                for entry in entries:
                    yield TermMatch(entry.term, text[start:end], start, end, entry, via)


_PAREN = re.compile(r"[（(]([^（）()]*)[）)]")


def meaning_forms(meaning: Meaning) -> list[str]:
    """The strings of a meaning worth finding in text: its Chinese and English forms.

    Glossaries annotate meanings in brackets (「全印展（中国国际全印展）」, 「客户关系管理（系统）」):
    the form without the bracket, the form with the bracket text kept, and the bracket text
    itself are all findable.

    >>> meaning_forms(Meaning("Purchase Order", "采购订单"))
    ['采购订单', 'Purchase Order']
    >>> meaning_forms(Meaning("", "客户关系管理（系统）"))
    ['客户关系管理（系统）', '客户关系管理', '客户关系管理系统']
    """
    forms: list[str] = []
    for form in (meaning.chinese, meaning.english):
        form = form.strip()
        if not form:
            continue
        forms.append(form)
        if _PAREN.search(form):
            forms.append(_PAREN.sub("", form).strip())
            forms.append(_PAREN.sub(lambda m: m.group(1), form).strip())
            # Bracket text alone only when it is a name in its own right, not a qualifier (系统).
            forms.extend(m.group(1).strip() for m in _PAREN.finditer(form) if len(m.group(1).strip()) >= 4)
    out = []
    for f in forms:
        if f and f not in out and (len(f) >= 2):
            out.append(f)
    return out


def _latin_spans(norm: str, max_words: int) -> Iterator[tuple[int, int]]:
    """Spans of 1..max_words consecutive Latin tokens, plus the pieces of a token joined by
    ``& / - + . '`` (so ``AM/PO`` offers ``AM/PO``, ``AM`` and ``PO``; ``R&D`` stays whole too).

    >>> t = "the R&D team, AMOUNT"
    >>> [t[s:e] for s, e in _latin_spans(t, 2)]
    ['the', 'the R&D', 'R&D', 'R', 'D', 'R&D team', 'team', 'AMOUNT']
    """
    tokens = [(m.start(), m.end()) for m in _TOKEN_RE.finditer(norm)]
    for i, (start, end) in enumerate(tokens):
        for j in range(i, min(i + max_words, len(tokens))):
            if j > i and not norm[tokens[j - 1][1]:tokens[j][0]].isspace():
                break   # words of a long form are separated by spaces only
            yield start, tokens[j][1]
            if j == i:
                yield from _piece_spans(norm, start, end)


def _piece_spans(norm: str, start: int, end: int) -> Iterator[tuple[int, int]]:
    """Contiguous runs of a token's alphanumeric pieces, except the whole token."""
    pieces = [(start + m.start(), start + m.end()) for m in _PIECE_RE.finditer(norm[start:end])]
    if len(pieces) < 2:
        return
    for a in range(len(pieces)):
        for b in range(a, len(pieces)):
            if (a, b) != (0, len(pieces) - 1):
                yield pieces[a][0], pieces[b][1]


_PIECE_RE = re.compile(r"[A-Za-z0-9]+\+*")
_TOKEN_RE = re.compile(r"[A-Za-z0-9]+(?:[&/\-+.'][A-Za-z0-9]+)*\+*")


def _pick_by_case(surface: str, entries: list[GlossaryEntry]) -> GlossaryEntry | None:
    """The entry ``surface`` stands for: exact spelling first, then an allowed case variant."""
    for entry in entries:
        if normalize_width(entry.term) == surface:
            return entry
    for entry in entries:
        if case_allows(surface, normalize_width(entry.term)):
            return entry
    return None


def _longest_non_overlapping(matches: list[TermMatch]) -> list[TermMatch]:
    """Keep the longest match where matches overlap; abbreviations win ties; text order out."""
    ranked = sorted(matches, key=lambda m: (-(m.end - m.start), m.via != "abbr", m.start))
    taken: list[TermMatch] = []
    for m in ranked:
        if all(m.end <= t.start or m.start >= t.end or (m.start, m.end) == (t.start, t.end)
               for t in taken):
            # Same span twice (two entries share a long form): keep both, they are both right.
            if all(not (m.start == t.start and m.end == t.end and m.term == t.term) for t in taken):
                taken.append(m)
    return sorted(taken, key=lambda m: (m.start, m.term))


_MATCHERS: "weakref.WeakKeyDictionary[Glossary, tuple[tuple[int, int], TermMatcher]]" = (
    weakref.WeakKeyDictionary()
)


def _signature(glossary: Glossary) -> tuple[int, int]:
    # Cheap change detector: Glossary.merge adds entries or meanings, never removes them.
    return len(glossary), sum(len(e.meanings) for e in glossary)


def get_matcher(glossary: Glossary) -> TermMatcher:
    """The cached :class:`TermMatcher` of ``glossary`` (rebuilt after the glossary grows)."""
    sig = _signature(glossary)
    cached = _MATCHERS.get(glossary)
    if cached is None or cached[0] != sig:
        cached = (sig, TermMatcher(glossary))
        _MATCHERS[glossary] = cached
    return cached[1]


def find_terms(text: str, glossary: Glossary) -> list[TermMatch]:
    """Glossary terms in ``text``, in text order.

    Abbreviations match as whole tokens and case-aware (``AM`` in ``AM负责`` and ``the AM``, not
    in ``AMOUNT``, ``am`` or the time ``8 AM``); full-width forms match (``ＡＭ``); meanings
    written out in full find their abbreviation (``via="meaning"``).

    >>> from knowledge.core.types import GlossaryEntry, Meaning
    >>> g = Glossary([GlossaryEntry("AM", [Meaning("Account Manager", "客户经理")]),
    ...               GlossaryEntry("AAP", [Meaning("Actual Achieved Price", "实际成交价")])])
    >>> [(m.term, m.surface, m.via) for m in find_terms("ＡＭ负责, AMOUNT at 8 AM", g)]
    [('AM', 'ＡＭ', 'abbr')]
    >>> [(m.term, m.surface, m.via) for m in find_terms("实际成交价的缩写", g)]
    [('AAP', '实际成交价', 'meaning')]
    """
    if not text or len(glossary) == 0:
        return []
    return get_matcher(glossary).find(text)


def locate_term(text: str, term: str, entry: GlossaryEntry) -> TermMatch:
    """A match for ``term`` in ``text``: the first whole-token occurrence, else the first
    occurrence at all, else a zero-width match at the start (the text is still the context).

    >>> e = GlossaryEntry("CT", [Meaning("computed tomography")])
    >>> m = locate_term("CTA and CT scans", "CT", e); (m.start, m.end, m.surface)
    (8, 10, 'CT')
    """
    norm, wanted = normalize_width(text), normalize_width(term)
    starts = [m.start() for m in re.finditer(re.escape(wanted), norm)]
    whole = [s for s in starts if is_token_boundary(norm, s, s + len(wanted))]
    if whole or starts:
        s = (whole or starts)[0]
        return TermMatch(entry.term, text[s:s + len(wanted)], s, s + len(wanted), entry, "abbr")
    return TermMatch(entry.term, "", 0, 0, entry, "abbr")
