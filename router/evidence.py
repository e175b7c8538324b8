"""Evidence: which sentences and table rows of the retrieved passages bear on a question, and how
well the knowledge base covers what the question asks about.

Cosine similarity says a passage is *about the same area*; it cannot tell "丧假有几天" (the leave
rules cover 婚假, 产假, 病假 but not 丧假) from "婚假有几天". What a reader checks is whether the
question's words are there. So:

* a question is cut into its **content terms** (jieba words and Latin words, without the words that
  only shape a question, see ``config/lexicon.yaml``), each weighted by its idf in this knowledge
  base — a term the knowledge base never uses weighs most;
* every retrieved chunk is cut into **units** — sentences, list items, table rows — each read with
  its context (heading path, the line that introduces a list or table);
* a unit's **coverage** is the idf-weighted share of the question's terms it contains;
* terms the knowledge base never uses are **absent**; an absent term whose head the knowledge base
  uses with other modifiers (丧假 where 婚假 and 产假 exist, 四级手术 where 一级…三级手术 exist, SEV4
  where SEV1…SEV3 exist) names a **missing sibling**: the near-topic question the documents do not
  answer.

:func:`gather` returns an :class:`Evidence` with the ranked units and these measurements; the router
decides from them, the answer composers quote from them.
"""

from __future__ import annotations

import math
import re
import threading
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Iterable

from config.lexicon import lexicon
from knowledge.core.memo import BoundedMemo
from knowledge.numbers import extract_quantities
from knowledge.rules import quantity_spans
from knowledge.text_utils import HAN, HAN_RE
from retrieval.bm25 import _jieba as shared
from collections import Counter
from retrieval.bm25 import tokenize

__all__ = ["Evidence", "KBTerms", "Unit", "content_terms", "gather", "kb_terms", "split_units"]

_CJK, _CJK_RE = HAN, HAN_RE
# A short Latin or numeric label glued to a classifier is one term: A类, C级, 3C类, B2区.
_LABEL = "[类级档型号区组等]"
_RUN_RE = re.compile(rf"((?<![A-Za-z0-9])[A-Za-z0-9]{{1,3}}{_LABEL}|[{_CJK}]+)|([A-Za-z][A-Za-z0-9&+\-]*[A-Za-z0-9]|[A-Za-z])"
                     rf"|(\d+(?:\.\d+)?)")
_LABEL_RE = re.compile(rf"^[A-Za-z0-9]{{1,3}}{_LABEL}$")
_RECORD_FIELD = re.compile(r"(?P<key>[^；;:：\n|]{1,30})[:：]\s*(?P<val>[^；;\n|]*)")
_SENT_SPLIT = re.compile(r"(?<=[。！？!?；;])|(?<=[.])(?=\s+[A-Z(\"'])|\n+")
_ITEM_RE = re.compile(r"^\s*(?:[（(][一二三四五六七八九十\d]{1,3}[)）]|\d{1,2}[.、)）](?!\d)|[一二三四五六七八九十]{1,3}、|[-•·*]\s)")
_HEADING_RE = re.compile(r"^\s*(第[一二三四五六七八九十百零\d]+[章节编部分]|[\d.]+\s*\S{0,20}$|#+\s)")
_ORDINAL_RE = re.compile(r"^(?P<num>[一二三四五六七八九十两\d]+|[A-Za-z]+(?=\d))(?P<rest>.+)$")
_LATIN_FAMILY_RE = re.compile(r"^(?P<stem>[a-z]+)(?P<num>\d+)$")


