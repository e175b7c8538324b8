"""The disambiguator interface, the decision rule built on it, and the backend registry.

A backend implements one method, :meth:`Disambiguator.score` (how well each meaning fits a
context). Turning scores into a :class:`TermResolution` - calibrated confidence, the
ambiguity margin, neutral questions - lives here, so every backend decides the same way.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from typing import Any

from knowledge.core.errors import KBError
from knowledge.core.numeric import softmax
from knowledge.core.registry import Registry
from knowledge.core.types import Meaning, TermMatch, TermResolution
from knowledge.text_utils import normalize_width

# Words that only ask what a term means. A context made of nothing but the term and these
# ("PM是什么意思", "what does PM stand for?") carries no evidence for any one meaning.
_DEFINITION_PATTERNS = [
    r"是什么意思", r"什么意思", r"是什么", r"是啥", r"啥意思", r"指什么", r"指的是", r"代表什么",
    r"的意思", r"的含义", r"含义", r"意思", r"的全称", r"全称", r"的缩写", r"缩写", r"解释一下", r"解释",
    r"请问", r"什么是", r"何为", r"是指", r"一下", r"吗", r"呢", r"的", r"是",
    r"\bwhat\b", r"\bdoes\b", r"\bdo\b", r"\bis\b", r"\bare\b", r"\bthe\b", r"\bmean(?:s|ing)?\b",
    r"\bstand(?:s)?\b", r"\bfor\b", r"\bof\b", r"\bdefin(?:e|ition)\b", r"\bexpansion\b",
    r"\bfull\b", r"\bform\b", r"\babbreviation\b", r"\bacronym\b", r"\bplease\b", r"\bexplain\b",
    r"\ba\b", r"\ban\b",
]
_DEFINITION_RE = re.compile("|".join(_DEFINITION_PATTERNS), re.IGNORECASE)
_NOISE_RE = re.compile(r"[\s\W_]+")


# ---------------------------------------------------------------- pure helpers

def is_neutral_context(context: str, surfaces: list[str]) -> bool:
    """True when ``context`` only asks what the term means (no evidence for any meaning).

    >>> is_neutral_context("PM是什么意思？", ["PM"]), is_neutral_context("What does PM stand for?", ["PM"])
    (True, True)
    >>> is_neutral_context("项目启动会上由PM负责制定里程碑", ["PM"])
    False
    """
    rest = context
    for surface in sorted((s for s in surfaces if s), key=len, reverse=True):
        rest = rest.replace(surface, " ")
    rest = _DEFINITION_RE.sub(" ", rest)
    return not _NOISE_RE.sub("", rest)


def meaning_text(meaning: Meaning) -> str:
    """One string for a meaning: English long form and Chinese explanation.

    >>> meaning_text(Meaning("Project Manager", "项目经理")), meaning_text(Meaning(chinese="项目经理"))
    ('Project Manager 项目经理', '项目经理')
    """
    return " ".join(part for part in (meaning.english.strip(), meaning.chinese.strip()) if part)


# ---------------------------------------------------------------- interface

class Disambiguator(ABC):
    """Scores how well each meaning of a term fits a context; decides with a margin.

    Subclasses implement :meth:`score`; they may override :meth:`score_batch` to score many
    contexts at once (an embedding backend embeds them in batches). ``temperature`` turns
    score gaps into confidences: a gap equal to the temperature is odds of e to 1.
    """

    name: str = ""
    temperature: float = 0.02
    margin: float = 0.02   # lead the best meaning needs to be decided (``router.ambiguity_margin``)

    @abstractmethod
    def score(self, context: str, term: str, meanings: list[Meaning]) -> list[float]:
        """One score per meaning (higher fits better; gaps comparable with the margin)."""

    def score_batch(self, items: list[tuple[str, TermMatch]]) -> list[list[float]]:
        """Scores for many ``(context, match)`` pairs; the default scores them one by one."""
        return [self.score(context, m.term, m.entry.meanings) for context, m in items]

    def resolve(self, context: str, match: TermMatch, margin: float | None = None) -> TermResolution:
        """Pick the meaning of ``match`` that ``context`` supports.

        One meaning: decided with confidence 1, nothing scored. Several: decided when the best
        score leads the second by at least ``margin`` (default: this disambiguator's
        :attr:`margin`) and the context is more than a "what does X mean" question.
        """
        return self.resolve_batch([(context, match)], margin)[0]

    def resolve_batch(self, items: list[tuple[str, TermMatch]], margin: float | None = None
                      ) -> list[TermResolution]:
        """:meth:`resolve` for many pairs, scoring only the terms with several meanings at once."""
        margin = self.margin if margin is None else margin
        written = {i: written_meaning(m) for i, (_, m) in enumerate(items)}
        ambiguous = [i for i, (_, m) in enumerate(items)
                     if len(m.entry.meanings) > 1 and written[i] is None]
        scores = dict(zip(ambiguous, self.score_batch([items[i] for i in ambiguous]))) if ambiguous else {}
        out = []
        for i, (context, match) in enumerate(items):
            if written[i] is not None:
                out.append(single_meaning(match, written[i]))
            elif i not in scores:
                out.append(single_meaning(match))
            else:
                neutral = is_neutral_context(context, [match.surface, match.term])
                out.append(decide(match, scores[i], margin, self.temperature, neutral))
        return out


def single_meaning(match: TermMatch, index: int = 0) -> TermResolution:
    """The resolution of a term with one meaning (or none), or whose meaning ``index`` the
    text spelled out; the other meanings stay listed as alternatives with score 0."""
    meanings = match.entry.meanings
    chosen = meanings[index] if meanings else Meaning()
    others = [{"expansion": m.english, "meaning": m.chinese, "score": 0.0}
              for i, m in enumerate(meanings) if i != index]
    return TermResolution(match.term, chosen.english, chosen.chinese, 1.0, others, True)


def undecided(match: TermMatch) -> TermResolution:
    """The resolution that commits to no meaning: the first is shown, every meaning scores
    the same and ``decided`` is False."""
    ms = match.entry.meanings
    first = ms[0] if ms else Meaning()
    return TermResolution(match.term, first.english, first.chinese, 0.5,
                          [{"expansion": m.english, "meaning": m.chinese, "score": 0.5} for m in ms[1:]], False)


def surface_meaning(match: TermMatch) -> int:
    """Index of the meaning whose text contains what the question wrote (a bracketed meaning
    like 全印展（中国国际全印展） contains 全印展); 0 when none does.

    >>> from knowledge.core.types import GlossaryEntry
    >>> e = GlossaryEntry("AIP", [Meaning("All in Print China", "全印展（中国国际全印展）")])
    >>> surface_meaning(TermMatch("AIP", "全印展", 0, 3, e, "meaning"))
    0
    """
    surface = match.surface
    for i, m in enumerate(match.entry.meanings):
        if surface and (surface in m.chinese or surface.lower() in m.english.lower()):
            return i
    return 0


def written_meaning(match: TermMatch) -> int | None:
    """Index of the meaning a ``via="meaning"`` match wrote out (``Purchase Order`` -> the
    Purchase Order meaning of PO, whatever else PO can mean); None for abbreviations.

    >>> from knowledge.core.types import GlossaryEntry
    >>> e = GlossaryEntry("PO", [Meaning("Purchase Order", "采购订单"), Meaning("Product Owner", "产品负责人")])
    >>> written_meaning(TermMatch("PO", "product owner", 0, 13, e, "meaning"))
    1
    """
    if match.via != "meaning":
        return None
    surface = _fold(match.surface)
    for i, m in enumerate(match.entry.meanings):
        if surface in (_fold(m.english), _fold(m.chinese)):
            return i
    return None


def _fold(text: str) -> str:
    return " ".join(normalize_width(text).casefold().split())


def decide(match: TermMatch, scores: list[float], margin: float, temperature: float,
           neutral: bool = False) -> TermResolution:
    """Turn one term's meaning scores into a :class:`TermResolution`.

    The best meaning is reported either way; ``decided`` is False when its lead over the
    runner-up is below ``margin`` or the context is neutral. Confidence is the softmax
    probability of the best meaning (for a neutral context: 1 / number of meanings).
    """
    meanings = match.entry.meanings
    if len(scores) != len(meanings):
        raise KBError(f"disambiguator returned {len(scores)} scores for {len(meanings)} meanings "
                      f"of {match.term!r}")
    probs = softmax(scores, temperature)
    order = sorted(range(len(meanings)), key=lambda i: -scores[i])
    best = order[0]
    lead = scores[best] - scores[order[1]] if len(order) > 1 else float("inf")
    decided = not neutral and lead >= margin
    if neutral:
        probs = [1.0 / len(meanings)] * len(meanings)
    alternatives = [{"expansion": meanings[i].english, "meaning": meanings[i].chinese,
                     "score": round(probs[i], 4)} for i in order[1:]]
    return TermResolution(match.term, meanings[best].english, meanings[best].chinese,
                          probs[best], alternatives, decided)


# ---------------------------------------------------------------- registry

_REGISTRY: Registry[type[Disambiguator]] = Registry("disambiguator")


def register_disambiguator(name: str, cls: type[Disambiguator]) -> None:
    """Make ``cls`` available under ``name``; registering a name twice is an error."""
    _REGISTRY.register(name, cls)


def available_disambiguators() -> list[str]:
    return _REGISTRY.names()


def create_disambiguator(name: str, **kwargs: Any) -> Disambiguator:
    """A new disambiguator of the registered backend ``name``."""
    return _REGISTRY.get(name)(**kwargs)
