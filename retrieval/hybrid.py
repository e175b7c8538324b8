"""Reciprocal-rank fusion: merge ranked lists without calibrating their scores.

RRF (Cormack, Clarke & Büttcher 2009) scores an item by ``sum 1 / (k + rank)`` over the
lists it appears in (rank 1-based). Dense cosines and BM25 scores live on different
scales; ranks do not, which is why fusion works on ranks.
"""

from __future__ import annotations

from typing import Sequence

from knowledge.core.errors import ValidationError


def rrf(rankings: Sequence[Sequence[int]], k: int = 60) -> list[tuple[int, float]]:
    """Fuse ranked id lists (best first) into [(id, score)], best first.

    Ties are broken by the best rank an id reached, then by the id, so results are stable.

    >>> rrf([[1, 2, 3], [3, 1]], k=60)  # doctest: +ELLIPSIS
    [(1, 0.0325...), (3, 0.0322...), (2, 0.0161...)]
    """
    if k < 0:
        raise ValidationError(f"rrf k must be >= 0, got {k}")
    scores: dict[int, float] = {}
    best_rank: dict[int, int] = {}
    for ranking in rankings:
        seen: set[int] = set()
        for rank, item in enumerate(ranking, start=1):
            if item in seen:  # a list naming an id twice must not count it twice
                continue
            seen.add(item)
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
            best_rank[item] = min(best_rank.get(item, rank), rank)
    order = sorted(scores, key=lambda i: (-scores[i], best_rank[i], i))
    return [(i, scores[i]) for i in order]
