"""Evaluate the whole assistant the way users judge it, against a plain RAG baseline.

Input: a JSONL file, one question per line::

    {"id": "q01", "question": "AM出差住宿标准是多少？", "route": "fact",
     "expected": [["500元", "五百元"]], "refuse": false}

``route``, ``expected`` (groups of alternatives: every group needs one alternative in the
answer) and ``refuse`` are optional; so are ``history`` (earlier ``{"role", "content"}`` turns the
question follows up on), ``forbidden`` (strings a correct answer must not contain, e.g. a figure
injected into the question), ``kind`` (a label such as ``followup`` or ``near_absent``: metrics are
also broken down by it) and ``standalone`` (what a follow-up stands for; reported beside the
assistant's own rewrite). Metrics (each a pure function over records below):

* route accuracy and the confusion matrix (expected route x route taken);
* answer correctness: every expected group has one alternative in the answer (numbers
  compared as quantities, so ``3000元`` matches ``3,000元`` and ``三千元``, never ``13000元``);
* refusal precision and recall (a refusal = the refuse route or a refusal sentence);
* unsupported-number rate: numbers in answers found neither in the knowledge base (chunks,
  facts, glossary), nor derivable from the cited passages (the verifier), nor given in the
  question;
* citation correctness: a cited passage contains an alternative of some expected group;
* latency p50/p95 per route.

:func:`run_eval` answers every question with the engine (and the baseline, in the same
process with the same models) and returns the metrics plus per-question records;
:func:`evaluate_file` is what ``kb eval`` runs.
"""

from __future__ import annotations

import json
import math
import re
import sys
import time
import unicodedata
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from core.errors import KBError, ValidationError

ROUTES = ("glossary", "fact", "rag", "refuse")
SYSTEMS = ("ours", "baseline")

# --- text matching ------------------------------------------------------------------------
_CITE_MARK = re.compile(r"[\[【]\s*\d{1,2}(?:\s*[,，、]\s*\d{1,2})*\s*[\]】]")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_LONE_DOT = re.compile(r"(?<!\d)\.|\.(?!\d)")
# Punctuation and spacing that never changes what an answer says. "-", "~", "/", "%" and
# decimal points stay: they are part of ranges, ratios and numbers.
_DROP = set(" \t\r\n\u3000，,。、；;：:！!？?“”\"'‘’「」『』（）()【】[]《》<>〈〉·…*`#_")


def normalize_text(text: str) -> str:
    """Fold width and case, drop citation markers, thousands separators and punctuation.

    >>> normalize_text("每晚 3,000 元[1]。")
    '每晚3000元'
    >>> normalize_text("Account Manager (AM).")
    'accountmanageram'
    """
    t = unicodedata.normalize("NFKC", text).casefold()
    t = _CITE_MARK.sub("", t)
    t = _THOUSANDS.sub("", t)
    t = _LONE_DOT.sub("", t)
    return "".join(ch for ch in t if ch not in _DROP and not ch.isspace())


def _digit_edge(ch: str) -> bool:
    return ch.isdigit() or ch == "."


def text_contains(text: str, alternative: str) -> bool:
    """``alternative`` occurs in ``text`` after :func:`normalize_text`, numbers as whole tokens.

    >>> text_contains("住宿标准为每晚500元[1]。", "500元")
    True
    >>> text_contains("住宿标准为每晚1500元。", "500元")
    False
    >>> text_contains("The limit is 3,000 yuan.", "3000 yuan")
    True
    """
    hay, needle = normalize_text(text), normalize_text(alternative)
    if not needle:
        return False
    start = hay.find(needle)
    while start >= 0:
        end = start + len(needle)
        left_ok = not (needle[0].isdigit() and start > 0 and _digit_edge(hay[start - 1]))
        right_ok = not (needle[-1].isdigit() and end < len(hay) and _digit_edge(hay[end]))
        if left_ok and right_ok:
            return True
        start = hay.find(needle, start + 1)
    return False


