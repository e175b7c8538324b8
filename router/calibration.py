"""When the knowledge base holds an answer: a calibrated answerability score.

The decision rests on evidence that a passage answers (:mod:`router.evidence`): how much of the
question a sentence covers, how much of it the knowledge base has never heard of, whether the
passages talk about a sibling of what was asked — and, as one signal among these, how far the best
passage's cosine stands above the question's background similarity. That last one is the only
signal whose scale depends on the collection and the embedder, so it is the one calibrated per
knowledge base: at index time, questions made from the knowledge base's own material (see
:func:`probe_questions`) give the margins of answerable and of absent questions, and their
midpoint and spread are stored in the index manifest together with the embedder they were
measured with. An index calibrated with another embedder is not used with these numbers.

The weights of the score are data (``router.answerability`` in the settings), fitted on several
development knowledge bases (``benchmarks/calibrate.py``), never on the ones reported as held out.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable

from config.topics import topics
from knowledge.core.numeric import sigmoid as _sigmoid
from router.evidence import kb_terms, content_terms
from router.llm.prompts import detect_language

__all__ = ["Calibration", "answerability", "calibrate_index", "probe_questions"]

FEATURES = ("coverage", "coverage_top3", "absent_share", "missing_sibling", "peak_z", "asked_found", "cross_lingual")
DEFAULT_WEIGHTS = {"bias": -1.2, "coverage": 4.0, "coverage_top3": 0.0, "absent_share": -2.0, "missing_sibling": -3.0,
                   "peak_z": 1.6, "asked_found": 0.0, "cross_lingual": 0.0}


@dataclass
class Calibration:
    """Per-index scale of the cosine margin, and where it came from."""

    peak_mid: float = 0.045        # margin halfway between absent and answerable questions
    peak_scale: float = 0.015      # margin that counts as one unit of evidence
    embedder: dict[str, Any] = field(default_factory=dict)
    source: str = "default"        # "index" when measured on this knowledge base
    probes: dict[str, int] = field(default_factory=dict)
    margins: dict[str, list[float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_manifest(cls, manifest: dict[str, Any], embedder: dict[str, Any] | None) -> "Calibration":
        """The index's calibration when it was measured with ``embedder``; the default otherwise."""
        data = (manifest or {}).get("calibration") or {}
        if not data:
            return cls()
        made_with = data.get("embedder") or {}
        if embedder is not None and any(made_with.get(k) != embedder.get(k) for k in ("name", "model", "dim")):
            return cls(source=f"default (the index's calibration was made with embedder {made_with.get('name')!r}, "
                              f"not {embedder.get('name')!r})")
        keys = cls.__dataclass_fields__
        return cls(**{k: v for k, v in data.items() if k in keys})


def features_for(signals: Any) -> dict[str, float]:
    """The answerability features of one decision's signals (see :data:`FEATURES`).

    ``peak_z`` is the cosine margin in units of this index's calibration; ``cross_lingual`` is 1
    when the question is not in the knowledge base's main language (then word coverage says
    little and the margin must carry the decision).
    """

    ev = signals.evidence
    calibration = signals.calibration or Calibration()
    peak_z = (ev.peak - calibration.peak_mid) / max(calibration.peak_scale, 1e-4)
    good = [u.coverage for u in ev.units if u.kind != "heading"]
    top3 = sorted(good, reverse=True)[:3]
    asked = ev.asked_units
    found = any(u.units & asked for u in ev.units[:5] if u.coverage >= 0.3) if asked else False
    kb_lang = getattr(kb_terms(signals_index(signals)), "lang", "") if signals_index(signals) is not None else ""
    cross = bool(kb_lang) and signals.lang != kb_lang
    coverage, cov3, absent_share = ev.best_coverage, sum(top3) / 3, ev.absent_share
    if cross:
        # Words of an English question do not occur in Chinese rules (nor the reverse): word
        # coverage says only as much as the share of the question's words that were translated
        # into the documents' words (router.bilingual); the rest is neutral and the margin decides.
        share = max(0.0, min(1.0, getattr(ev, "translated_share", 0.0)))
        coverage = share * coverage + (1 - share) * NEUTRAL["coverage"]
        cov3 = share * cov3 + (1 - share) * NEUTRAL["coverage_top3"]
        absent_share = share * absent_share + (1 - share) * NEUTRAL["absent_share"]
        found = found if share else 0.0
    return {"coverage": round(coverage, 4), "coverage_top3": round(cov3, 4),
            "absent_share": round(absent_share, 4), "missing_sibling": float(ev.missing_sibling),
            "peak_z": round(max(-3.0, min(3.0, peak_z)), 4), "asked_found": float(found),
            "cross_lingual": float(cross)}


