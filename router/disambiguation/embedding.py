"""Embedding disambiguator: which meaning of a term does its context talk about?

Each meaning gets one score on the cosine scale, the sum of

* **semantic fit**: cosine between the context (``query:``; the sentence with the term and a
  window around it, averaged) and the meaning (``passage:``; English long form + Chinese
  explanation, nudged towards its nearest glossary neighbours so ``Purchase Order`` carries
  some of ``Invoice``/``Accounts Payable`` with it);
* **lexical cue**: share of the meaning's own words (English stems, Chinese bigrams) present
  in the context (``项目启动会`` supports ``项目经理``);
* **domain cue**: share of *domain keywords* present in the context - words of the meaning's
  nearest glossary neighbours, found and weighted by embedding similarity (no hand-written
  keyword table);
* **co-occurring terms**: how close the meaning is to the meanings of the other glossary terms
  in the same context (``BN`` next to ``CNN`` is more likely batch normalization);
* **prior**: a small preference for meanings listed first in the glossary.

:class:`~router.disambiguation.base.Disambiguator` turns the scores into a decision and a
softmax confidence. The whole glossary's meanings are embedded once (lazily, or up front with
:meth:`EmbeddingDisambiguator.prepare`); contexts are embedded in batches.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from knowledge.core.types import GlossaryEntry, Meaning, TermMatch
from router.matching import find_terms, locate_term

from .base import Disambiguator, meaning_text
from .features import context_views, lexical_units, overlap, position_prior, weighted_overlap

if TYPE_CHECKING:  # pragma: no cover
    from knowledge.glossary import Glossary
    from retrieval.embedders import Embedder


def anchor(context: str, match: TermMatch) -> tuple[int, int]:
    """Where the match sits in ``context``: its own offsets when they fit, else the last place
    its surface occurs (a context may be earlier turns + the question the match came from),
    else the whole context.

    >>> m = TermMatch("PM", "PM", 0, 2, GlossaryEntry("PM", []))
    >>> anchor("PM负责", m), anchor("上一轮\\nPM负责", m), anchor("无关", m)
    ((0, 2), (4, 6), (0, 2))
    """
    if match.surface and context[match.start:match.end] == match.surface:
        return match.start, match.end
    found = context.rfind(match.surface) if match.surface else -1
    if found >= 0:
        return found, found + len(match.surface)
    return 0, len(context)


class MeaningTable:
    """Vectors, units and neighbours of every meaning in a glossary (built once).

    Rows are keyed by ``(term, meaning index)``; the same meaning text embeds once.
    """

    def __init__(self, embedder: "Embedder", entries: Sequence[GlossaryEntry], neighbours: int,
                 neighbour_weight: float, batch_size: int, progress: bool = False):
        self.keys: list[tuple[str, int]] = []
        self.row: dict[tuple[str, int], int] = {}
        self.units: list[set[str]] = []
        texts: list[str] = []
        for entry in entries:
            for i, meaning in enumerate(entry.meanings):
                self.row[(entry.term, i)] = len(self.keys)
                self.keys.append((entry.term, i))
                texts.append(meaning_text(meaning) or entry.term)
                self.units.append(lexical_units(meaning_text(meaning), exclude=(entry.term,)))
        unique = list(dict.fromkeys(texts))
        vectors = embedder.embed(unique, "passage", batch_size=batch_size, progress=progress)
        index = {t: i for i, t in enumerate(unique)}
        self.raw = vectors[[index[t] for t in texts]] if texts else np.zeros((0, embedder.dim), np.float32)
        self.vectors, self.keywords = self._with_neighbours(neighbours, neighbour_weight)

    def _with_neighbours(self, k: int, weight: float) -> tuple[np.ndarray, list[dict[str, float]]]:
        """Meaning vectors pulled towards their k nearest neighbours (other terms only), and
        the neighbours' words as similarity-weighted domain keywords."""
        n = len(self.keys)
        keywords: list[dict[str, float]] = [{} for _ in range(n)]
        if n < 2 or k <= 0:
            return self.raw, keywords
        term_ids = np.unique(np.array([t for t, _ in self.keys], dtype=object), return_inverse=True)[1]
        vectors = self.raw.copy()
        for lo in range(0, n, _BLOCK):   # blocks keep memory at _BLOCK x n for big glossaries
            sims = self.raw[lo:lo + _BLOCK] @ self.raw.T
            sims[term_ids[lo:lo + _BLOCK, None] == term_ids[None, :]] = -np.inf   # own meanings
            kk = min(k, n - 1)
            tops = np.argpartition(-sims, kk - 1, axis=1)[:, :kk]
            for r, top in enumerate(tops):
                i = lo + r
                top = top[np.isfinite(sims[r, top])]
                if len(top):
                    self._pull(i, top, sims[r, top], weight, vectors, keywords)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors.astype(np.float32), keywords

    def _pull(self, i: int, top: np.ndarray, sims: np.ndarray, weight: float, vectors: np.ndarray,
              keywords: list[dict[str, float]]) -> None:
        # Sharp weights: the closest neighbours dominate, distant ones barely count.
        w = np.exp((sims - sims.max()) / 0.02)
        w /= w.sum()
        vectors[i] = self.raw[i] + weight * (w[:, None] * self.raw[top]).sum(0)
        for j, wj in zip(top, w):
            for unit in self.units[j] - self.units[i]:
                keywords[i][unit] = max(keywords[i].get(unit, 0.0), float(wj))


