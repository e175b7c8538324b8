"""Building an index version with its calibration: what ``kb index`` and the reindex job run.

:meth:`retrieval.store.IndexStore.build` builds and publishes a version; its ``finalize`` step
(:func:`calibrator`) embeds the new version's sentences and vocabulary for the evidence reader
(:func:`router.meaning.build_meaning`, reusing the previous version's vectors for unchanged text),
measures its answerability calibration on its own probe questions
(:func:`router.calibration.calibrate_index`, which needs an :class:`~router.engine.Engine` over the
fresh index) and stores both in the version's manifest before it is published.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from retrieval.index import KnowledgeIndex
from router.calibration import calibrate_index, probe_questions
from router.engine import Engine
from router.evidence import _units_cached
from router.llm.extractive import ExtractiveGenerator
from router.meaning import build_meaning, fit_scale, meaning_of

__all__ = ["build_index", "calibrator", "meaning_margins"]


def meaning_margins(index: Any, questions: list[str], k: int = 5) -> list[float]:
    """For each question, how far its best unit (of its top ``k`` chunks) stands above the
    question's background cosine to all units."""
    meaning = meaning_of(index)
    if meaning is None:
        return []
    out = []
    for q in questions:
        qvec = index.query_vector(q)
        units = [u for h in index.search(q, k=k) for u in _units_cached(h.chunk)]
        scores = [s for s in meaning.unit_scores(qvec, units) if s is not None]
        if scores:
            # unit_scores divides by the current scale; undo it to get the raw margin
            out.append(max(scores) * max(meaning.calibration.scale, 1e-3))
    return out


def calibrator(settings: Any, embedder: Any, previous: Path | None = None, progress: bool = False) -> Any:
    """A ``finalize`` step for :meth:`retrieval.store.IndexStore.build`: embed the freshly built
    version's units and vocabulary, calibrate it on its own probe questions, and return the
    manifest fields ``{"calibration": ..., "meaning": ...}``."""

    def finalize(path: Any) -> dict[str, Any]:
        index = KnowledgeIndex(path, embedder, settings)
        out: dict[str, Any] = {}
        if settings.router.meaning.enabled:
            counts = build_meaning(index, settings, previous=previous, progress=progress)
            index = KnowledgeIndex(path, embedder, settings)  # a fresh view that loads the vectors
            answerable, _ = probe_questions(index)
            fitted = fit_scale(meaning_margins(index, answerable))
            out["meaning"] = {**fitted.to_dict(), **counts}
            index.manifest["meaning"] = out["meaning"]
            index.__dict__.pop("_meaning", None)
        engine = Engine(settings, index, generator=ExtractiveGenerator())
        out["calibration"] = calibrate_index(engine).to_dict()
        return out

    return finalize


def build_index(store: Any, full: bool = False, progress: bool = False) -> Any:
    """Build and publish a new index version with its calibration (what ``kb index`` runs)."""
    current = store.current_version()
    previous = store.indexes_dir / current if current else None
    return store.build(full=full, progress=progress,
                       finalize=calibrator(store.settings, store.embedder, previous, progress))
