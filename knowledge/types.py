"""The shared data records under their original import path (they live in :mod:`knowledge.core.types`).

Kept for code outside this repository that imports ``knowledge.types``; the project imports
``knowledge.core.types``.
"""

from knowledge.core.types import (  # noqa: F401
    Block,
    Chunk,
    Fact,
    GlossaryEntry,
    LoadedDocument,
    Meaning,
    Quantity,
    SkippedRow,
    TermMatch,
    TermResolution,
)

__all__ = ["Block", "Chunk", "Fact", "GlossaryEntry", "LoadedDocument", "Meaning", "Quantity", "SkippedRow",
           "TermMatch", "TermResolution"]
