"""Distil router training data from a published knowledge base.

``distill(index, out_home)`` writes ``out_home/datasets/<version>/`` with ``train.jsonl`` and
``eval.jsonl`` (OpenAI messages form: the router's system prompt, the question, and the
router's JSON answer ``{"route", "terms", "query"}``) plus ``manifest.json`` (source hashes,
counts per route and per source, and how many pairs each quality rule removed), then points
``datasets/current`` at it. Sources:

* glossary: several question forms per entry, Chinese and English; ambiguous terms also get
  questions whose context (built from the meaning's own words and its glossary neighbours)
  selects one meaning -> ``glossary``;
* facts: a question per stored fact from its subject and the unit of its value, also with
  glossary abbreviations written in place of their meanings -> ``fact``;
* chunks, through a teacher LLM (answers cached by prompt hash): procedure / multi-condition
  questions -> ``rag``; related questions the passage does not answer -> ``refuse``; plus
  templated off-topic questions -> ``refuse``.

Every generated pair passes the filters of :mod:`finetune.quality`. The split into train and
eval is a hash of ``(seed, question)``, so it is the same on every run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

from tqdm import tqdm

from config.topics import topics
from knowledge.core.errors import GenerationError, KBError
from knowledge.core.files import sha256_text
from knowledge.core.types import Meaning
from finetune.datasets import datasets_dir, publish_dataset
from finetune.quality import apply_filters
from finetune.teacher import CACHE_NAME, CachedTeacher, TeacherCache, build_teacher
from router.disambiguation.base import single_meaning, surface_meaning, undecided
from router.engine import Engine
from router.llm.extractive import ExtractiveGenerator
from router.lora_format import ROUTER_SYSTEM, evidence_from_signals, resolution_label, route_answer, router_messages
from router.matching import find_terms
from router.routes import SignalRouter, default_routes
from router.terms import rewrite_query

log = logging.getLogger(__name__)


@dataclass
class DatasetReport:
    version: str
    path: Path
    train: int
    eval: int
    per_route: dict[str, dict[str, int]]
    per_source: dict[str, int]
    filters: dict[str, int]
    teacher_calls: int = 0
    teacher_cache_hits: int = 0
    teacher_failures: int = 0
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["path"] = str(self.path)
        return d


# --- pure helpers ------------------------------------------------------------------------
def core_text(text: str) -> str:
    """A meaning without its bracketed notes.

    >>> core_text("客户关系管理（系统）")
    '客户关系管理'
    """
    return re.sub(r"[（(][^）)]*[）)]", "", text).strip()


def zh_words(text: str) -> set[str]:
    """Chinese character bigrams of a meaning's core text.

    >>> sorted(zh_words("项目经理"))
    ['目经', '经理', '项目']
    """
    s = re.sub(r"[^\u4e00-\u9fff]", "", core_text(text))
    return {s[i:i + 2] for i in range(len(s) - 1)}


def en_words(text: str) -> set[str]:
    """Lower-case English words of four letters or more.

    >>> sorted(en_words("Project Manager (PM)"))
    ['manager', 'project']
    """
    return {w.lower() for w in re.findall(r"[A-Za-z]{4,}", text)}


def split_key(seed: int, question: str) -> float:
    """Deterministic number in [0, 1) from ``(seed, question)``: the train/eval split.

    >>> split_key(0, "AM是什么意思？") == split_key(0, "AM是什么意思？")
    True
    """
    digest = hashlib.sha256(f"{seed}\0{question}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2 ** 64


def items_hash(items: Iterable[str]) -> str:
    """sha256 over strings, each ended by a NUL (so ``["ab"]`` and ``["a", "b"]`` differ).

    >>> items_hash(["ab"]) != items_hash(["a", "b"])
    True
    """
    return sha256_text("".join(f"{item}\0" for item in items))


# --- question templates ----------------------------------------------------------------
_DEF_ZH = ["{t}是什么意思？", "{t}代表什么？", "{t}的全称是什么？", "请问{t}指的是什么？"]
_DEF_EN = ["What does {t} stand for?", "What does {t} mean?", "What is the English long form of {t}?"]
_REVERSE_ZH = ["{m}的缩写是什么？", "{m}的英文缩写是什么？"]
_REVERSE_EN = ["What is the abbreviation of {e}?", "How is {e} abbreviated?"]
_CONTEXT_ZH = ["负责{w}的{t}是什么意思？", "{n}相关工作里提到的{t}指什么？", "在{w}方面，{t}是指什么？"]
_CONTEXT_EN = ["In the context of {n}, what does {t} mean?"]
_SENTENCE_ZH = ["{t}负责{w}相关工作，这里的{t}是什么意思？"]


def neighbours(entry: Any, meaning: Meaning, glossary: Any, limit: int = 2) -> list[Meaning]:
    """Other glossary meanings that share words with this meaning but not with the entry's
    other meanings (so a context built from them points to this meaning only)."""
    siblings = [m for m in entry.meanings if m is not meaning]
    zh_other = set().union(*(zh_words(m.chinese) for m in siblings)) if siblings else set()
    en_other = set().union(*(en_words(m.english) for m in siblings)) if siblings else set()
    zh_own = zh_words(meaning.chinese) - zh_other
    en_own = en_words(meaning.english) - en_other
    out = []
    for other in glossary:
        if other.term == entry.term:
            continue
        for m in other.meanings:
            if zh_words(m.chinese) & zh_own or en_words(m.english) & en_own:
                out.append(m)
                break
        if len(out) >= limit:
            break
    return out


def own_words(entry: Any, meaning: Meaning) -> list[str]:
    """Leading bigram(s) of the meaning that its sibling meanings do not share.

    >>> from knowledge.core.types import GlossaryEntry
    >>> e = GlossaryEntry("PM", [Meaning("Product Manager", "产品经理"), Meaning("Project Manager", "项目经理")])
    >>> own_words(e, e.meanings[1])
    ['项目']
    """
    core = re.sub(r"[^\u4e00-\u9fff]", "", core_text(meaning.chinese))
    others = set().union(*(zh_words(m.chinese) for m in entry.meanings if m is not meaning))
    words = [core[i:i + 2] for i in range(0, max(0, len(core) - 1), 2) if core[i:i + 2] not in others]
    return words[:1]


def glossary_questions(glossary: Any) -> list[dict[str, Any]]:
    """Templated glossary questions with the meaning each one intends (``None`` = all)."""
    out: list[dict[str, Any]] = []
    for entry in glossary:
        t, ms = entry.term, entry.meanings
        pick = None if len(ms) > 1 else 0
        for tpl in _DEF_ZH + _DEF_EN:
            out.append({"question": tpl.format(t=t), "intended": {t: pick}, "route": "glossary", "kind": "definition"})
        for i, m in enumerate(ms):
            idx = i if len(ms) > 1 else 0
            if m.chinese:
                for tpl in _REVERSE_ZH:
                    out.append({"question": tpl.format(m=core_text(m.chinese)), "intended": {t: idx},
                                "route": "glossary", "kind": "reverse"})
            if m.english:
                for tpl in _REVERSE_EN:
                    out.append({"question": tpl.format(e=m.english), "intended": {t: idx},
                                "route": "glossary", "kind": "reverse"})
            if len(ms) > 1:
                out += _context_questions(entry, m, i, glossary)
    return out


def _context_questions(entry: Any, m: Meaning, idx: int, glossary: Any) -> list[dict[str, Any]]:
    t, out = entry.term, []
    words = own_words(entry, m)
    near = neighbours(entry, m, glossary)
    for w in words:
        for tpl in _CONTEXT_ZH[::2] + _SENTENCE_ZH:
            out.append({"question": tpl.format(t=t, w=w, n=w), "intended": {t: idx}, "route": "glossary",
                        "kind": "context"})
    for n in near:
        if n.chinese:
            out.append({"question": _CONTEXT_ZH[1].format(t=t, n=core_text(n.chinese), w=""),
                        "intended": {t: idx}, "route": "glossary", "kind": "context"})
        if n.english:
            out.append({"question": _CONTEXT_EN[0].format(t=t, n=n.english), "intended": {t: idx},
                        "route": "glossary", "kind": "context"})
    return out


_UNIT_ASK_ZH = {"元": "是多少钱", "万元": "是多少万元", "%": "的比例是多少", "天": "是几天", "日": "是几天",
                "工作日": "是几个工作日", "小时": "是几小时", "年": "是几年", "月": "是几个月", "个月": "是几个月",
                "次": "是几次", "人": "是几人", "date": "是哪一天", "": "是多少"}
_UNIT_ASK_EN = {"元": "How much is {s}?", "%": "What percentage applies to {s}?", "天": "How many days is {s}?",
                "小时": "How many hours is {s}?", "": "What is the limit for {s}?"}


def fact_questions(facts: list[Any], glossary: Any, limit: int = 400) -> list[dict[str, Any]]:
    """One or two questions per fact: subject + the asked unit, and the same with a glossary
    abbreviation written in place of its meaning (``客户经理`` -> ``AM``)."""
    out: list[dict[str, Any]] = []
    for fact in facts:
        # Subjects may carry their heading ("差旅费 / 住宿标准"): the last part is the noun phrase.
        subject = (fact.subject or "").split(" / ")[-1].strip(" ：:，,。")
        if not (2 <= len(subject) <= 30) or not fact.values:
            continue
        unit = fact.values[0].unit or ""
        ask = _UNIT_ASK_ZH.get(unit, _UNIT_ASK_ZH[""])
        out.append({"question": f"{subject}{ask}？", "route": "fact", "kind": "fact", "source_text": fact.statement})
        en = _UNIT_ASK_EN.get(unit)
        if en and len(out) % 3 == 0:
            out.append({"question": en.format(s=subject), "route": "fact", "kind": "fact_en",
                        "source_text": fact.statement})
        for match in find_terms(subject, glossary):
            if match.via == "meaning":
                swapped = subject[:match.start] + match.term + subject[match.end:]
                out.append({"question": f"{swapped}{ask}？", "route": "fact", "kind": "fact_abbr",
                            "source_text": fact.statement})
                break
        if len(out) >= limit:
            break
    return out


_HEADING_ZH = ["{t}的流程是怎样的？", "关于{t}有哪些规定？", "{t}需要满足哪些条件，分别怎么处理？"]
_HEADING_EN = ["What are the rules for {t}?", "How does the {t} process work?"]
_SKIP_TOPICS = re.compile(r"^(总则|附则|general|supplementary provisions)$", re.IGNORECASE)


def heading_topic(heading: str) -> tuple[str, str]:
    """Chinese and English topic of a section heading (numbering removed).

    >>> heading_topic("第五章　住宿费")
    ('住宿费', '')
    >>> heading_topic("3. 远程访问与VPN / Remote Access and VPN")
    ('远程访问与VPN', 'Remote Access and VPN')
    """
    zh, _, en = heading.partition(" / ")
    zh = re.sub(r"^(第[一二三四五六七八九十百0-9]+[章节条]|\d+(\.\d+)*\.?)\s*", "", zh.replace("\u3000", " ")).strip()
    zh = re.sub(r"\s+", "", zh) if re.search(r"[\u4e00-\u9fff]", zh) else zh
    return zh, en.strip()


def heading_questions(chunks: list[Any]) -> list[dict[str, Any]]:
    """Procedure / multi-condition questions about each section of the documents -> ``rag``
    (templated from the section headings, so every KB gets them without a teacher)."""
    out, seen = [], set()
    for chunk in chunks:
        if not chunk.heading_path:
            continue
        zh, en = heading_topic(chunk.heading_path[-1])
        if zh in seen or not (2 <= len(zh) <= 24) or _SKIP_TOPICS.match(zh) or _SKIP_TOPICS.match(en):
            continue
        seen.add(zh)
        out += [{"question": t.format(t=zh), "route": "rag", "kind": "heading_rag"} for t in _HEADING_ZH]
        if en:
            out += [{"question": t.format(t=en), "route": "rag", "kind": "heading_rag"} for t in _HEADING_EN]
    return out


# The topics themselves are data (``config/topics.yaml``); these are only the ways of asking.
_ABSENT_ZH = ["{t}的标准是多少？", "{t}有什么规定？"]
_ABSENT_EN = ["How much is the {t}?", "What is the policy on the {t}?"]


def off_topic_questions() -> list[dict[str, Any]]:
    """``refuse`` questions from :func:`config.topics.topics`: off-topic, unanswered workplace
    questions, and absent workplace topics asked the way fact questions are."""
    t = topics()
    absent = ([tpl.format(t=x) for x in t.absent_zh for tpl in _ABSENT_ZH]
              + [tpl.format(t=x) for x in t.absent_en for tpl in _ABSENT_EN])
    return ([{"question": q, "route": "refuse", "kind": "off_topic"} for q in t.off_topic]
            + [{"question": q, "route": "refuse", "kind": "unanswered"} for q in t.unanswered]
            + [{"question": q, "route": "refuse", "kind": "absent_topic"} for q in absent])


# --- teacher questions from chunks ----------------------------------------------------
_RAG_PROMPT = (
    "资料：\n{chunk}\n\n根据上面的资料，提出一个员工可能会问的、需要综合资料中多个条件或步骤才能回答的问题"
    "（例如流程、办理步骤、不同情况的区别），并根据资料给出答案。"
    '只输出一个JSON对象：{{"question": "问题", "answer": "答案"}}'
)
_REFUSE_PROMPT = (
    "资料：\n{chunk}\n\n提出一个与资料主题相关、但资料中完全没有答案的问题（资料里没有出现相关的信息）。"
    '只输出一个JSON对象：{{"question": "问题"}}'
)
_TEACHER_SYSTEM = "你是出题助手，只输出JSON。"


def parse_json_object(text: str) -> dict[str, Any] | None:
    """The first JSON object in a model reply (code fences and chatter around it ignored).

    >>> parse_json_object('```json\\n{"question": "q", "answer": "a"}\\n```')
    {'question': 'q', 'answer': 'a'}
    """
    start = text.find("{")
    while start >= 0:
        depth = 0
        for i in range(start, len(text)):
            if text[i] == "{":
                depth += 1
            elif text[i] == "}":
                depth -= 1
                if depth == 0:
                    try:
                        obj = json.loads(text[start:i + 1])
                        return obj if isinstance(obj, dict) else None
                    except json.JSONDecodeError:
                        break
        start = text.find("{", start + 1)
    return None


def chunk_questions(chunks: list[Any], teacher: Any, max_chunks: int | None = None,
                    progress: bool = False) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Teacher-written ``rag`` and ``refuse`` pairs (unfiltered) and failure counts."""
    picked = [c for c in chunks if len(c.text.strip()) >= 40]
    if max_chunks is not None:
        step = max(1, len(picked) // max(1, max_chunks))
        picked = picked[::step][:max_chunks]
    out, failures = [], Counter({"unparseable": 0, "teacher_error": 0})
    items = tqdm(picked, desc="teacher", unit="chunk") if progress else picked
    for chunk in items:
        text = chunk.text.strip()[:1200]
        for route, prompt in (("rag", _RAG_PROMPT), ("refuse", _REFUSE_PROMPT)):
            messages = [{"role": "system", "content": _TEACHER_SYSTEM},
                        {"role": "user", "content": prompt.format(chunk=text)}]
            try:
                reply = teacher.generate(messages, max_tokens=120, temperature=0.0)
            except GenerationError as exc:
                log.warning("teacher failed on %s: %s", chunk.chunk_id, exc)
                failures["teacher_error"] += 1
                continue
            obj = parse_json_object(reply)
            if not obj or not isinstance(obj.get("question"), str):
                failures["unparseable"] += 1
                continue
            answer = obj.get("answer", "") if route == "rag" else ""
            out.append({"question": obj["question"].strip(), "answer": str(answer or "").strip(),
                        "source": text, "instructions": prompt.split("\n\n", 1)[1], "route": route, "kind": f"teacher_{route}", "chunk_id": chunk.chunk_id})
    return out, dict(failures)


# --- targets ------------------------------------------------------------------------------
def target_for(question: str, glossary: Any, intended: dict[str, int | None] | None = None,
               disambiguator: Any = None) -> tuple[dict[str, str], str]:
    """The router answer's ``terms`` and ``query`` for a question.

    ``intended`` maps a term to the index of the meaning the question was written for
    (``None`` = every meaning: the question does not say). Other ambiguous terms are
    decided by ``disambiguator`` when given, else left undecided.
    """
    matches = find_terms(question, glossary)
    resolutions, terms = [], {}
    for m in matches:
        ms = m.entry.meanings
        want = (intended or {}).get(m.term, "unset")
        if m.via == "meaning" or len(ms) <= 1:
            res = single_meaning(m) if len(ms) <= 1 else single_meaning(m, surface_meaning(m))
        elif want != "unset":
            res = undecided(m) if want is None else single_meaning(m, want)
        elif disambiguator is not None:
            res = disambiguator.resolve(question, m)
        else:
            res = undecided(m)
        resolutions.append(res)
        terms[m.term] = resolution_label(res, m)
    query = rewrite_query(question, matches, resolutions) if matches else question
    return terms, query


def to_record(item: dict[str, Any], glossary: Any, disambiguator: Any = None,
              evidence: dict[str, Any] | None = None) -> dict[str, Any]:
    """A dataset line: messages (system, user with ``evidence``, assistant JSON) and a ``meta`` block."""
    terms, query = target_for(item.get("standalone") or item["question"], glossary, item.get("intended"), disambiguator)
    messages = router_messages(item.get("standalone") or item["question"], evidence) + [
        {"role": "assistant", "content": route_answer(item["route"], terms)}]
    return {"messages": messages,
            "meta": {"route": item["route"], "terms": terms, "query": query, "kind": item["kind"],
                     "question": item["question"], "evidence": evidence,
                     # The grounded answer (fact statement / teacher answer) for the pipeline check.
                     "answer": item.get("source_text") or item.get("answer") or ""}}


def evidence_builder(index: Any, settings: Any) -> Any:
    """``question -> router_user evidence``: the serving engine's own terminology layer and
    retrieval (SignalRouter, no generation), so training rows carry exactly what the LoRA
    router sees at serving time. ``None`` for an index that cannot search."""
    if not all(hasattr(index, a) for a in ("search", "search_facts", "embedder")):
        return None
    routes = default_routes(settings.router)
    engine = Engine(settings, index, generator=ExtractiveGenerator(),
                    router=SignalRouter(routes, peak_threshold=settings.router.peak_threshold))

    def build(question: str, history: list[dict[str, str]] | None = None) -> dict[str, Any]:
        _, signals = engine.decide(question, history or None)
        out = evidence_from_signals(signals)
        out["_standalone"] = signals.question
        return out

    return build


def repeat_hard(train: list[dict[str, Any]], times: int) -> tuple[list[dict[str, Any]], int]:
    """Rows whose target route differs from the rule router's hint, repeated ``times`` times
    in the training split (the model must learn where the rules go wrong, not copy them);
    returns the rows and how many were hard.

    >>> rows = [{"meta": {"route": "fact", "evidence": {"hint": ["refuse", "高"]}}},
    ...         {"meta": {"route": "rag", "evidence": {"hint": ["rag", "高"]}}}]
    >>> out, hard = repeat_hard(rows, 3)
    >>> len(out), hard
    (4, 1)
    """
    def is_hard(r: dict[str, Any]) -> bool:
        hint = (r["meta"].get("evidence") or {}).get("hint")
        return bool(hint) and hint[0] != r["meta"]["route"]

    hard = [r for r in train if is_hard(r)]
    return train + hard * max(0, times - 1), len(hard)


_ASSUMED_ABSENT = {"unanswered", "absent_topic"}


def _supported(evidence: dict[str, Any]) -> bool:
    """The retrieval evidence says the knowledge base likely answers the question (the passages
    cover it and stand out), so an "absent topic" row would teach the wrong label.

    >>> _supported({"relevance": "高", "coverage": "高"}), _supported({"relevance": "高", "coverage": "低"})
    (True, False)
    """
    return evidence.get("relevance") in ("中", "高") and evidence.get("coverage") in ("中", "高")


def cap_routes(items: list[dict[str, Any]], limit: int | None, seed: int) -> tuple[list[dict[str, Any]], int]:
    """At most ``limit`` items per route (a deterministic, hash-ordered sample), so the
    templated glossary questions do not drown the rare routes; returns the kept items and
    how many were dropped.

    >>> kept, dropped = cap_routes([{"question": str(i), "route": "glossary"} for i in range(5)], 3, 0)
    >>> len(kept), dropped
    (3, 2)
    """
    if not limit:
        return items, 0
    keep: set[int] = set()
    by_route: dict[str, list[int]] = {}
    for i, it in enumerate(items):
        by_route.setdefault(it["route"], []).append(i)
    for idx in by_route.values():
        keep.update(sorted(idx, key=lambda i: split_key(seed + 7919, items[i]["question"]))[:limit])
    return [it for i, it in enumerate(items) if i in keep], len(items) - len(keep)


# --- the pipeline -------------------------------------------------------------------------
def distill(index: Any, out_home: str | Path, teacher: Any = None, seed: int = 0, progress: bool = True, *,
            settings: Any, eval_ratio: float = 0.15, max_chunks: int | None = None, use_teacher: bool = True,
            disambiguator: Any = None, max_per_route: int | None = 240,
            hard_repeat: int = 1, labelled: list[dict[str, Any]] | None = None) -> DatasetReport:
    """Build a versioned dataset from ``index`` (a :class:`retrieval.index.KnowledgeIndex` or
    anything with ``chunks``, ``facts``, ``glossary``) under ``out_home/datasets``.

    ``teacher`` is any object with ``generate(messages, max_tokens=, temperature=)``; default:
    ``router.llm.create_generator`` (the configured backend, key rotation on several keys).
    Teacher answers are cached in ``out_home/datasets/.teacher_cache.jsonl``. Every row's
    user turn carries the question's retrieval evidence (:func:`evidence_builder`).

    The steps, each a function below: gather candidate questions (templated, labelled by
    people, written by the teacher), filter and cap them, attach the retrieval evidence and
    the router's target answer, split, then publish the version with its manifest.
    """
    started = time.perf_counter()
    root = datasets_dir(out_home)
    root.mkdir(parents=True, exist_ok=True)
    warnings: list[str] = []
    items = templated_questions(index)
    cached, failures = None, {}
    if use_teacher and index.chunks:
        if teacher is None:
            teacher = build_teacher(settings)
        cached = CachedTeacher(teacher, TeacherCache(root / CACHE_NAME), _teacher_model(teacher))
        generated, failures = chunk_questions(list(index.chunks), cached, max_chunks, progress)
        items += generated
    elif use_teacher:
        warnings.append("the index has no chunks; no rag/refuse examples from a teacher")
    pairs = [{**it, "answer": it.get("answer", ""), "source": it.get("source", "")} for it in items]
    kept, removed = apply_filters(pairs)
    removed.update({f"teacher_{k}": v for k, v in failures.items()})
    kept, removed["route_cap"] = cap_routes(kept, max_per_route, seed)
    kept += labelled_questions(labelled)
    records, removed["refuse_contradicted"] = with_evidence(kept, index, settings, disambiguator, progress, warnings)
    train, evals = split_records(records, seed, eval_ratio)
    if not train:
        raise KBError(f"distillation produced no training example from index {getattr(index, 'version', '?')}")
    train, hard = repeat_hard(train, hard_repeat)
    manifest = dataset_manifest(index, train, evals, records, seed=seed, eval_ratio=eval_ratio, candidates=len(pairs),
                                hard=hard, hard_repeat=hard_repeat, removed=removed, teacher=teacher, cached=cached,
                                warnings=warnings)
    version, folder = publish_dataset(root, train, evals, manifest)
    counts = manifest["counts"]
    return DatasetReport(version=version, path=folder, train=len(train), eval=len(evals), per_route=counts["per_route"],
                         per_source=counts["per_source"], filters=removed, teacher_calls=cached.calls if cached else 0,
                         teacher_cache_hits=cached.hits if cached else 0,
                         teacher_failures=sum(failures.values()), seconds=round(time.perf_counter() - started, 2),
                         warnings=warnings)


def templated_questions(index: Any) -> list[dict[str, Any]]:
    """Questions made without a teacher: glossary, facts, section headings and refusals."""
    glossary = index.glossary
    return (glossary_questions(glossary) + fact_questions(list(index.facts), glossary)
            + heading_questions(list(index.chunks)) + off_topic_questions())


def labelled_questions(labelled: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """Questions written and labelled by people (an evaluation file of this knowledge base): the
    closest to how employees ask; follow-ups carry their conversation. They skip the filters and
    the route cap (they are few, and every one of them is wanted)."""
    return [{"question": q["question"], "route": q["route"], "kind": f"labelled_{q.get('kind') or 'plain'}",
             "history": q.get("history") or None} for q in (labelled or []) if q.get("route")]


def with_evidence(items: list[dict[str, Any]], index: Any, settings: Any, disambiguator: Any, progress: bool,
                  warnings: list[str]) -> tuple[list[dict[str, Any]], int]:
    """Dataset records with each question's retrieval evidence; also how many "absent topic"
    rows were dropped because this knowledge base does cover the topic."""
    evidence = evidence_builder(index, settings)
    if evidence is None:
        warnings.append("the index cannot search; rows carry no retrieval evidence")
    rows = tqdm(items, desc="evidence", unit="q") if progress and evidence is not None else items
    records, contradicted = [], 0
    for it in rows:
        ev = evidence(it["question"], it.get("history")) if evidence else None
        if ev is not None:
            it = {**it, "standalone": ev.pop("_standalone", "") or it.get("standalone", "")}
        if ev and it["kind"] in _ASSUMED_ABSENT and _supported(ev):
            contradicted += 1  # this knowledge base does cover the "absent" topic
            continue
        records.append(to_record(it, index.glossary, disambiguator, ev))
    return records, contradicted


def split_records(records: list[dict[str, Any]], seed: int, eval_ratio: float
                  ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(train, eval)`` by :func:`split_key` of each question: the same split on every run."""
    train = [r for r in records if split_key(seed, r["meta"]["question"]) >= eval_ratio]
    evals = [r for r in records if split_key(seed, r["meta"]["question"]) < eval_ratio]
    return train, evals


def dataset_manifest(index: Any, train: list[dict[str, Any]], evals: list[dict[str, Any]],
                     records: list[dict[str, Any]], *, seed: int, eval_ratio: float, candidates: int, hard: int,
                     hard_repeat: int, removed: dict[str, int], teacher: Any, cached: Any,
                     warnings: list[str]) -> dict[str, Any]:
    """What the dataset was made from and of (the ``manifest.json`` beside its files)."""
    glossary = index.glossary
    per_route = {"train": dict(Counter(r["meta"]["route"] for r in train)),
                 "eval": dict(Counter(r["meta"]["route"] for r in evals))}
    return {
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "seed": seed, "eval_ratio": eval_ratio,
        "index_version": getattr(index, "version", None),
        "sources": {
            "chunks_sha256": items_hash(c.chunk_id + "\0" + c.text for c in index.chunks),
            "facts_sha256": items_hash(f.fact_id + "\0" + f.statement for f in index.facts),
            "glossary_sha256": items_hash(f"{e.term}\0{m.english}\0{m.chinese}" for e in glossary for m in e.meanings),
        },
        "system_prompt_sha256": sha256_text(ROUTER_SYSTEM),
        "counts": {"train": len(train), "eval": len(evals), "per_route": per_route,
                   "per_source": dict(Counter(r["meta"]["kind"] for r in records)),
                   "candidates": candidates, "hard_rows": hard, "hard_repeat": hard_repeat},
        "filters": removed,
        "teacher": {"calls": cached.calls if cached else 0, "cache_hits": cached.hits if cached else 0,
                    "model": _teacher_model(teacher) if teacher is not None else None},
        "warnings": warnings,
    }


def _teacher_model(teacher: Any) -> str:
    inner = getattr(teacher, "generators", [teacher])[0]
    return f"{type(inner).__name__}:{getattr(inner, 'model', '') or getattr(inner, 'model_path', '')}"
