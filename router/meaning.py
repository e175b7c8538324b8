"""Meaning: which sentences of the passages say what a question asks, and which words of the
knowledge base mean what the question's everyday or foreign words mean — by embeddings, not by
shared words.

Word overlap cannot see that 「年假有几天？」 asks what 「年休假5天」 answers, that 工资条 is the
documents' 薪资明细, or that "annual leave" is 年休假. Two things computed at index time (see
:func:`build_meaning`) let the evidence reader see it:

* **unit vectors** — every sentence, list item and table row of the knowledge base (the units of
  :func:`router.evidence.split_units`), embedded as passages with their heading. At question time a
  unit's *meaning score* is its cosine to the question, measured against the question's background
  (the median cosine to all units) in units of this knowledge base's own spread (fitted on its
  probe questions, stored in the manifest);
* **vocabulary vectors** — the words the knowledge base uses (its lexical index's vocabulary). A
  question word the knowledge base never uses is *explained* by its nearest vocabulary word when
  that word is also in a unit that means what the question asks: 年假 → 年休假, 报销 → 费用核销,
  "annual leave" → 年休假. A word with no such equivalent stays absent (健身房 in a knowledge base
  without one), and a missing sibling (丧假 where 婚假 and 产假 are covered) is decided before any of
  this, by :mod:`router.evidence`.

Vectors are reused from the previous version for unchanged units (keyed by a hash of their text), so
an incremental reindex embeds only what changed.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from config.lexicon import lexicon
from knowledge.core.files import atomic_write
from router.bilingual import bilingual
from router.evidence import _CJK_RE, _units_cached, content_terms

__all__ = ["Meaning", "MeaningCalibration", "build_meaning", "meaning_of", "unit_key", "vocabulary"]

UNIT_VECTORS = "unit_vectors.npy"
UNIT_KEYS = "unit_keys.json"
VOCAB_VECTORS = "vocab_vectors.npy"
VOCAB = "vocab.json"


def unit_key(unit: Any) -> str:
    """Stable key of a unit's text with its context (the same sentence under another heading is
    another unit).

    >>> class U: text, context = "婚假3天。", "请假 > 婚假"
    >>> unit_key(U()) == unit_key(U()), len(unit_key(U()))
    (True, 16)
    """
    return hashlib.sha1(f"{unit.context}\x1f{unit.text}".encode("utf-8")).hexdigest()[:16]


def unit_embedding_text(unit: Any) -> str:
    """What a unit is embedded as: its nearest heading, then the unit itself.

    >>> class U: text, context = "年休假5天。", "员工手册 > 第三章 休假 | 年休假规定如下："
    >>> unit_embedding_text(U())
    '第三章 休假：年休假5天。'
    """
    heading = unit.context.split(" | ")[0].split(" > ")[-1].strip() if unit.context else ""
    return f"{heading}：{unit.text}" if heading else unit.text


_NUMERIC = re.compile(r"^[\d.,%\-]+$")


def vocabulary(terms: Iterable[tuple[str, int]], limit: int) -> list[str]:
    """The words worth mapping a question's word onto: Chinese words of two or more characters and
    Latin words of three or more letters, most frequent first, without numbers or question words.

    >>> vocabulary([("年休假", 3), ("的", 90), ("12", 4), ("hr", 2), ("policy", 5), ("多少", 9)], 10)
    ['policy', '年休假']
    """
    qwords = lexicon().question_words
    keep = []
    for term, df in terms:
        t = term.strip().lower()
        if not t or t in qwords or _NUMERIC.match(t):
            continue
        if _CJK_RE.search(t):
            if len(t) < 2:
                continue
        elif len(t) < 3 or not re.match(r"^[a-z][a-z0-9\-]*$", t):
            continue
        keep.append((df, t))
    keep.sort(key=lambda x: (-x[0], x[1]))
    return [t for _, t in keep[:limit]]


@dataclass
class MeaningCalibration:
    """How far above its background a unit that answers a question stands, on this knowledge base."""

    scale: float = 0.04            # typical margin of the best answering unit over the background
    source: str = "default"
    probes: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"scale": self.scale, "source": self.source, "probes": self.probes}


@dataclass
class Meaning:
    """The unit and vocabulary vectors of one index version, with its calibration."""

    unit_keys: dict[str, int]
    unit_vectors: np.ndarray
    vocab: list[str]
    vocab_vectors: np.ndarray
    calibration: MeaningCalibration = field(default_factory=MeaningCalibration)

    @classmethod
    def load(cls, path: Path, manifest: dict[str, Any] | None = None) -> "Meaning | None":
        path = Path(path)
        if not (path / UNIT_VECTORS).is_file() or not (path / UNIT_KEYS).is_file():
            return None
        keys = json.loads((path / UNIT_KEYS).read_text(encoding="utf-8"))
        vectors = np.load(path / UNIT_VECTORS)
        vocab = json.loads((path / VOCAB).read_text(encoding="utf-8")) if (path / VOCAB).is_file() else []
        vv = np.load(path / VOCAB_VECTORS) if (path / VOCAB_VECTORS).is_file() else np.zeros((0, vectors.shape[1]),
                                                                                              dtype=np.float32)
        if len(keys) != len(vectors) or len(vocab) != len(vv):
            return None
        cal = ((manifest or {}).get("meaning") or {})
        calibration = MeaningCalibration(**{k: v for k, v in cal.items() if k in ("scale", "source", "probes")})
        return cls({k: i for i, k in enumerate(keys)}, vectors, vocab, vv, calibration)

    def background(self, qvec: np.ndarray, sample: int = 4096) -> float:
        """Median cosine of the question to the knowledge base's units (an even sample above ``sample``)."""
        vectors = self.unit_vectors
        if len(vectors) == 0:
            return 0.0
        if len(vectors) > sample:
            vectors = vectors[:: max(1, len(vectors) // sample)]
        return float(np.median(vectors @ qvec))

    def unit_scores(self, qvec: np.ndarray, units: list[Any]) -> list[float | None]:
        """Each unit's margin over the background in units of the calibrated scale (None: no vector)."""
        bg = self.background(qvec)
        scale = max(self.calibration.scale, 1e-3)
        out: list[float | None] = []
        for u in units:
            row = self.unit_keys.get(unit_key(u))
            out.append(None if row is None else float(self.unit_vectors[row] @ qvec - bg) / scale)
        return out

    def nearest_words(self, vector: np.ndarray, k: int = 3) -> list[tuple[str, float]]:
        """The knowledge base's words nearest to ``vector`` (a query-side embedding of a word)."""
        if len(self.vocab_vectors) == 0:
            return []
        sims = self.vocab_vectors @ vector
        top = np.argsort(-sims)[:k]
        return [(self.vocab[i], float(sims[i])) for i in top]


def meaning_of(index: Any) -> Meaning | None:
    """The :class:`Meaning` of an index version, loaded once and kept on it (None: built without)."""
    if hasattr(index, "_meaning"):
        return index._meaning
    path = getattr(index, "path", None)
    meaning = Meaning.load(path, getattr(index, "manifest", {})) if path is not None else None
    try:
        index._meaning = meaning
    except AttributeError:  # pragma: no cover - slotted test doubles
        pass
    return meaning


def _previous_vectors(previous: Path | None, dim: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Unit and word vectors of the previous version, by key, to reuse for unchanged text."""
    units: dict[str, np.ndarray] = {}
    words: dict[str, np.ndarray] = {}
    if previous is None:
        return units, words
    old = Meaning.load(previous)
    if old is None or old.unit_vectors.shape[1:] != (dim,):
        return units, words
    for k, i in old.unit_keys.items():
        units[k] = old.unit_vectors[i]
    for i, w in enumerate(old.vocab):
        words[w] = old.vocab_vectors[i]
    return units, words


def _embed_missing(embedder: Any, texts: list[str], keys: list[str], known: dict[str, np.ndarray], kind: str,
                   progress: bool) -> np.ndarray:
    out = np.zeros((len(texts), embedder.dim), dtype=np.float32)
    todo = [i for i, k in enumerate(keys) if k not in known]
    for i, k in enumerate(keys):
        if k in known:
            out[i] = known[k]
    if todo:
        vecs = embedder.embed([texts[i] for i in todo], kind, progress=progress)
        for j, i in enumerate(todo):
            out[i] = vecs[j]
    return out


def build_meaning(index: Any, settings: Any, previous: Path | None = None, progress: bool = False) -> dict[str, Any]:
    """Embed the units and the vocabulary of a freshly built version into its folder; return the
    manifest fields (``{"meaning": {...}}``), with the scale fitted later by :func:`fit_scale`."""
    cfg = settings.router.meaning
    embedder = index.embedder
    units, seen = [], set()
    for chunk in getattr(index, "chunks", []) or []:
        for u in _units_cached(chunk):
            key = unit_key(u)
            if key not in seen:
                seen.add(key)
                units.append(u)
    keys = [unit_key(u) for u in units]
    old_units, old_words = _previous_vectors(previous, embedder.dim)
    unit_vecs = _embed_missing(embedder, [unit_embedding_text(u) for u in units], keys, old_units, "passage", progress)
    bm25 = getattr(index, "bm25", None)
    frequencies = getattr(bm25, "document_frequencies", None)
    terms = list(frequencies().items()) if frequencies is not None else []
    vocab = vocabulary(terms, cfg.vocab_limit)
    vocab_vecs = _embed_missing(embedder, vocab, vocab, old_words, "passage", progress)
    path = Path(index.path)
    _save_npy(path / UNIT_VECTORS, unit_vecs)
    atomic_write(path / UNIT_KEYS, json.dumps(keys).encode("utf-8"))
    _save_npy(path / VOCAB_VECTORS, vocab_vecs)
    atomic_write(path / VOCAB, json.dumps(vocab, ensure_ascii=False).encode("utf-8"))
    return {"units": len(keys), "vocab": len(vocab), "reused_units": sum(k in old_units for k in keys)}


def _save_npy(path: Path, array: np.ndarray) -> None:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array, dtype=np.float32))
    atomic_write(path, buf.getvalue())


def fit_scale(margins: list[float], floor: float = 0.01) -> MeaningCalibration:
    """The calibration from the best-unit margins of this knowledge base's answerable probes: their
    median is what "a unit that answers" looks like here.

    >>> fit_scale([0.05, 0.06, 0.04, 0.07, 0.05]).scale
    0.05
    >>> fit_scale([0.05]).source
    'default (too few probes)'
    """
    if len(margins) < 5:
        return MeaningCalibration(source="default (too few probes)", probes=len(margins))
    m = sorted(margins)[len(margins) // 2]
    return MeaningCalibration(scale=round(max(floor, m), 4), source="index", probes=len(margins))


def co_hyponyms(a: str, b: str) -> bool:
    """Two Chinese words naming different kinds of one thing: the same head (last character) with
    a modifier of ``a`` that ``b`` lacks (丧假 / 病假), as opposed to a short and a long form of one
    word (年假 / 年休假).

    >>> co_hyponyms("丧假", "病假"), co_hyponyms("年假", "年休假"), co_hyponyms("工资条", "薪资明细")
    (True, False, False)
    """
    if not (_CJK_RE.search(a) and _CJK_RE.search(b)) or a[-1] != b[-1]:
        return False
    return any(ch not in b for ch in a[:-1])


def latin_phrases(question: str) -> list[str]:
    """Adjacent pairs of a question's Latin content words ("annual leave"), which name a concept
    better than either word alone.

    >>> latin_phrases("How many days of annual leave do I get?")
    ['annual leave']
    """
    words = [w for w in content_terms(question) if re.match(r"^[a-z]", w)]
    out = []
    tokens = re.findall(r"[A-Za-z][A-Za-z0-9\-]*", question.lower())
    for a, b in zip(tokens, tokens[1:]):
        if a in words and b in words:
            out.append(f"{a} {b}")
    return out


class MeaningReader:
    """What :func:`router.evidence.gather` asks of the embeddings for one index: meaning scores of
    units, and the documents' word for a question word they never use.

    The cut-offs are settings (``router.meaning``) on scales fitted per knowledge base: a unit's
    score is in units of this knowledge base's typical answering margin, and a word's closeness is
    measured against how close the same word is to the rest of this knowledge base's vocabulary.
    """

    def __init__(self, index: Any, meaning: Meaning, cfg: Any):
        self.index, self.meaning, self.cfg = index, meaning, cfg
        self.weight = cfg.unit_weight
        self.top_units = cfg.top_units
        self.min_score = cfg.min_unit_score

    @classmethod
    def for_index(cls, index: Any, settings: Any) -> "MeaningReader | None":
        cfg = settings.router.meaning
        if not cfg.enabled:
            return None
        meaning = meaning_of(index)
        return cls(index, meaning, cfg) if meaning is not None else None

    def coverage(self, score: float) -> float:
        """The share of a question a unit covers, read from its meaning score alone (for a question
        in another language than the documents): 0 at the background, 1 at ``full_score``.

        >>> class C: full_score = 2.0
        >>> r = MeaningReader.__new__(MeaningReader); r.cfg = C()
        >>> r.coverage(-0.5), r.coverage(1.0), r.coverage(3.0)
        (0.0, 0.5, 1.0)
        """
        return max(0.0, min(1.0, score / max(self.cfg.full_score, 1e-6)))

    def unit_scores(self, question: str, units: list[Any]) -> list[float | None]:
        return self.meaning.unit_scores(self.index.query_vector(question), units)

    def word_closeness(self, word: str) -> list[tuple[str, float]]:
        """The nearest vocabulary words to ``word`` with their closeness: how many spreads of this
        word's similarities to the whole vocabulary the word stands above their median."""
        vv = self.meaning.vocab_vectors
        if len(vv) < 2:
            return []
        sims = vv @ self.index.query_vector(word)
        med = float(np.median(sims))
        spread = float(np.percentile(sims, 75) - np.percentile(sims, 25)) or 1e-3
        top = np.argsort(-sims)[: self.cfg.neighbours]
        return [(self.meaning.vocab[i], (float(sims[i]) - med) / spread) for i in top]

    def equivalents(self, question: str, unknown: list[str], top_texts: list[str],
                    kb_lang: str = "") -> dict[str, str]:
        """``{question word: the documents' word}`` for the unknown words whose near vocabulary word
        occurs in one of ``top_texts`` (the units that mean most nearly what the question asks).

        A word in the other language than the documents (``kb_lang``) is looked up in the
        bilingual lexicon first (:mod:`router.bilingual`): hotel -> 酒店, annual leave -> 年假 and,
        one step on by meaning, -> 年休假.
        """
        if not unknown or not top_texts:
            return {}
        out: dict[str, str] = {}
        latin = [t for t in unknown if re.match(r"^[a-z]", t)]
        phrases = [p for p in latin_phrases(question) if all(w in latin for w in p.split())] if latin else []
        for t in [*phrases, *unknown]:
            if t in out:
                continue
            foreign = kb_lang and (kb_lang == "zh") == bool(re.match(r"^[a-z]", t))
            w = (self._translated(t, kb_lang, top_texts) if foreign else None) or self._nearest_in(t, top_texts)
            if w:
                out[t] = w
                for part in t.split() if " " in t else ():
                    out.setdefault(part, w)
        return out

    def _nearest_in(self, word: str, top_texts: list[str]) -> str | None:
        """The nearest vocabulary word to ``word`` (close enough) that the top units hold."""
        for w, closeness in self.word_closeness(word):
            if closeness < self.cfg.min_word_closeness:
                return None
            # a part of the word is not its equivalent (加班 drops what 加班费 adds to it), nor is
            # another kind of the same thing (病假 for 丧假)
            if w != word and w not in word and not co_hyponyms(word, w) and any(w in text for text in top_texts):
                return w
        return None

    def _translated(self, word: str, kb_lang: str, top_texts: list[str]) -> str | None:
        """The documents' word for a word of the other language: a dictionary translation the top
        units hold, or one meaning-step from such a translation (年假 -> 年休假)."""
        lexicon_ = bilingual()
        if lexicon_ is None:
            return None
        if kb_lang == "zh":
            candidates = [c for c in lexicon_.chinese(word) if len(c) >= 2][:8]
            for c in candidates:
                if any(c in text for text in top_texts):
                    return c
            for c in candidates[:3]:
                near = self._nearest_in(c, top_texts)
                if near:
                    return near
            return None
        for gloss in lexicon_.english(word)[:8]:
            pattern = re.compile(rf"(?<![a-z]){re.escape(gloss)}(?![a-z])")
            if any(pattern.search(text) for text in top_texts):
                return gloss
        return None