def _norm(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold()


@lru_cache(maxsize=1)
def _jieba():  # type: ignore[no-untyped-def]

    return shared()


def _stems(word: str) -> list[str]:
    """A Latin word and its plain inflections' stems (no dictionary: enough to match days/day).

    >>> _stems("policies"), _stems("days"), _stems("approved")
    (['policies', 'policy'], ['days', 'day'], ['approved', 'approve', 'approv'])
    """
    out = [word]
    if len(word) > 4 and word.endswith("ies"):
        out.append(word[:-3] + "y")
    elif len(word) > 3 and word.endswith("es") and word[-3] in "sxz":
        out.append(word[:-2])
    elif len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        out.append(word[:-1])
    elif len(word) > 4 and word.endswith("ed"):
        out += [word[:-1], word[:-2]]
    elif len(word) > 5 and word.endswith("ing"):
        out += [word[:-3], word[:-3] + "e"]
    return out


def content_terms(text: str) -> list[str]:
    """The words of ``text`` that name what it is about, in order, without repeats.

    Chinese runs are cut by jieba (a lone character is joined to its neighbour, so an unknown
    compound such as 丧假 stays whole); Latin words are lower-cased; numbers are left to the
    quantity checks; the lexicon's question words are dropped.

    >>> content_terms("员工丧假有几天？")
    ['员工', '丧假']
    >>> content_terms("What's the laptop budget for L3 engineers?")
    ['laptop', 'budget', 'l3', 'engineers']
    >>> content_terms("A类人员在一类城市住宿每晚多少？")
    ['a类', '人员', '一类', '城市', '住宿', '每晚']
    """
    qwords = lexicon().question_words
    out: list[str] = []
    for cjk, word, _num in _RUN_RE.findall(unicodedata.normalize("NFKC", text)):
        if word:
            w = word.lower().strip("-")
            if w.endswith("'s"):
                w = w[:-2]
            if w and w not in qwords and len(w) > 1 or (w.isupper() and w):
                out.append(w)
            continue
        if not cjk:
            continue
        if _LABEL_RE.match(cjk):
            out.append(cjk.lower())
            continue
        words = [w for w in _jieba().lcut(cjk, HMM=True) if w.strip()]
        merged: list[str] = []
        i = 0
        while i < len(words):
            w = words[i]
            if len(w) == 1 and w not in qwords and i + 1 < len(words) and len(words[i + 1]) == 1 \
                    and words[i + 1] not in qwords:
                merged.append(w + words[i + 1])  # 丧 + 假 -> 丧假
                i += 2
                continue
            merged.append(w)
            i += 1
        out += [w for w in merged if w not in qwords and not (len(w) == 1 and w in qwords)]
    # Latin letters glued to digits (L3, SEV2) come through the word branch with their digits.
    seen: set[str] = set()
    return [w for w in out if len(w) > 1 and not (w in seen or seen.add(w))]  # type: ignore[func-returns-value]


@dataclass
class Unit:
    """A sentence, list item or table row of one retrieved chunk."""

    text: str
    chunk_id: str
    source: str
    page: int | None
    kind: str                       # sentence | item | record | heading
    order: int                      # position in its chunk
    context: str = ""               # heading path and the line introducing it
    family: str = ""                # units of one table (same keys) or one list share this
    fields: list[tuple[str, str]] = field(default_factory=list)
    coverage: float = 0.0
    score: float = 0.0
    chunk_rank: int = 0
    units: set[str] = field(default_factory=set)   # units of the quantities it states
    matched: list[str] = field(default_factory=list)
    meaning: float | None = None    # margin of its cosine to the question over the background, in fitted units

    @property
    def citation(self) -> dict[str, Any]:
        return {"source": self.source, "page": self.page, "chunk_id": self.chunk_id, "quote": self.text}


def _record_fields(line: str) -> list[tuple[str, str]]:
    """``k: v；k: v`` (how loaders write a table row) as pairs; ``a | b | c`` rows by position."""
    if line.count("|") >= 2:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        return [(str(i), c) for i, c in enumerate(cells)]
    pairs = [(m.group("key").strip(), m.group("val").strip()) for m in _RECORD_FIELD.finditer(line)]
    return pairs if len(pairs) >= 2 else []


def split_units(chunk: Any) -> list[Unit]:
    """Cut a chunk into units with their context.

    >>> from knowledge.types import Chunk
    >>> c = Chunk("c1", "a.pdf", "第十五条　住宿费标准如下：\\n\\n职级: A类；一类城市: 900\\n\\n职级: B类；一类城市: 650",
    ...           page=2, heading_path=["差旅办法", "第五章 住宿费"])
    >>> [(u.kind, u.text) for u in split_units(c)]
    [('sentence', '第十五条　住宿费标准如下：'), ('record', '职级: A类；一类城市: 900'), ('record', '职级: B类；一类城市: 650')]
    >>> split_units(c)[1].context
    '差旅办法 > 第五章 住宿费 | 第十五条　住宿费标准如下：'
    """
    heading = " > ".join(h.strip() for h in getattr(chunk, "heading_path", []) or [] if h.strip())
    units: list[Unit] = []
    intro = ""
    order = 0
    for raw in chunk.text.split("\n"):
        line = raw.strip()
        if not line:
            continue
        fields = _record_fields(line)
        if fields:
            keys = "|".join(k for k, _ in fields)
            units.append(Unit(line, chunk.chunk_id, chunk.source, chunk.page, "record", order,
                              _join(heading, intro), f"{chunk.chunk_id}:{keys}", fields))
            order += 1
            continue
        is_item = bool(_ITEM_RE.match(line))
        for sent in (s.strip() for s in _SENT_SPLIT.split(line)):
            if not sent or not any(ch.isalnum() for ch in sent):
                continue
            kind = "item" if is_item else "heading" if _looks_like_heading(sent) else "sentence"
            units.append(Unit(sent, chunk.chunk_id, chunk.source, chunk.page, kind, order,
                              _join(heading, intro if is_item else ""), f"{chunk.chunk_id}:items:{intro[:20]}"
                              if is_item else ""))
            order += 1
        if not is_item:
            # A line that ends with a colon introduces the list or table after it.
            intro = line if line.rstrip().endswith((":", "：")) else (intro if _looks_like_heading(line) else line)
    return units


def _looks_like_heading(text: str) -> bool:
    return len(text) <= 24 and not re.search(r"[。；;，,]", text) and bool(_HEADING_RE.match(text) or len(text) <= 12)


def _join(heading: str, intro: str) -> str:
    return f"{heading} | {intro}" if heading and intro else heading or intro


class KBTerms:
    """Term statistics of one published index: document frequency, idf, presence, siblings."""

    def __init__(self, index: Any = None, *, chunks: list[Any] | None = None, glossary: Any = None):
        chunks = list(chunks if chunks is not None else getattr(index, "chunks", []) or [])
        self.n = max(1, len(chunks))
        frequencies = getattr(getattr(index, "bm25", None), "document_frequencies", None)
        if frequencies is not None:
            self.df = dict(frequencies())
        else:  # passages given with the question, or a lexical backend that keeps no counts here


            counts: Counter[str] = Counter()
            for c in chunks:
                counts.update(set(tokenize(c.text)))
            self.df = dict(counts)
        self.texts = [_norm(" ".join(getattr(c, "heading_path", []) or []) + "\n" + c.text) for c in chunks]
        glossary = glossary if glossary is not None else getattr(index, "glossary", None) or []
        self.glossary_text = _norm(" ".join(f"{e.term} " + " ".join(f"{m.english} {m.chinese}" for m in e.meanings)
                                            for e in glossary))
        self._cache: dict[str, int] = {}
        self._lock = threading.Lock()
        by_head: dict[str, set[str]] = {}
        families: dict[str, set[str]] = {}
        for term in self.df:
            if len(term) >= 2 and _CJK_RE.fullmatch(term[-1]):
                by_head.setdefault(term[-1], set()).add(term)
                if len(term) >= 3:
                    by_head.setdefault(term[-2:], set()).add(term)
            m = _LATIN_FAMILY_RE.match(term)
            if m:
                families.setdefault(m.group("stem"), set()).add(term)
        self.by_head = by_head
        self.latin_families = families
        cjk = sum(len(_CJK_RE.findall(t)) for t in self.texts[:300])
        latin = sum(len(re.findall(r"[a-z]", t)) for t in self.texts[:300])
        self.lang = "zh" if cjk >= 0.3 * max(1, cjk + latin) else "en"

    def doc_freq(self, term: str) -> int:
        """Chunks holding ``term`` (as an indexed word, or as text for Chinese compounds)."""
        t = _norm(term)
        if t in self.df:
            return self.df[t]
        with self._lock:
            if t in self._cache:
                return self._cache[t]
        if _CJK_RE.search(t):
            n = sum(t in text for text in self.texts)
        else:
            pattern = re.compile(rf"(?<![a-z0-9]){'|'.join(re.escape(s) for s in _stems(t))}(?![a-z0-9])")
            n = sum(bool(pattern.search(text)) for text in self.texts)
        with self._lock:
            self._cache[t] = n
        return n

    def idf(self, term: str) -> float:
        df = self.doc_freq(term)
        return math.log1p((self.n - df + 0.5) / (df + 0.5))

    def present(self, term: str) -> bool:
        return self.doc_freq(term) > 0 or _norm(term) in self.glossary_text

    def siblings(self, term: str) -> list[str]:
        """Terms of the knowledge base that share ``term``'s head with another modifier, when
        ``term`` itself is absent: 丧假 -> [婚假, 产假, …]; 四级手术 -> [一级手术, …]; sev4 -> [sev1, …].

        An absent compound is only a missing sibling when its modifier is new to the knowledge
        base as well (报销单 is a variant wording when 报销 is everywhere, not a new kind of form).
        """
        t = _norm(term)
        if self.present(t):
            return []
        m = _LATIN_FAMILY_RE.match(t)
        if m:
            return sorted(x for x in self.latin_families.get(m.group("stem"), ()) if x != t)
        if not _CJK_RE.search(t) or len(t) < 2:
            return []
        om = _ORDINAL_RE.match(t)
        if om and om.group("rest"):
            rest = om.group("rest")
            same = [x for x in self.by_head.get(rest[-2:] if len(rest) >= 2 else rest[-1], set())
                    if x.endswith(rest) and x != t and _ORDINAL_RE.match(x)]
            if same:
                return sorted(same)
        for head_len in (2, 1):
            if len(t) <= head_len:
                continue
            head, modifier = t[-head_len:], t[:-head_len]
            if self.present(modifier):
                continue
            sibs = [x for x in self.by_head.get(head, set()) if x.endswith(head) and x != t
                    and len(x) - head_len >= 1 and not x.startswith(modifier)]
            if len(sibs) >= 2:
                return sorted(sibs)[:8]
        return []


def kb_terms(index: Any) -> KBTerms:
    """The :class:`KBTerms` of an index, built once and kept on it."""
    stats = getattr(index, "_kb_terms", None)
    if stats is None:
        stats = KBTerms(index)
        try:
            index._kb_terms = stats
        except AttributeError:  # pragma: no cover - slotted test doubles
            pass
    return stats


_CONDITION_AFTER = re.compile(r"^[^，,。；;：:]{0,20}的[，,；;]")


def value_units(text: str) -> set[str]:
    """Units of the quantities a unit *states*, leaving out those that only set a condition
    ("两名及以上同性别员工同行出差的，…" names 两名 as a condition, not as the rule's figure).

    >>> sorted(value_units("两名及以上同性别员工同行出差的，原则上应合住一间客房。"))
    []
    >>> sorted(value_units("出差天数超过3天的，每晚不超过480元。"))
    ['元']
    """
    out = set()
    for q in extract_quantities(text):
        if _CONDITION_AFTER.match(text[q.end:]):
            continue
        out.add(q.unit)
    return out


def _char_share(term: str, text: str) -> float:
    """Share of a Chinese term's characters that occur in ``text`` (写完 / 完成 share 完): partial
    credit for everyday wording the documents put differently. 0 for Latin terms.

    >>> _char_share("写完", "应于24小时内完成"), _char_share("hotel", "hotels")
    (0.5, 0.0)
    """
    if not _CJK_RE.search(term) or len(term) < 2:
        return 0.0
    return sum(ch in text for ch in term) / len(term)


def _contains(text: str, term: str) -> bool:
    if _CJK_RE.search(term):
        return term in text
    return any(re.search(rf"(?<![a-z0-9]){re.escape(s)}(?![a-z0-9])", text) for s in _stems(term))


@dataclass
class Evidence:
    """What the retrieved passages hold for one question (see the module docstring)."""

    terms: list[str]
    weights: dict[str, float]
    absent: list[str]
    siblings: dict[str, list[str]]
    units: list[Unit]
    asked_units: set[str]
    best_coverage: float = 0.0
    absent_share: float = 0.0
    peak: float = 0.0
    best_dense: float = 0.0
    index: Any = None
    equivalents: dict[str, str] = field(default_factory=dict)  # question word -> the documents' word for it
    focus_absent: list[str] = field(default_factory=list)      # a follow-up's new subject, none of it in the KB
    translated_share: float = 0.0   # weight share of the terms that are translations of a foreign question's words

    @property
    def best(self) -> Unit | None:
        return self.units[0] if self.units else None

    @property
    def missing_sibling(self) -> bool:
        return bool(self.siblings)

    def quantity_units(self, min_coverage: float = 0.0) -> list[Unit]:
        """Units that state a quantity of an asked unit (all quantities when none is asked)."""
        out = []
        for u in self.units:
            if u.coverage < min_coverage or u.kind == "heading":
                continue
            if (self.asked_units and u.units & self.asked_units) or (not self.asked_units and u.units):
                out.append(u)
        return out

    def features(self) -> dict[str, float]:
        return {"coverage": round(self.best_coverage, 4), "absent_share": round(self.absent_share, 4),
                "missing_sibling": float(self.missing_sibling), "peak": round(self.peak, 4),
                "dense": round(self.best_dense, 4)}


def resolve_terms(terms: Iterable[str], stats: KBTerms, unknown: list[str] | None = None) -> list[str]:
    """Replace a Chinese word the knowledge base never uses by its dictionary pieces when those are
    all known words or question words: jieba's HMM glues 几+小时, 由+谁, 要+报 into one unknown
    "word"; 丧假 stays, because 丧 is new to the knowledge base.

    A word made only of known single characters (年假: 年 and 假 occur, 年假 does not) is left out
    of the terms, but appended to ``unknown`` when given: it may be an everyday word for a term of
    the documents (年休假), which the meaning reader can find."""
    qwords = lexicon().question_words
    out: list[str] = []
    for t in terms:
        if stats.present(t) or not _CJK_RE.search(t) or len(t) < 2:
            out.append(t)
            continue
        t = _strip_question_words(t, qwords)
        if not t:
            continue
        if stats.present(t) or len(t) < 2:
            if len(t) >= 2:
                out.append(t)
            continue
        pieces = [p for p in _jieba().lcut(t, HMM=False) if p.strip()]
        if len(pieces) <= 1:
            out.append(t)
            continue
        content = [p for p in pieces if p not in qwords]
        if all(stats.present(p) and len(p) >= 2 for p in content):
            out += content               # 要报 -> [] ; 能领 -> [] ; 报销期限 -> 报销, 期限
        elif any(len(p) == 1 and not stats.present(p) for p in content) or any(not stats.present(p) for p in content):
            out.append(t)                # 丧假: 丧 is new here
        else:
            out += [p for p in content if len(p) >= 2]
            if unknown is not None and len(content) >= 2 and all(len(p) == 1 for p in content):
                unknown.append(t)
    seen: set[str] = set()
    return [t for t in out if not (t in seen or seen.add(t))]  # type: ignore[func-returns-value]


def _strip_question_words(term: str, qwords: frozenset[str]) -> str:
    """``term`` without question words glued to its ends (最短要 -> "", 由谁审批 -> 审批).

    >>> _strip_question_words("最短要", frozenset({"最短", "要"})), _strip_question_words("丧假", frozenset({"要"}))
    ('', '丧假')
    """
    longest = max((len(w) for w in qwords), default=0)
    changed = True
    while term and changed:
        changed = False
        for n in range(min(longest, len(term)), 0, -1):
            if term[:n] in qwords:
                term, changed = term[n:], True
                break
            if term[-n:] in qwords:
                term, changed = term[:-n], True
                break
    return term


def _overlaps_span(text: str, term: str, spans: list[tuple[int, int]]) -> bool:
    """``term`` occurs in ``text`` overlapping one of ``spans``.

    >>> _overlaps_span("怀孕刚满4个月流产", "刚满", [(3, 7)]), _overlaps_span("怀孕刚满4个月流产", "流产", [(3, 7)])
    (True, False)
    """
    norm, t = _norm(text), _norm(term)
    start = norm.find(t)
    while start >= 0:
        if any(start < b and a < start + len(t) for a, b in spans):
            return True
        start = norm.find(t, start + 1)
    return False


def _blank(text: str, spans: list[tuple[int, int]]) -> str:
    """``text`` with each span replaced by one space.

    >>> _blank("工作满15年年假几天", [(2, 6)])
    '工作 年假几天'
    """
    for a, b in sorted(spans, reverse=True):
        text = text[:a] + " " + text[b:]
    return text


def gather(question: str, hits: list[Any], index: Any, *, fact_hits: Iterable[Any] = (), background: float = 0.0,
           asked: set[str] | None = None, extra_terms: Iterable[str] = (), stats: KBTerms | None = None,
           focus: str = "", reader: Any = None, polarity_weight: float = 0.0) -> Evidence:
    """Rank the units of the retrieved chunks (and of the chunks of the nearest facts) for ``question``.

    ``focus`` is the part of the question that matters most (what a follow-up brings): its terms
    weigh double, so 「那丢件呢？」 joined to a question about damage claims looks for 丢件.

    ``reader`` (a :class:`router.meaning.MeaningReader`, when the index has unit vectors) adds what
    the units *mean*: each unit's meaning score joins its rank, and a question word the knowledge
    base never uses is replaced by the documents' word for it (年假 → 年休假) when a unit that means
    what the question asks holds that word.

    ``polarity_weight`` is added to the rank of a unit that states an exclusion (the lexicon's
    ``exclusion``) when the question asks about one: 「哪些情况不享受年休假？」 gets the excluded cases.
    """
    stats = stats or kb_terms(index)
    glued: list[str] = []
    terms = resolve_terms(dict.fromkeys([*content_terms(question), *(t for t in extra_terms if t)]), stats, glued)
    # The quantities a question states mostly set conditions (满15年, 一年零八个月): a word of theirs
    # the documents do not use is no topic the documents lack (刚满 is not a sibling of 不满, 十年 not
    # of 一年) and is left out; one they do use (入职第一周) still counts.
    spans = quantity_spans(question)
    terms = [t for t in terms if stats.present(t) or not _overlaps_span(question, t, spans)]
    focused = set(resolve_terms(content_terms(_blank(focus, quantity_spans(focus))), stats)) if focus else set()
    chunks: list[tuple[Any, float, int]] = []
    seen: set[str] = set()
    for rank, h in enumerate(hits):
        if h.chunk.chunk_id not in seen:
            seen.add(h.chunk.chunk_id)
            chunks.append((h.chunk, float(h.dense or 0.0), rank))
    for fh in fact_hits:
        cid = fh.fact.chunk_id
        if cid not in seen:
            try:
                chunk = index.chunk(cid)
            except Exception:  # noqa: BLE001 - a fact of a chunk this version lacks: skip it
                continue
            seen.add(cid)
            chunks.append((chunk, float(fh.score), len(chunks)))
    candidates = [(_copy(u), rank) for chunk, _dense, rank in chunks for u in _units_cached(chunk)]
    meaning_scores: list[float | None] = [None] * len(candidates)
    equivalents: dict[str, str] = {}
    if reader is not None:
        meaning_scores = reader.unit_scores(question, [u for u, _ in candidates])
        ranked = sorted((m, i) for i, m in enumerate(meaning_scores) if m is not None)
        top_texts = [_norm(candidates[i][0].text + " " + candidates[i][0].context)
                     for m, i in reversed(ranked[-reader.top_units:]) if m >= reader.min_score]
        # a word with missing siblings (丧假 where 婚假 and 产假 exist) names a near topic, never a synonym
        # In the other language than the documents, every word wants the documents' word for it.
        cross = bool(_CJK_RE.search(question)) != (stats.lang == "zh")
        unknown = [t for t in terms if cross or (not stats.present(t) and not stats.siblings(t))]
        equivalents = reader.equivalents(question, unknown + glued, top_texts, stats.lang)
        if equivalents:
            replaced = []
            for t in terms + [g for g in glued if g in equivalents]:
                w = equivalents.get(t, t)
                if w and w not in replaced:
                    replaced.append(w)
            terms = replaced
    weights = {t: stats.idf(t) * (2.0 if t in focused else 1.0) for t in terms}
    absent = [t for t in terms if not stats.present(t)]
    total = sum(weights.values()) or 1.0
    # A question in another language than the documents shares no words with them: there a
    # unit's meaning measures how much of the question it covers, beside the translated words --
    # only where some of its words were read as the documents' words: a foreign question none of
    # whose words the documents use ("What is the CEO's name?") is not answered by resemblance alone.
    cross = reader is not None and bool(equivalents) and bool(_CJK_RE.search(question)) != (stats.lang == "zh")
    exclusion = lexicon().exclusion
    excluding = bool(exclusion.search(question))
    units: list[Unit] = []
    for (u, rank), meaning in zip(candidates, meaning_scores):
        text = _norm(u.text)
        ctx = _norm(u.context)
        matched = [t for t in terms if _contains(text, t)]
        in_ctx = [t for t in terms if t not in matched and _contains(ctx, t)]
        partial = sum(weights[t] * _char_share(t, text + ctx) for t in terms if t not in matched and t not in in_ctx)
        u.matched = matched
        u.coverage = (sum(weights[t] for t in matched) + 0.8 * sum(weights[t] for t in in_ctx)
                      + 0.4 * partial) / total
        if cross and meaning is not None:
            u.coverage = max(u.coverage, reader.coverage(meaning))
        u.units = value_units(u.text)
        u.chunk_rank = rank
        ask_bonus = 0.08 if asked and u.units & asked else 0.0
        if excluding and polarity_weight:
            # the unit (or the line introducing its list) says what is left out, as the question asks
            ask_bonus += polarity_weight if exclusion.search(u.text) or exclusion.search(u.context) else 0.0
        u.meaning = meaning
        # Meaning scores count in whole units of the knowledge base's fitted scale: finer
        # differences between sentences that both answer are noise, and document order decides.
        sense = reader.weight * max(-1, min(2, round(meaning))) if reader is not None and meaning is not None else 0.0
        u.score = u.coverage + sense + ask_bonus + 0.05 / (1 + rank) + (0.0 if u.kind != "heading" else -0.3)
        units.append(u)
    units.sort(key=lambda u: (-u.score, u.chunk_rank, u.order))
    # A missing sibling counts only where the passages the answer would come from talk about its
    # siblings: 丧假 next to 婚假 and 产假 is a near-topic question; 打印机 in a question about
    # purchase approvals is just an object the rules do not name.
    top_text = _norm(" ".join(u.text + " " + u.context for u in units[:6]))
    siblings = {}
    for t in absent:
        near = [s for s in stats.siblings(t) if s in top_text]
        if near:
            siblings[t] = near
    best_dense = max((d for _, d, _ in chunks[: len(hits)]), default=0.0)
    # What a follow-up brings ("那探亲假呢？") is its whole new subject: when none of it is in the
    # knowledge base, the previous turn's passages must not answer it.
    focus_terms = [equivalents.get(t, t) for t in focused]
    focus_absent = [t for t in focus_terms if not stats.present(t)] if focus_terms and all(
        not stats.present(t) for t in focus_terms) else []
    translated = sum(weights.get(w, 0.0) for w in set(equivalents.values())) / total if cross else 0.0
    return Evidence(terms=terms, weights=weights, absent=absent, siblings=siblings, units=units,
                    asked_units=set(asked or ()), equivalents=equivalents, focus_absent=focus_absent,
                    translated_share=translated,
                    best_coverage=max((u.coverage for u in units if u.kind != "heading"), default=0.0),
                    absent_share=sum(weights[t] for t in absent) / total,
                    peak=best_dense - background, best_dense=best_dense, index=index)


def source_units(index: Any, source: str) -> list[Unit]:
    """Every unit of one document, in document order (to complete a table the retrieved chunks
    show only part of)."""
    by_source = getattr(index, "_units_by_source", None)
    if by_source is None:
        by_source = {}
        for rank, c in enumerate(getattr(index, "chunks", []) or []):
            by_source.setdefault(c.source, []).append(c)
        try:
            index._units_by_source = by_source
        except AttributeError:  # pragma: no cover
            pass
    out = []
    for c in by_source.get(source, []):
        out += _units_cached(c)
    return out


_UNIT_MEMO: BoundedMemo[list[Unit]] = BoundedMemo(limit=20_000)


def _units_cached(chunk: Any) -> list[Unit]:
    return _UNIT_MEMO.get(f"{chunk.chunk_id}:{hash(chunk.text)}", lambda: split_units(chunk))


def _copy(u: Unit) -> Unit:
    return Unit(u.text, u.chunk_id, u.source, u.page, u.kind, u.order, u.context, u.family, list(u.fields))