NEUTRAL = {"coverage": 0.5, "coverage_top3": 0.35, "absent_share": 0.3}


def signals_index(signals: Any) -> Any:
    return getattr(signals.evidence, "index", None)


def answerability(features: dict[str, float], weights: dict[str, float] | None = None) -> float:
    """P(the knowledge base answers the question) from :func:`features_for`'s features.

    >>> round(answerability({"coverage": 1.0, "absent_share": 0.0, "peak_z": 1.5}), 2) > 0.9
    True
    >>> round(answerability({"coverage": 0.2, "absent_share": 0.8, "peak_z": -1.0}), 2) < 0.1
    True
    """
    w = {**DEFAULT_WEIGHTS, **(weights or {})}
    z = w["bias"] + sum(w[f] * float(features.get(f, 0.0)) for f in FEATURES)
    return _sigmoid(z)


# --- probes: questions made from the knowledge base's own material --------------------------------
# Question frames (how people ask), filled with a subject. The subjects of answerable probes come
# from the knowledge base (fact subjects, headings); those of absent probes from topics that the
# knowledge base never mentions (config/topics.yaml, calibration_probes; checked word by word, so a
# company that does cover canteens does not get "canteen" as an absent topic).
_FRAMES_ZH = ["{s}是多少？", "{s}有什么规定？", "关于{s}，公司是怎么规定的？", "{s}怎么办理？"]
_FRAMES_EN = ["What is the rule for {s}?", "How much is the {s}?", "What does the policy say about {s}?"]


def probe_questions(index: Any, n: int = 40, seed: int = 0) -> tuple[list[str], list[str]]:
    """(answerable, absent) probe questions for one index.

    Answerable probes name a fact's subject or a section heading of this knowledge base; absent
    probes name a workplace topic none of whose words occur in it. Both use the same frames, so the
    two sets differ in whether the knowledge base covers the subject, not in how they are asked.
    """

    stats = kb_terms(index)
    texts = [c.text for c in getattr(index, "chunks", [])]
    zh = sum(detect_language(t) == "zh" for t in texts[:200]) >= 0.5 * max(1, min(200, len(texts)))
    frames = _FRAMES_ZH if zh else _FRAMES_EN
    subjects: list[str] = []
    for f in getattr(index, "facts", []):
        subj = re.split(r"\s*/\s*", f.subject or "")[-1].strip()
        if 2 <= len(subj) <= 20 and not re.search(r"[:：；;|]", subj):
            subjects.append(subj)
    for c in getattr(index, "chunks", []):
        for h in (c.heading_path or [])[1:]:
            h = re.sub(r"^(第[一二三四五六七八九十百\d]+[章节条]|[\d.]+)\s*", "", h).strip()
            if 2 <= len(h) <= 16:
                subjects.append(h)
    # Subjects are drawn by a hash of their text, not by shuffling the list: a document added to
    # the collection then displaces at most its own subjects from the sample, so one new file does
    # not re-draw every probe (and move every borderline decision with the calibration).
    def draw(items: Iterable[str]) -> list[str]:
        keyed = sorted((hashlib.sha256(f"{seed}:{x}".encode("utf-8")).hexdigest(), x) for x in set(items))
        return [frames[int(k[:8], 16) % len(frames)].format(s=x) for k, x in keyed[:n]]

    probes = topics()
    candidates = probes.probe_zh if zh else probes.probe_en
    absent_topics = [t for t in candidates if not any(stats.present(w) for w in content_terms(t))]
    return draw(subjects), draw(absent_topics)


def _margins(engine: Any, questions: Iterable[str]) -> list[float]:
    out = []
    for q in questions:
        _, signals = engine.decide(q)
        if signals.evidence is not None:
            out.append(round(signals.evidence.peak, 4))
    return out


def calibrate_index(engine: Any) -> Calibration:
    """Measure the cosine margins of probe questions on ``engine``'s index (no generation)."""
    answerable, absent = probe_questions(engine.index)
    a = sorted(_margins(engine, answerable))
    b = sorted(_margins(engine, absent))
    describe = getattr(engine.index.embedder, "describe", lambda: {})()
    if len(a) < 5 or len(b) < 5:
        return Calibration(embedder=describe, source="default (too few probes)",
                           probes={"answerable": len(a), "absent": len(b)})
    med_a, med_b = a[len(a) // 2], b[len(b) // 2]
    mid = (med_a + med_b) / 2
    spread = max(0.008, (med_a - med_b) / 2)
    return Calibration(peak_mid=round(mid, 4), peak_scale=round(spread, 4), embedder=describe, source="index",
                       probes={"answerable": len(a), "absent": len(b)},
                       margins={"answerable_median": [med_a], "absent_median": [med_b]})
