"""Building an index version with its calibration: what ``kb index`` and the reindex job run.

:meth:`retrieval.store.IndexStore.build` builds and publishes a version; its ``finalize`` step
(:func:`calibrator`) measures the new version's answerability calibration on its own probe
questions (:func:`router.calibration.calibrate_index`, which needs an :class:`~router.engine.Engine`
over the fresh index) and stores it in the version's manifest before it is published.
"""

from __future__ import annotations

from typing import Any

from retrieval.index import KnowledgeIndex
from router.calibration import calibrate_index
from router.engine import Engine
from router.llm.extractive import ExtractiveGenerator

__all__ = ["build_index", "calibrator"]


def calibrator(settings: Any, embedder: Any) -> Any:
    """A ``finalize`` step for :meth:`retrieval.store.IndexStore.build`: calibrate the freshly built
    version on its own probe questions and return ``{"calibration": ...}`` for its manifest."""

    def finalize(path: Any) -> dict[str, Any]:
        index = KnowledgeIndex(path, embedder, settings)
        engine = Engine(settings, index, generator=ExtractiveGenerator())
        return {"calibration": calibrate_index(engine).to_dict()}

    return finalize


def build_index(store: Any, full: bool = False, progress: bool = False) -> Any:
    """Build and publish a new index version with its calibration (what ``kb index`` runs)."""
    return store.build(full=full, progress=progress, finalize=calibrator(store.settings, store.embedder))