def quantity_contains(text: str, alternative: str) -> bool:
    """Every quantity of ``alternative`` is stated in ``text`` and its other words occur too.

    This is how ``三千元`` and ``3,000元`` answer an expected ``3000元``.

    >>> quantity_contains("报销上限为三千元。", "3000元")
    True
    >>> quantity_contains("报销上限为每晚三千元。", "每晚3000元")
    True
    >>> quantity_contains("报销上限为一万三千元。", "3000元")
    False
    >>> quantity_contains("任何文字", "经理")
    False
    """
    from knowledge.numbers import extract_quantities, same_quantity

    wanted = extract_quantities(alternative)
    if not wanted:
        return False
    found = extract_quantities(text)
    if not all(any(same_quantity(w, f) for f in found) for w in wanted):
        return False
    hay = normalize_text(text)
    pieces, pos = [], 0
    for q in sorted(wanted, key=lambda q: q.start):
        pieces.append(alternative[pos:q.start])
        pos = max(pos, q.end)
    pieces.append(alternative[pos:])
    return all(normalize_text(p) in hay for p in pieces)


def contains_alternative(text: str, alternatives: Iterable[str]) -> bool:
    """One of ``alternatives`` occurs in ``text`` (as text, or as the same quantities).

    >>> contains_alternative("差旅补贴每天三百元", ["300元", "三百块"])
    True
    """
    return any(text_contains(text, a) or quantity_contains(text, a) for a in alternatives if a)


def answer_correct(answer: str, expected_groups: Sequence[Sequence[str]]) -> bool | None:
    """Every expected group has one alternative in the answer; ``None`` when nothing is expected.

    >>> answer_correct("AM指客户经理（Account Manager），住宿每晚3,000元。", [["客户经理"], ["3000元", "三千元"]])
    True
    >>> answer_correct("AM指客户经理。", [["客户经理"], ["3000元"]])
    False
    >>> answer_correct("anything", []) is None
    True
    """
    groups = [g for g in expected_groups if g]
    if not groups:
        return None
    return all(contains_alternative(answer, g) for g in groups)


# Refusals a plain LLM writes in its own words (the baseline has no fixed refusal sentence).
_REFUSAL_PHRASES = re.compile(
    r"(没有(找到|提到|提及|相关|涉及|包含|给出|说明|关于)|未(提及|提到|找到|涉及|包含|说明)|无法(回答|确定|找到|提供)|"
    r"不包含|并未|不清楚|不知道|资料中没有|上下文中没有|"
    r"(does|do) not (contain|mention|provide|include|say|specify)|not (mentioned|provided|specified|found)|"
    r"no (information|mention)|cannot (answer|determine|find)|can't (answer|determine|find)|"
    r"(don't|do not) know|unable to (answer|determine|find))",
    re.IGNORECASE,
)


def looks_like_refusal(answer: str, route: str = "") -> bool:
    """The system declined: the refuse route, the fixed refusal sentence, or a refusal phrase.

    Phrases count only in short answers, so an answer that states the fact and then adds
    "other details are not mentioned" is not a refusal.

    >>> looks_like_refusal("知识库中没有找到该问题的答案。")
    True
    >>> looks_like_refusal("根据提供的资料，没有提到年假天数。")
    True
    >>> looks_like_refusal("住宿每晚500元[1]。", route="rag")
    False
    >>> looks_like_refusal("", route="refuse")
    True
    """
    from router.llm.prompts import is_refusal

    if route == "refuse" or is_refusal(answer):
        return True
    return len(normalize_text(answer)) <= 80 and bool(_REFUSAL_PHRASES.search(answer))


