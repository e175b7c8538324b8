"""Okapi BM25 over a sparse term matrix, with jieba word segmentation for Chinese.

Implemented here (numpy + scipy.sparse) rather than taken from a package so the scoring is
exactly what the docstrings say and the index saves/loads without pickles.

Scoring, for a query's distinct terms t and a document d::

    idf(t)   = ln(1 + (N - df(t) + 0.5) / (df(t) + 0.5))        # never negative
    bm25(d)  = sum_t idf(t) * tf(t,d) * (k1 + 1) / (tf(t,d) + k1 * (1 - b + b * |d| / avgdl))

Repeating a word in the query does not count it twice, so a rewritten query that spells
out an abbreviation next to itself ("客户经理（AM）") does not distort the ranking.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import unicodedata
from collections import Counter
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from knowledge.core.errors import IndexNotFoundError, KBError

K1 = 1.5
B = 0.75

# CJK ideographs go to jieba; Latin words and numbers ("1.5", "v2", "covid-19" -> 2 tokens)
# are taken whole. Everything else (punctuation, symbols, spaces) separates tokens.
_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_TOKEN_RE = re.compile(rf"([{_CJK}]+)|([A-Za-z0-9]+(?:\.[0-9]+)*)")
_THOUSANDS_RE = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")

# Function words carry no topic. They matter more than usual here: in a mostly Chinese
# corpus the few English passages make even "the" rare, so without this list an English
# question's BM25 hits are whichever chunks happen to contain English grammar words.
STOPWORDS = frozenset(
    """a about above after again against all am an and any are as at be because been before
    being below between both but by can could did do does doing down during each few for from
    further had has have having he her here hers him his how i if in into is it its itself
    just me more most my no nor not of off on once only or other our ours out over own same
    she should so some such than that the their theirs them then there these they this those
    through to too under until up very was we were what when where which while who whom why
    will with would you your yours
    的 了 吗 呢 吧 啊 么 是 在 和 与 及 或 把 被 让 给 都 也 就 还 又 要 有 没有 什么 怎么
    怎样 如何 哪些 哪个 哪里 多少 是否 为什么 请问 一下 以及 这个 那个 这些 那些""".split()
)

_jieba_lock = threading.Lock()
_jieba_ready = False


def _jieba():  # type: ignore[no-untyped-def]
    """jieba, initialised once and quietly (its INFO log lines would spam the console)."""
    global _jieba_ready
    import jieba  # deferred: heavy: jieba's dictionary takes about 1 s to load

    if not _jieba_ready:
        with _jieba_lock:
            if not _jieba_ready:
                jieba.setLogLevel(logging.WARNING)
                jieba.initialize()
                _jieba_ready = True
    return jieba


def tokenize(text: str) -> list[str]:
    """Lower-cased search tokens: jieba search-mode words for Chinese, whole Latin words and
    numbers, no punctuation, no :data:`STOPWORDS`. Full-width characters are folded first.

    >>> tokenize("ＡＭ负责差旅费报销，10,000元 per Trip!")
    ['am', '负责', '差旅', '旅费', '差旅费', '报销', '10000', '元', 'per', 'trip']
    >>> tokenize("What is the hotel limit? Ask IT.")
    ['hotel', 'limit', 'ask', 'it']
    """
    text = _THOUSANDS_RE.sub("", unicodedata.normalize("NFKC", text))
    tokens: list[str] = []
    for match in _TOKEN_RE.finditer(text):
        cjk, word = match.groups()
        if word:
            lower = word.lower()
            # An all-caps word is an abbreviation (AM, IT), not the stopword it spells.
            if lower not in STOPWORDS or (word.isupper() and len(word) > 1):
                tokens.append(lower)
        else:
            # Search mode adds the shorter words inside long ones (差旅费 -> 差旅, 差旅费),
            # so a query for 差旅 still finds 差旅费.
            tokens.extend(t for t in _jieba().lcut_for_search(cjk) if t.strip() and t not in STOPWORDS)
    return tokens


class BM25Index:
    """BM25 over documents identified by int64 ids (the store uses chunk row numbers)."""

    def __init__(self, k1: float = K1, b: float = B):
        self.k1, self.b = k1, b
        self.ids = np.zeros(0, dtype=np.int64)
        self.vocab: dict[str, int] = {}
        self._tf = None  # scipy CSR (docs x terms) raw term counts
        self._weights = None  # scipy CSC (docs x terms) BM25 term weights
        self._row: dict[int, int] = {}

    # -- building ------------------------------------------------------------------------
    def build(
        self,
        ids: Sequence[int] | np.ndarray,
        texts: Iterable[str] | None = None,
        tokens: Sequence[Sequence[str]] | None = None,
    ) -> "BM25Index":
        """Index ``texts`` (or already tokenised ``tokens``) under ``ids``; returns self."""
        from scipy import sparse  # deferred: heavy: scipy, BM25 matrices only

        if tokens is None:
            tokens = [tokenize(t) for t in (texts or [])]
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        if len(ids) != len(tokens):
            raise KBError(f"BM25Index.build: {len(ids)} ids for {len(tokens)} documents")
        vocab: dict[str, int] = {}
        rows, cols, counts = [], [], []
        for row, doc in enumerate(tokens):
            for term, count in Counter(doc).items():
                rows.append(row)
                cols.append(vocab.setdefault(term, len(vocab)))
                counts.append(count)
        tf = sparse.csr_matrix(
            (np.asarray(counts, np.float32), (np.asarray(rows, np.int64), np.asarray(cols, np.int64))),
            shape=(len(ids), len(vocab)),
        )
        self._set(ids, vocab, tf)
        return self

    def _set(self, ids: np.ndarray, vocab: dict[str, int], tf) -> None:  # type: ignore[no-untyped-def]
        self.ids, self.vocab, self._tf = ids, vocab, tf.tocsr()
        self._row = {int(i): r for r, i in enumerate(ids.tolist())}
        self._weights = self._bm25_weights(self._tf)

    def _bm25_weights(self, tf):  # type: ignore[no-untyped-def]
        """Precompute each (doc, term) contribution so a query is a column sum."""
        n_docs = tf.shape[0]
        doc_len = np.asarray(tf.sum(axis=1)).reshape(-1)
        avgdl = float(doc_len.mean()) if n_docs and doc_len.mean() > 0 else 1.0
        df = np.bincount(tf.indices, minlength=tf.shape[1]).astype(np.float64)
        idf = np.log1p((n_docs - df + 0.5) / (df + 0.5))
        weights = tf.copy().astype(np.float64)
        row_of_value = np.repeat(np.arange(n_docs), np.diff(tf.indptr))
        norm = self.k1 * (1 - self.b + self.b * doc_len[row_of_value] / avgdl)
        weights.data = idf[tf.indices] * tf.data * (self.k1 + 1) / (tf.data + norm)
        return weights.astype(np.float32).tocsc()

    # -- querying --------------------------------------------------------------------------
    def search(self, query: str, k: int) -> list[tuple[int, float]]:
        """The ``k`` best documents with a positive score, best first: [(id, score), ...]."""
        scores = self._all_scores(query)
        if scores is None or k <= 0:
            return []
        hits = np.flatnonzero(scores > 0)
        if len(hits) > k:
            hits = hits[np.argpartition(-scores[hits], k - 1)[:k]]
        # Ties broken by id so results are reproducible.
        order = sorted(hits.tolist(), key=lambda r: (-scores[r], int(self.ids[r])))
        return [(int(self.ids[r]), float(scores[r])) for r in order]

    def score_ids(self, query: str, ids: Sequence[int]) -> np.ndarray:
        """BM25 scores of the given documents for ``query`` (0 for unknown ids)."""
        scores = self._all_scores(query)
        rows = [self._row.get(int(i)) for i in ids]
        if scores is None:
            return np.zeros(len(rows), dtype=np.float32)
        return np.array([scores[r] if r is not None else 0.0 for r in rows], dtype=np.float32)

    def _all_scores(self, query: str) -> np.ndarray | None:
        if self._weights is None or not len(self.ids):
            return None
        cols = sorted({self.vocab[t] for t in tokenize(query) if t in self.vocab})
        if not cols:
            return np.zeros(len(self.ids), dtype=np.float32)
        return np.asarray(self._weights[:, cols].sum(axis=1)).reshape(-1)

    def tokens_of(self, doc_id: int) -> list[str]:
        """The indexed tokens of one document (order lost, counts kept) — lets the store
        carry unchanged documents into a new version without segmenting them again."""
        row = self._row.get(int(doc_id))
        if row is None:
            raise KBError(f"BM25 index has no document with id {doc_id}")
        terms = self.terms
        start, end = self._tf.indptr[row], self._tf.indptr[row + 1]
        out: list[str] = []
        for col, count in zip(self._tf.indices[start:end], self._tf.data[start:end]):
            out.extend([terms[col]] * int(count))
        return out

    def document_frequencies(self) -> dict[str, int]:
        """How many documents hold each indexed term (the ``df`` of the idf formula)."""
        if self._tf is None or not len(self.vocab):
            return {}
        df = np.bincount(self._tf.indices, minlength=len(self.vocab))
        return {term: int(df[col]) for term, col in self.vocab.items()}

    @property
    def terms(self) -> list[str]:
        terms = [""] * len(self.vocab)
        for term, col in self.vocab.items():
            terms[col] = term
        return terms

    def __len__(self) -> int:
        return len(self.ids)

    # -- persistence -----------------------------------------------------------------------
    def save(self, directory: Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tf = self._tf
        if tf is None:
            from scipy import sparse  # deferred: heavy: scipy, BM25 matrices only

            tf = sparse.csr_matrix((0, 0), dtype=np.float32)
        np.savez(
            directory / "bm25.npz", ids=self.ids, data=tf.data.astype(np.float32),
            indices=tf.indices, indptr=tf.indptr, shape=np.asarray(tf.shape, np.int64),
        )
        meta = {"k1": self.k1, "b": self.b, "terms": self.terms}
        (directory / "bm25.json").write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, directory: Path) -> "BM25Index":
        from scipy import sparse  # deferred: heavy: scipy, BM25 matrices only

        directory = Path(directory)
        if not (directory / "bm25.npz").is_file():
            raise IndexNotFoundError(f"no BM25 index in {directory} (bm25.npz missing)")
        meta = json.loads((directory / "bm25.json").read_text(encoding="utf-8"))
        arrays = np.load(directory / "bm25.npz")
        tf = sparse.csr_matrix(
            (arrays["data"], arrays["indices"], arrays["indptr"]), shape=tuple(arrays["shape"])
        )
        index = cls(k1=meta["k1"], b=meta["b"])
        index._set(arrays["ids"].astype(np.int64), {t: i for i, t in enumerate(meta["terms"])}, tf)
        return index
