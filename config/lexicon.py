"""The question lexicon: closed-class words of how people ask (``config/lexicon.yaml``).

Data, not code: which unit "几天" asks for, which words only shape a question, how a follow-up
or an injected instruction opens. ``KB_LEXICON`` may name another YAML file with the same keys
(its top-level keys replace the packaged ones).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from config.layered import layered

DEFAULT_LEXICON = Path(__file__).with_name("lexicon.yaml")


@dataclass(frozen=True)
class Lexicon:
    """Compiled lexicon (see the YAML file for what each part means)."""

    asked_units: tuple[tuple[re.Pattern[str], frozenset[str]], ...]
    question_words: frozenset[str]
    followup: dict[str, Any]
    injection: re.Pattern[str]
    yes_no: re.Pattern[str]
    asserted_before: re.Pattern[str]
    asserted_after: re.Pattern[str]
    confirm_words: re.Pattern[str]
    numeric_question: re.Pattern[str]
    intent: dict[str, re.Pattern[str]]          # definition, quantity, synthesis, filler
    followup_slot: dict[str, re.Pattern[str]]   # zh_strip, zh_tail, en_strip, en_drop, ranked_label
    question_form: dict[str, re.Pattern[str]]   # clause_end, lead_conjunction, figure_tail
    exclusion: re.Pattern[str] = re.compile(r"(?!x)x")


@lru_cache(maxsize=1)
def lexicon() -> Lexicon:
    """The process-wide lexicon (packaged YAML, overridden section by section by ``KB_LEXICON``).

    >>> sorted(next(u for p, u in lexicon().asked_units if p.search("婚假是几天？")))
    ['周', '天', '工作日']
    >>> bool(lexicon().intent["definition"].search("PM是什么意思")), lexicon().followup_slot["zh_strip"].sub("", "那二类城市")
    (True, '二类城市')
    """
    data = layered(DEFAULT_LEXICON, "KB_LEXICON", "a lexicon")
    flags = re.IGNORECASE
    return Lexicon(
        asked_units=tuple((re.compile(a["pattern"], flags), frozenset(a["units"])) for a in data["asked_units"]),
        question_words=frozenset(str(data["question_words"]).lower().split()),
        followup={k: re.compile(v, flags) if isinstance(v, str) else v for k, v in data["followup"].items()},
        injection=re.compile("|".join(f"(?:{p})" for p in data["injection"]), flags),
        yes_no=re.compile(data["yes_no"], flags),
        asserted_before=re.compile(data["asserted_before"], flags),
        asserted_after=re.compile(data["asserted_after"], flags),
        confirm_words=re.compile(data["confirm_words"], flags),
        numeric_question=re.compile(data["numeric_question"], flags),
        intent=_patterns(data["intent"], flags),
        followup_slot=_patterns(data["followup_slot"], flags),
        question_form=_patterns(data["question_form"], flags),
        exclusion=re.compile(data.get("exclusion") or r"(?!x)x", flags),
    )


def _patterns(section: dict[str, str], flags: int) -> dict[str, re.Pattern[str]]:
    """A section of named patterns, each compiled."""
    return {name: re.compile(str(pattern), flags) for name, pattern in section.items()}


@lru_cache(maxsize=1)
def conditions() -> dict[str, Any]:
    """The ``conditions:`` section: words of conditional rules and of a question's quantities.

    Raw data (lists and mappings); ``knowledge.rules`` compiles it. Overridden as one section by
    ``KB_LEXICON`` like the others.

    >>> conditions()["dimensions"]["年"]
    ['duration_months', 12]
    """
    data = layered(DEFAULT_LEXICON, "KB_LEXICON", "a lexicon")
    return dict(data.get("conditions") or {})