# --- aggregate metrics --------------------------------------------------------------------
def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile with linear interpolation (numpy's default); ``None`` when empty.

    >>> percentile([1, 2, 3, 4], 50)
    2.5
    >>> percentile([10, 20, 30, 40, 50], 95)
    48.0
    >>> percentile([], 50) is None
    True
    """
    if not values:
        return None
    if not 0 <= q <= 100:
        raise ValidationError(f"percentile q must be within 0..100, got {q}")
    xs = sorted(float(v) for v in values)
    rank = (len(xs) - 1) * q / 100.0
    lo, hi = math.floor(rank), math.ceil(rank)
    return round(xs[lo] + (xs[hi] - xs[lo]) * (rank - lo), 6)


def confusion_matrix(pairs: Iterable[tuple[str, str]], labels: Sequence[str] = ROUTES) -> dict[str, dict[str, int]]:
    """Rows = expected route, columns = route taken; labels outside ``labels`` are appended.

    >>> m = confusion_matrix([("fact", "fact"), ("fact", "rag"), ("refuse", "refuse")], ["fact", "rag", "refuse"])
    >>> m["fact"]
    {'fact': 1, 'rag': 1, 'refuse': 0}
    """
    pairs = list(pairs)
    extra = sorted({x for p in pairs for x in p} - set(labels))
    names = [*labels, *extra]
    matrix = {e: {g: 0 for g in names} for e in names}
    for expected, got in pairs:
        matrix[expected][got] += 1
    return matrix


def route_accuracy(pairs: Iterable[tuple[str, str]]) -> float | None:
    """Share of (expected, got) pairs that agree; ``None`` when there are none.

    >>> route_accuracy([("fact", "fact"), ("rag", "refuse"), ("rag", "rag"), ("glossary", "glossary")])
    0.75
    """
    pairs = list(pairs)
    return round(sum(e == g for e, g in pairs) / len(pairs), 4) if pairs else None


def refusal_scores(pairs: Iterable[tuple[bool, bool]]) -> dict[str, Any]:
    """Precision and recall of refusing, from (should refuse, did refuse) pairs.

    >>> refusal_scores([(True, True), (True, False), (False, True), (False, False), (False, False)])
    {'precision': 0.5, 'recall': 0.5, 'tp': 1, 'fp': 1, 'fn': 1, 'tn': 2}
    """
    c = Counter((bool(s), bool(d)) for s, d in pairs)
    tp, fp, fn, tn = c[(True, True)], c[(False, True)], c[(True, False)], c[(False, False)]
    return {"precision": _ratio(tp, tp + fp), "recall": _ratio(tp, tp + fn), "tp": tp, "fp": fp, "fn": fn, "tn": tn}


def share(flags: Iterable[bool | None]) -> float | None:
    """Share of True among the non-None flags.

    >>> share([True, False, None, True])
    0.6667
    >>> share([None]) is None
    True
    """
    known = [f for f in flags if f is not None]
    return _ratio(sum(bool(f) for f in known), len(known))


def latency_summary(values: Sequence[float]) -> dict[str, Any]:
    """Count, p50, p95 and max of a list of milliseconds.

    >>> latency_summary([100, 200, 300])
    {'n': 3, 'p50': 200.0, 'p95': 290.0, 'max': 300.0}
    """
    return {"n": len(values), "p50": percentile(values, 50), "p95": percentile(values, 95),
            "max": round(float(max(values)), 1) if values else None}


def latency_by(records: Iterable[dict[str, Any]], key: str) -> dict[str, dict[str, Any]]:
    """:func:`latency_summary` of ``latency_ms`` grouped by ``record[key]``, plus ``all``.

    >>> latency_by([{"route": "fact", "latency_ms": 10}, {"route": "rag", "latency_ms": 30}], "route")["all"]["p50"]
    20.0
    """
    groups: dict[str, list[float]] = defaultdict(list)
    every: list[float] = []
    for r in records:
        if r.get("latency_ms") is None:
            continue
        groups[str(r.get(key) or "?")].append(float(r["latency_ms"]))
        every.append(float(r["latency_ms"]))
    out = {k: latency_summary(v) for k, v in sorted(groups.items())}
    out["all"] = latency_summary(every)
    return out


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 4) if b else None


# --- numbers of the knowledge base --------------------------------------------------------
class KBNumbers:
    """Every quantity stated anywhere in the knowledge base, extracted once.

    Lookup is by value, units compatible as in :func:`knowledge.numbers.same_quantity`
    (equal, or one side bare); both ends of a stated range count as stated.

    A bare number in an answer is also found when the same digits stand anywhere in the
    text, e.g. as a section number ("6.2 研发中心...") that is no quantity at the start of a line.

    >>> kb = KBNumbers(["住宿每晚500元，会议3-5天。", "6.2 研发中心采用Scrum。"])
    >>> [kb.contains(v, u) for v, u in ((500, "元"), (500, ""), (500, "%"), (5, "天"), (50, "元"))]
    [True, True, False, True, False]
    >>> kb.contains(6.2, ""), kb.contains(6.2, "元")
    (True, False)
    """

    def __init__(self, texts: Iterable[str]):
        from knowledge.numbers import extract_quantities

        self.units: dict[float, set[str]] = defaultdict(set)
        self.bare: set[float] = set()
        for text in texts:
            self.bare.update(_key(float(t.replace(",", ""))) for t in _DIGITS.findall(text))
            for q in extract_quantities(text, words=True):
                self.units[_key(q.value)].add(q.unit)
                if q.high is not None:
                    self.units[_key(q.high)].add(q.unit)

    @classmethod
    def from_index(cls, index: Any) -> "KBNumbers":
        """Chunks, facts and every glossary meaning of a loaded :class:`KnowledgeIndex`."""
        texts = [c.text for c in getattr(index, "chunks", [])]
        texts += [f.statement for f in getattr(index, "facts", [])]
        for entry in getattr(index, "glossary", None) or []:
            texts += [f"{entry.term} {m.english} {m.chinese}" for m in entry.meanings]
        return cls(texts)

    def contains(self, value: float, unit: str) -> bool:
        if not unit and _key(value) in self.bare:
            return True
        units = self.units.get(_key(value))
        if not units:
            return False
        return not unit or unit in units or "" in units

    def __len__(self) -> int:
        return len(self.units)


_DIGITS = re.compile(r"\d+(?:,\d{3})*(?:\.\d+)?")


def _key(value: float) -> float:
    # Float keys: round away representation noise (1e-9 relative, as same_quantity does).
    return float(f"{float(value):.9g}")


def check_numbers(answer: str, question: str, passages: list[tuple[str, str]], kb: KBNumbers,
                  verifier: Any) -> list[dict[str, Any]]:
    """Each number of the answer with ``supported`` and where its support was found.

    ``where``: "passages" (the verifier found it in, or derived it from, the cited passages),
    "kb" (stated somewhere in the knowledge base), "question" (the user gave it) or None.
    """
    from knowledge.numbers import extract_quantities, same_quantity

    if not answer.strip():
        return []
    checks = verifier.check(answer, passages, question).numbers
    asked = extract_quantities(question) if question else []
    out = []
    for n in checks:
        value, unit = float(n.value), n.unit or ""
        if n.supported:
            where = "passages"
        elif kb.contains(value, unit):
            where = "kb"
        elif any(same_quantity(_quantity(value, unit), q) for q in asked):
            where = "question"
        else:
            where = None
        out.append({"text": n.text, "value": n.value, "unit": unit, "supported": where is not None,
                    "where": where})
    return out


def _quantity(value: float, unit: str) -> Any:
    from core.types import Quantity

    return Quantity(text="", value=value, unit=unit)


# --- questions ----------------------------------------------------------------------------
def load_questions(path: Path) -> list[dict[str, Any]]:
    """Read and check an evaluation file (bad lines raise ValidationError naming the line)."""
    path = Path(path)
    if not path.is_file():
        raise ValidationError(f"{path}: no such questions file")
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    with open(path, encoding="utf-8-sig") as fh:
        for n, line in enumerate(fh, 1):
            if line.strip():
                q = _check_question(line, n, path)
                if q["id"] in seen:
                    raise ValidationError(f"{path}:{n}: duplicate id {q['id']!r}")
                seen.add(q["id"])
                out.append(q)
    return out


def _check_question(line: str, n: int, path: Path) -> dict[str, Any]:
    where = f"{path}:{n}"
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValidationError(f"{where}: invalid JSON ({exc.msg})") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("question"), str) or not obj["question"].strip():
        raise ValidationError(f"{where}: needs a non-empty string 'question', got {line.strip()[:80]!r}")
    route = obj.get("route")
    if route is not None and route not in ROUTES:
        raise ValidationError(f"{where}: route {route!r} is not one of {ROUTES}")
    expected = obj.get("expected") or []
    if isinstance(expected, str):
        expected = [[expected]]
    if not isinstance(expected, list) or not all(isinstance(g, (list, str)) for g in expected):
        raise ValidationError(f"{where}: expected must be a list of lists of strings, got {expected!r}")
    expected = [[g] if isinstance(g, str) else [str(a) for a in g] for g in expected]
    refuse = obj.get("refuse")
    refuse = bool(refuse) if refuse is not None else route == "refuse"
    history = obj.get("history") or []
    if not isinstance(history, list) or not all(
            isinstance(h, dict) and h.get("role") in ("user", "assistant") and isinstance(h.get("content"), str)
            for h in history):
        raise ValidationError(f"{where}: history must be a list of {{\"role\": \"user\"|\"assistant\", \"content\": str}}")
    forbidden = obj.get("forbidden") or []
    if isinstance(forbidden, str):
        forbidden = [forbidden]
    if not isinstance(forbidden, list) or not all(isinstance(f, str) for f in forbidden):
        raise ValidationError(f"{where}: forbidden must be a list of strings, got {forbidden!r}")
    return {"id": str(obj.get("id", f"line{n}")), "question": obj["question"].strip(), "route": route,
            "expected": expected, "refuse": refuse,
            "history": [{"role": h["role"], "content": h["content"]} for h in history],
            "forbidden": forbidden, "kind": str(obj.get("kind") or ""), "standalone": str(obj.get("standalone") or "")}


# --- running ------------------------------------------------------------------------------
def _ask_ours(engine: Any, question: str, history: list[dict[str, str]] | None = None) -> dict[str, Any]:
    t0 = time.perf_counter()
    out = engine.answer(question, history or None).to_dict()
    out.setdefault("timings_ms", {})
    out["latency_ms"] = round(out["timings_ms"].get("total") or (time.perf_counter() - t0) * 1000, 1)
    return out


def _ask_baseline(baseline: Any, question: str, history: list[dict[str, str]] | None = None) -> dict[str, Any]:
    # Naive RAG: the question alone, as plain retrieve-then-generate systems do.
    out = baseline.answer(question)
    out["latency_ms"] = round(out["timings_ms"]["total"], 1)
    return out


def _safe(ask: Callable[..., dict[str, Any]], system: Any, question: str,
          history: list[dict[str, str]] | None = None) -> dict[str, Any]:
    try:
        return ask(system, question, history)
    except Exception as exc:  # one failing question must not lose the run; it counts as wrong
        return {"answer": "", "route": "error", "citations": [], "error": f"{type(exc).__name__}: {exc}",
                "verification": {"status": "not_applicable", "numbers": []}, "timings_ms": {},
                "latency_ms": None}


def citation_texts(citations: list[dict[str, Any]], index: Any) -> list[tuple[str, str]]:
    """(id, full text) of each cited passage; glossary citations (and unknown ids) by their quote."""
    out = []
    for c in citations:
        cid = str(c.get("chunk_id") or "")
        text = c.get("quote") or ""
        if cid and not cid.startswith("glossary:"):
            try:
                text = index.chunk(cid).text
            except KBError:  # a citation of another index version: fall back to its quote
                pass
        out.append((cid, text))
    return out


def score_output(q: dict[str, Any], out: dict[str, Any], index: Any, kb: KBNumbers, verifier: Any) -> dict[str, Any]:
    """Add correctness, refusal, citation and number checks to one system's output."""
    answer = out.get("answer") or ""
    refused = "error" not in out and looks_like_refusal(answer, out.get("route", ""))
    passages = citation_texts(out.get("citations") or [], index)
    groups = q["expected"]
    forbidden_hit = [f for f in q.get("forbidden", []) if contains_alternative(answer, [f])]
    if q["refuse"]:
        correct: bool | None = refused
    else:
        correct = (not refused and bool(answer_correct(answer, groups)) and not forbidden_hit) if groups else None
    cited_ok = None
    if groups and not q["refuse"] and not refused and "error" not in out:
        cited_ok = any(contains_alternative(text, g) for _, text in passages for g in groups)
    numbers = [] if refused else check_numbers(answer, q["question"], passages, kb, verifier)
    return {**out, "refused": refused, "correct": correct, "citation_correct": cited_ok, "numbers": numbers,
            "forbidden_found": forbidden_hit}


def summarize(records: list[dict[str, Any]], system: str) -> dict[str, Any]:
    """All metrics of one system over scored records (``record[system]`` = its scored output)."""
    outs = [(r, r[system]) for r in records if system in r]
    routed = [(r["route"], o.get("route", "error")) for r, o in outs if r.get("route")]
    answerable = [o["correct"] for r, o in outs if r["expected"] and not r["refuse"]]
    numbers = [n for _, o in outs for n in o.get("numbers", [])]
    with_numbers = [o for _, o in outs if o.get("numbers")]
    lat = [{"route": o.get("route"), "expected_route": r.get("route"), "latency_ms": o.get("latency_ms")}
           for r, o in outs]
    return {
        "n": len(outs),
        "errors": sum("error" in o for _, o in outs),
        "overall_accuracy": share(o["correct"] for _, o in outs),
        "route_accuracy": route_accuracy(routed) if system == "ours" else None,
        "confusion": confusion_matrix(routed) if system == "ours" else None,
        "answer_correctness": share(answerable),
        "answerable": len(answerable),
        "refusal": refusal_scores((r["refuse"], o["refused"]) for r, o in outs),
        "unsupported_number_rate": _ratio(sum(not n["supported"] for n in numbers), len(numbers)),
        "answers_with_unsupported_numbers": _ratio(sum(any(not n["supported"] for n in o["numbers"])
                                                       for o in with_numbers), len(with_numbers)),
        "numbers_checked": len(numbers),
        "citation_correctness": share(o["citation_correct"] for _, o in outs),
        "latency_ms": {"by_route": latency_by(lat, "route"), "by_expected_route": latency_by(lat, "expected_route")},
        "by_kind": by_kind(outs),
    }


def by_kind(outs: list[tuple[dict[str, Any], dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Overall accuracy and route accuracy per question ``kind`` (questions without one: ``plain``).

    >>> by_kind([({"kind": "followup", "route": "fact"}, {"correct": True, "route": "fact"}),
    ...          ({"kind": "followup", "route": "rag"}, {"correct": False, "route": "refuse"})])
    {'followup': {'n': 2, 'accuracy': 0.5, 'route_accuracy': 0.5}}
    """
    groups: dict[str, list[tuple[dict[str, Any], dict[str, Any]]]] = defaultdict(list)
    for r, o in outs:
        groups[r.get("kind") or "plain"].append((r, o))
    return {k: {"n": len(v), "accuracy": share(o["correct"] for _, o in v),
                "route_accuracy": route_accuracy([(r["route"], o.get("route", "error")) for r, o in v if r.get("route")])}
            for k, v in sorted(groups.items())}


def run_eval(engine: Any, questions: list[dict[str, Any]], baseline: Any = None, *,
             progress: bool = False, kb: KBNumbers | None = None) -> dict[str, Any]:
    """Answer every question with ``engine`` (and ``baseline``) and compute all metrics.

    ``questions`` are dicts as :func:`load_questions` returns them (plain dicts with just
    ``question`` work too). Returns ``{"config", "metrics": {"ours", "baseline"?},
    "records": [...]}``; each record holds the question, what was expected and each
    system's scored output.
    """
    from router.verifier import Verifier

    questions = [_check_question(json.dumps(q, ensure_ascii=False), i, Path("<questions>"))
                 for i, q in enumerate(questions, 1)]
    index = engine.index
    kb = kb or KBNumbers.from_index(index)
    verifier = getattr(engine, "verifier", None) or Verifier()
    records = []
    t0 = time.perf_counter()
    for q in _progress(questions, progress):
        rec = {"id": q["id"], "question": q["question"], "route": q["route"], "expected": q["expected"],
               "refuse": q["refuse"], "kind": q["kind"], "history": q["history"], "standalone": q["standalone"],
               "forbidden": q["forbidden"]}
        rec["ours"] = score_output(q, _safe(_ask_ours, engine, q["question"], q["history"]), index, kb, verifier)
        if baseline is not None:
            rec["baseline"] = score_output(q, _safe(_ask_baseline, baseline, q["question"], q["history"]),
                                           index, kb, verifier)
        records.append(rec)
    metrics = {"ours": summarize(records, "ours")}
    if baseline is not None:
        metrics["baseline"] = summarize(records, "baseline")
    return {"config": _config(engine, baseline, len(records), time.perf_counter() - t0),
            "metrics": metrics, "records": records}


def _progress(items: list[Any], enabled: bool) -> Iterable[Any]:
    if not enabled:
        return items
    from tqdm import tqdm

    return tqdm(items, desc="eval", unit="q", file=sys.stderr)


def _config(engine: Any, baseline: Any, n: int, seconds: float) -> dict[str, Any]:
    s = engine.settings
    index = engine.index
    return {
        "questions": n,
        "seconds": round(seconds, 1),
        "generator": getattr(engine.generator, "name", type(engine.generator).__name__),
        "embedder": getattr(getattr(index, "embedder", None), "name", ""),
        "index_version": getattr(index, "version", ""),
        "chunks": len(getattr(index, "chunks", [])),
        "router": {"backend": s.router.backend, "glossary_threshold": s.router.glossary_threshold,
                   "fact_threshold": s.router.fact_threshold, "rag_threshold": s.router.rag_threshold},
        "top_k": s.retrieval.top_k,
        "baseline": baseline.describe() if baseline is not None else None,
    }


# --- kb eval ------------------------------------------------------------------------------
def evaluate_file(path: Path, report_dir: Path, *, settings: Any = None, generator: str | None = None,
                  baseline: bool = True, limit: int | None = None, progress: bool = True) -> dict[str, Any]:
    """Load the engine once, evaluate ``path`` and write metrics.json, report.html, answers.jsonl."""
    from config import get_settings
    from finetune.baseline import NaiveRAG
    from retrieval.store import IndexStore
    from router.engine import Engine

    questions = load_questions(Path(path))
    if limit is not None:
        questions = questions[: max(0, limit)]
    settings = settings or get_settings()
    if generator:
        settings = settings.model_copy(update={"llm": settings.llm.model_copy(update={"backend": generator})})
    index = IndexStore(settings.home).load()
    engine = Engine(settings, index)
    naive = NaiveRAG(index, engine.generator, settings) if baseline else None
    result = run_eval(engine, questions, naive, progress=progress)
    result["config"]["questions_file"] = str(path)
    write_outputs(result, Path(report_dir))
    return result


def write_outputs(result: dict[str, Any], report_dir: Path) -> dict[str, Path]:
    """metrics.json (config + metrics), answers.jsonl (one record per question), report.html."""
    from finetune.report import write_report

    report_dir.mkdir(parents=True, exist_ok=True)
    paths = {"metrics": report_dir / "metrics.json", "answers": report_dir / "answers.jsonl",
             "report": report_dir / "report.html"}
    metrics = {"config": result["config"], "metrics": result["metrics"]}
    paths["metrics"].write_text(json.dumps(metrics, ensure_ascii=False, indent=1), encoding="utf-8")
    with open(paths["answers"], "w", encoding="utf-8") as fh:
        for rec in result["records"]:
            fh.write(json.dumps(rec, ensure_ascii=False, default=str) + "\n")
    write_report(result, paths["report"])
    return paths


SUMMARY_ROWS: tuple[tuple[str, str, Callable[[dict[str, Any]], Any]], ...] = (
    ("overall accuracy", "rate", lambda m: m["overall_accuracy"]),
    ("route accuracy", "rate", lambda m: m["route_accuracy"]),
    ("answer correctness", "rate", lambda m: m["answer_correctness"]),
    ("refusal precision", "rate", lambda m: m["refusal"]["precision"]),
    ("refusal recall", "rate", lambda m: m["refusal"]["recall"]),
    ("unsupported-number rate", "rate", lambda m: m["unsupported_number_rate"]),
    ("citation correctness", "rate", lambda m: m["citation_correctness"]),
    ("latency p50 ms (all)", "ms", lambda m: m["latency_ms"]["by_route"]["all"]["p50"]),
    ("latency p95 ms (all)", "ms", lambda m: m["latency_ms"]["by_route"]["all"]["p95"]),
)


def summary_table(metrics: dict[str, Any]) -> str:
    """A plain-text table: one row per headline metric, one column per system."""
    systems = [s for s in SYSTEMS if s in metrics]
    lines = [f"{'metric':<28}" + "".join(f"{s:>12}" for s in systems)]
    for label, kind, get in SUMMARY_ROWS:
        lines.append(f"{label:<28}" + "".join(f"{_fmt(get(metrics[s]), kind):>12}" for s in systems))
    for s in systems:
        for route, lat in metrics[s]["latency_ms"]["by_route"].items():
            if route != "all":
                label = f"{s} {route} p50/p95 ms"
                lines.append(f"{label:<28}{_fmt(lat['p50'], 'ms'):>12}{_fmt(lat['p95'], 'ms'):>12}  n={lat['n']}")
    return "\n".join(lines)


def _fmt(v: Any, kind: str) -> str:
    """Rates with three decimals, milliseconds whole.

    >>> _fmt(0.5, "rate"), _fmt(1234.4, "ms"), _fmt(None, "ms")
    ('0.500', '1234', '-')
    """
    if v is None:
        return "-"
    return f"{v:.3f}" if kind == "rate" else f"{v:.0f}"
