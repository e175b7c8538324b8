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

The metric functions live in :mod:`api.evaluation.metrics`, the HTML report in
:mod:`api.evaluation.report`, the baseline in :mod:`api.evaluation.baseline`.

:func:`run_eval` answers every question with the engine (and the baseline, in the same
process with the same models) and returns the metrics plus per-question records;
:func:`evaluate_file` is what ``kb eval`` runs.
"""

from __future__ import annotations

import json
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from tqdm import tqdm

from knowledge.core.errors import KBError, ValidationError
from knowledge.core.files import atomic_write_json, write_jsonl
from api.evaluation.baseline import NaiveRAG
from api.evaluation.metrics import (ROUTES, SYSTEMS, KBNumbers, _ratio, answer_correct, check_numbers, confusion_matrix,
                                contains_alternative, latency_by, looks_like_refusal, refusal_scores, route_accuracy,
                                share)
from api.evaluation.report import write_report
from retrieval.store import IndexStore
from router.engine import Engine
from router.verifier import Verifier

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
def evaluate_file(path: Path, report_dir: Path, *, settings: Any, generator: str | None = None,
                  baseline: bool = True, limit: int | None = None, progress: bool = True) -> dict[str, Any]:
    """Load the engine once, evaluate ``path`` and write metrics.json, report.html, answers.jsonl."""
    questions = load_questions(Path(path))
    if limit is not None:
        questions = questions[: max(0, limit)]
    if generator:
        settings = settings.model_copy(update={"llm": settings.llm.model_copy(update={"backend": generator})})
    index = IndexStore(settings.home, settings).load()
    engine = Engine(settings, index)
    naive = NaiveRAG(index, engine.generator, settings) if baseline else None
    result = run_eval(engine, questions, naive, progress=progress)
    result["config"]["questions_file"] = str(path)
    write_outputs(result, Path(report_dir))
    return result


def write_outputs(result: dict[str, Any], report_dir: Path) -> dict[str, Path]:
    """metrics.json (config + metrics), answers.jsonl (one record per question), report.html."""
    report_dir.mkdir(parents=True, exist_ok=True)
    paths = {"metrics": report_dir / "metrics.json", "answers": report_dir / "answers.jsonl",
             "report": report_dir / "report.html"}
    atomic_write_json(paths["metrics"], {"config": result["config"], "metrics": result["metrics"]})
    write_jsonl(paths["answers"], result["records"])
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