_BLOCK = 1024


class EmbeddingDisambiguator(Disambiguator):
    """Scores meanings against the context with an :class:`~retrieval.embedders.Embedder`.

    ``EmbeddingDisambiguator(embedder, glossary)``. Without a glossary only the matched entry's
    own meanings are embedded (no neighbours, no co-occurring terms). Weights are on the cosine
    scale; :meth:`from_settings` takes them (and the margin) from ``router.disambiguation``.
    """

    name = "embedding"

    def __init__(self, embedder: "Embedder", glossary: "Glossary | None" = None, *,
                 window: int = 120, neighbours: int = 8, neighbour_weight: float = 0.3,
                 lexical_weight: float = 0.1, domain_weight: float = 0.02,
                 cooccurrence_weight: float = 1.0, prior_weight: float = 0.02,
                 temperature: float = 0.02, margin: float = 0.02, batch_size: int = 32, progress: bool = False):
        self.embedder = embedder
        self.margin = margin
        self.glossary = glossary
        self.window = window
        self.neighbours, self.neighbour_weight = neighbours, neighbour_weight
        self.lexical_weight, self.domain_weight = lexical_weight, domain_weight
        self.cooccurrence_weight, self.prior_weight = cooccurrence_weight, prior_weight
        self.temperature = temperature
        self.batch_size, self.progress = batch_size, progress
        self._table: MeaningTable | None = None
        self._table_sig: tuple[int, int] | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, embedder: "Embedder", glossary: "Glossary | None", settings: Any,
                      **kwargs: Any) -> "EmbeddingDisambiguator":
        """Weights from ``settings.router.disambiguation``, margin from ``router.ambiguity_margin``."""
        params = {**settings.router.disambiguation.model_dump(), "margin": settings.router.ambiguity_margin, **kwargs}
        return cls(embedder, glossary, **params)

    # -- the interface -----------------------------------------------------------------
    def score(self, context: str, term: str, meanings: list[Meaning]) -> list[float]:
        """Scores of ``meanings`` of ``term`` in ``context`` (the term is located in the text)."""
        entry = self._entry_for(term, meanings)
        return self.score_batch([(context, locate_term(context, term, entry))])[0]

    def score_batch(self, items: list[tuple[str, TermMatch]]) -> list[list[float]]:
        """Scores for many ``(context, match)`` pairs; contexts are embedded in batches."""
        if not items:
            return []
        table = self._table_for([m.entry for _, m in items])
        views = [context_views(ctx, *anchor(ctx, m), self.window) for ctx, m in items]
        unique = list(dict.fromkeys(v for vs in views for v in vs))
        vecs = self.embedder.embed(unique, "query", batch_size=self.batch_size, progress=self.progress)
        at = {t: i for i, t in enumerate(unique)}
        return [self._score_one(ctx, m, vecs[[at[v] for v in vs]], table)
                for (ctx, m), vs in zip(items, views)]

    def prepare(self, progress: bool | None = None) -> None:
        """Embed the glossary's meanings now rather than at the first ambiguous term."""
        if self.glossary is not None:
            self._table_for([], progress=self.progress if progress is None else progress)

    # -- scoring -------------------------------------------------------------------------
    def _score_one(self, context: str, match: TermMatch, view_vecs: np.ndarray,
                   table: MeaningTable) -> list[float]:
        entry = match.entry
        rows = [table.row[(entry.term, i)] for i in range(len(entry.meanings))]
        semantic = (table.vectors[rows] @ view_vecs.T).mean(axis=1)
        ctx_units = lexical_units(context, exclude=(match.surface, entry.term))
        lexical = np.array([overlap(ctx_units, table.units[r]) for r in rows])
        domain = np.array([weighted_overlap(ctx_units, table.keywords[r]) for r in rows])
        prior = np.array([position_prior(i) for i in range(len(rows))])
        scores = (semantic + self.lexical_weight * lexical + self.domain_weight * domain
                  + self.prior_weight * prior + self.cooccurrence_weight * self._cooccurrence(
                      context, match, rows, table))
        return [float(s) for s in scores]

    def _cooccurrence(self, context: str, match: TermMatch, rows: list[int],
                      table: MeaningTable) -> np.ndarray:
        """Mean over the other glossary terms in the context of the best similarity between
        each candidate meaning and that term's meanings (0 when there are none)."""
        if self.glossary is None or self.cooccurrence_weight == 0:
            return np.zeros(len(rows))
        others = {m.term for m in find_terms(context, self.glossary)} - {match.term}
        support = []
        for term in sorted(others):
            entry = self.glossary.get(term)
            found = [table.row.get((term, i)) for i in range(len(entry.meanings))] if entry else []
            other_rows = [r for r in found if r is not None]
            if other_rows:
                support.append((table.raw[rows] @ table.raw[other_rows].T).max(axis=1))
        if not support:
            return np.zeros(len(rows))
        support_mean = np.mean(support, axis=0)
        return support_mean - support_mean.max()   # only differences between meanings matter

    # -- the meaning table ---------------------------------------------------------------
    def _table_for(self, entries: list[GlossaryEntry], progress: bool = False) -> MeaningTable:
        """The glossary-wide table (rebuilt when the glossary grows), or a table of just
        ``entries`` when there is no glossary or an entry is not in it."""
        with self._lock:
            if self.glossary is not None:
                sig = (len(self.glossary), sum(len(e.meanings) for e in self.glossary))
                if self._table is None or self._table_sig != sig:
                    self._table = self._build(list(self.glossary), progress)
                    self._table_sig = sig
                if all(self.glossary.get(e.term) is e for e in entries):
                    return self._table
        unique = list({id(e): e for e in entries}.values())
        return self._build(unique, progress, neighbours=0)

    def _build(self, entries: list[GlossaryEntry], progress: bool, neighbours: int | None = None
               ) -> MeaningTable:
        k = self.neighbours if neighbours is None else neighbours
        return MeaningTable(self.embedder, entries, k, self.neighbour_weight, self.batch_size,
                            progress or self.progress)

    def _entry_for(self, term: str, meanings: list[Meaning]) -> GlossaryEntry:
        if self.glossary is not None:
            entry = self.glossary.get(term)
            if entry is not None and list(entry.meanings) == list(meanings):
                return entry
        return GlossaryEntry(term=term, meanings=list(meanings))

    def describe(self) -> dict[str, Any]:
        """Settings worth recording beside results (benchmarks, manifests)."""
        return {"name": self.name, "embedder": self.embedder.describe(), "window": self.window,
                "neighbours": self.neighbours, "neighbour_weight": self.neighbour_weight,
                "lexical_weight": self.lexical_weight, "domain_weight": self.domain_weight,
                "cooccurrence_weight": self.cooccurrence_weight, "prior_weight": self.prior_weight,
                "temperature": self.temperature, "margin": self.margin}
