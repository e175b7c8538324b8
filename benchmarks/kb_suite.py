"""The assistant on every test knowledge base, one table per knowledge base, held-out ones named.

Each knowledge base under ``benchmarks/kbs/`` (see its README) is ingested the way a new user
would do it — its documents with ``kb ingest`` semantics (an abbreviation list among the documents
is detected as the glossary), its ``glossary/`` folder with ``kb ingest --glossary`` — and indexed
with the defaults into a cached home (rebuilt when the documents or the product's indexing code
change). Then its ``questions.jsonl`` is answered by the engine (and, with ``--baseline``, by the
naive retrieve-then-generate baseline on the same index and model) and scored by the same code as
``kb eval``.

    python benchmarks/kb_suite.py                           # every knowledge base, default generator
    python benchmarks/kb_suite.py --split dev --generator extractive
    python benchmarks/kb_suite.py --kbs hospital logistics --baseline --out reports/suite
    python benchmarks/kb_suite.py --set tiers --generator extractive     # the tier/condition set
    python benchmarks/kb_suite.py --set paired --generator extractive    # plain/colloquial/english forms

Prints, per knowledge base, the headline metrics and accuracy per question kind, then one summary
row per knowledge base; writes ``<out>/<kb>/metrics.json`` and ``answers.jsonl`` when ``--out``
is given. The ``split`` column says whether a knowledge base may be tuned on (``dev``) or is
``heldout``.

``--set`` picks the question file of each knowledge base (see ``benchmarks/kbs/README.md``):
``questions`` (default, ``questions.jsonl``), ``tiers`` (``tiers.jsonl``: which row of a tiered or
piecewise rule applies; adds accuracy per kind over all knowledge bases and a strict accuracy that
also fails an answer naming a figure of a row that does not apply, ``other_rows``) or ``paired``
(``paired.jsonl``: one question in three wordings; adds accuracy per form and the ratios
colloquial/plain and english/plain per knowledge base and overall). Knowledge bases without the
set's file are skipped.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
KBS = REPO / "benchmarks" / "kbs"
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def splits() -> dict[str, str]:
    """Knowledge-base name -> "dev" | "heldout" (benchmarks/kbs/splits.json)."""
    data = json.loads((KBS / "splits.json").read_text(encoding="utf-8"))
    return {name: split for split in ("dev", "heldout") for name in data.get(split, [])}


SETS = {"questions": "questions.jsonl", "tiers": "tiers.jsonl", "paired": "paired.jsonl"}
"""Question sets (``--set``) and the file each knowledge base keeps them in."""

FORMS = ("plain", "colloquial", "english")


def set_file(name: str, question_set: str = "questions") -> Path:
    """The question file of one set of one knowledge base (the demo's ``questions`` set ships in
    ``knowledge/demo``; its other sets live beside its sources in ``benchmarks/kbs/demo``)."""
    if question_set == "questions":
        return kb_paths(name)[2]
    return KBS / name / SETS[question_set]


def raw_lines(path: Path) -> dict[str, dict[str, Any]]:
    """Question id -> the line as written (keeps the fields ``load_questions`` drops: ``pair``,
    ``form``, ``other_rows``, ``derived``)."""
    out: dict[str, dict[str, Any]] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), 1):
        if line.strip():
            q = json.loads(line)
            out[str(q.get("id", f"line{n}"))] = q
    return out


def kb_paths(name: str) -> tuple[Path, Path | None, Path]:
    """(documents folder, glossary folder or None, questions file) of one knowledge base."""
    if name == "demo":
        from knowledge.demo import DOCS_DIR, EVAL_QUESTIONS, GLOSSARY_DIR

        return DOCS_DIR, GLOSSARY_DIR, EVAL_QUESTIONS
    root = KBS / name
    glossary = root / "glossary"
    return root / "docs", glossary if glossary.is_dir() else None, root / "questions.jsonl"


def _fingerprint(*folders: Path | None) -> str:
    """Hash of the documents and of the product code that shapes an index."""
    h = hashlib.sha256()
    for folder in folders:
        if folder is None:
            continue
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                h.update(p.name.encode())
                h.update(p.read_bytes())
    for pkg in ("knowledge", "retrieval"):
        for p in sorted((REPO / pkg).rglob("*.py")):
            h.update(p.read_bytes())
    # what the finalize step of a build writes: unit/vocabulary vectors and the calibration
    for p in ("router/indexing.py", "router/meaning.py", "router/calibration.py"):
        h.update((REPO / p).read_bytes())
    return h.hexdigest()[:16]


def build_home(name: str, cache: Path, settings: Any, rebuild: bool = False) -> Path:
    """Ingest and index one knowledge base into a cached home; return the home."""
    from retrieval.store import IndexStore

    docs, glossary, _ = kb_paths(name)
    home = cache / f"{name}-{_fingerprint(docs, glossary)}"
    store = IndexStore(home, settings.model_copy(update={"home": home}))
    if store.current_version() and not rebuild:
        return home
    t0 = time.perf_counter()
    report = store.ingest(sorted(p for p in docs.iterdir() if p.is_file())).to_dict()
    if glossary is not None:
        for g in sorted(glossary.iterdir()):
            if g.is_file():
                store.add_glossary(g)
    from router.indexing import build_index

    build = build_index(store, full=True)
    print(f"[{name}] indexed {build.documents} documents, {build.chunks} chunks, {build.facts} facts, "
          f"{build.glossary_entries} glossary entries in {time.perf_counter() - t0:.0f} s"
          + (f"; glossaries found among the documents: {report['glossaries']}" if report.get("glossaries") else ""),
          file=sys.stderr)
    return home


def run_kb(name: str, args: argparse.Namespace, settings: Any) -> dict[str, Any]:
    from api.evaluation.baseline import NaiveRAG
    from api.evaluation.assistant import load_questions, run_eval
    from retrieval.store import IndexStore
    from router.engine import Engine

    home = build_home(name, args.cache, settings, args.rebuild)
    s = settings.model_copy(update={"home": home})
    index = IndexStore(home, s).load()
    engine = Engine(s, index)
    questions = load_questions(set_file(name, args.set))
    if args.limit:
        questions = questions[: args.limit]
    naive = NaiveRAG(index, engine.generator, s) if args.baseline else None
    result = run_eval(engine, questions, naive, progress=not args.quiet)
    if args.out:
        from api.evaluation.assistant import write_outputs

        write_outputs(result, args.out / name)
    return result


def _share(values: list[bool]) -> float | None:
    return sum(values) / len(values) if values else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def set_records(name: str, question_set: str, result: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per answered question: id, kind, correct, and the set's own fields (pair, form,
    strict) read back from the question file."""
    from api.evaluation.metrics import contains_alternative  # like run_kb: the product is imported only when run

    raw = raw_lines(set_file(name, question_set))
    rows = []
    for r in result["records"]:
        line = raw.get(r["id"], {})
        ours = r["ours"]
        correct = bool(ours.get("correct"))
        other = line.get("other_rows") or []
        wrong_row = bool(other) and not r["refuse"] and contains_alternative(ours.get("answer") or "", other)
        rows.append({"kb": name, "id": r["id"], "kind": r.get("kind") or "plain", "correct": correct,
                     "strict": correct and not wrong_row, "wrong_row": wrong_row,
                     "pair": line.get("pair"), "form": line.get("form")})
    return rows


def tier_report(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Accuracy and strict accuracy (no figure of a row that does not apply) per kind."""
    kinds: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        kinds.setdefault(r["kind"], []).append(r)
    out = {k: {"n": len(v), "accuracy": _share([r["correct"] for r in v]),
               "strict": _share([r["strict"] for r in v])} for k, v in sorted(kinds.items())}
    out["all"] = {"n": len(rows), "accuracy": _share([r["correct"] for r in rows]),
                  "strict": _share([r["strict"] for r in rows])}
    return out


def paired_report(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Accuracy per form, the ratios colloquial/plain and english/plain, and the share of pairs
    answered correctly in all three forms."""
    by_form = {f: _share([r["correct"] for r in rows if r["form"] == f]) for f in FORMS}
    pairs: dict[str, list[bool]] = {}
    for r in rows:
        pairs.setdefault(f"{r['kb']}/{r['pair']}", []).append(r["correct"])
    full = [v for v in pairs.values() if len(v) == len(FORMS)]
    return {"n_pairs": len(pairs), "n": len(rows),
            "by_form": {f: {"n": sum(r["form"] == f for r in rows), "accuracy": by_form[f]} for f in FORMS},
            "colloquial/plain": _ratio(by_form["colloquial"], by_form["plain"]),
            "english/plain": _ratio(by_form["english"], by_form["plain"]),
            "all_three_correct": _share([all(v) for v in full])}


def print_set_report(label: str, question_set: str, report: dict[str, Any]) -> None:
    if question_set == "tiers":
        print(f"  {label} by kind (accuracy / strict): " + "  ".join(
            f"{k} {_f(v['accuracy'])}/{_f(v['strict'])} (n={v['n']})" for k, v in report.items()))
    elif question_set == "paired":
        forms = "  ".join(f"{f} {_f(v['accuracy'])} (n={v['n']})" for f, v in report["by_form"].items())
        print(f"  {label} by form: {forms}   colloquial/plain {_f(report['colloquial/plain'])}"
              f"   english/plain {_f(report['english/plain'])}   all three forms right {_f(report['all_three_correct'])}"
              f" ({report['n_pairs']} pairs)")


def _f(v: Any) -> str:
    return "-" if v is None else f"{v:.2f}"


def print_kb(name: str, split: str, result: dict[str, Any]) -> None:
    m = result["metrics"]["ours"]
    print(f"\n== {name} ({split}) — {m['n']} questions, {result['config']['seconds']:.0f} s, "
          f"generator {result['config']['generator']}")
    rows = [("route accuracy", m["route_accuracy"]), ("answer correctness", m["answer_correctness"]),
            ("overall accuracy", m["overall_accuracy"]), ("refusal precision", m["refusal"]["precision"]),
            ("refusal recall", m["refusal"]["recall"]), ("unsupported-number rate", m["unsupported_number_rate"])]
    base = result["metrics"].get("baseline")
    for label, value in rows:
        extra = ""
        if base is not None:
            b = {"answer correctness": base["answer_correctness"], "overall accuracy": base["overall_accuracy"],
                 "refusal precision": base["refusal"]["precision"], "refusal recall": base["refusal"]["recall"],
                 "unsupported-number rate": base["unsupported_number_rate"]}.get(label)
            extra = f"   baseline {_f(b)}" if label in ("answer correctness", "overall accuracy", "refusal precision",
                                                       "refusal recall", "unsupported-number rate") else ""
        print(f"  {label:<26}{_f(value):>6}{extra}")
    print("  by kind:  " + "  ".join(f"{k} {_f(v['accuracy'])} (n={v['n']})" for k, v in m["by_kind"].items()))
    lat = m["latency_ms"]["by_route"]
    print("  latency p50 ms: " + "  ".join(f"{r} {v['p50']:.0f}" for r, v in lat.items() if v["p50"] is not None))
    wrong = [r for r in result["records"] if r["ours"].get("correct") is False
             or (r.get("route") and r["ours"].get("route") != r["route"])]
    if wrong and not getattr(print_kb, "quiet_wrong", False):
        print(f"  wrong ({len(wrong)}):")
        for r in wrong:
            o = r["ours"]
            print(f"    {r['id']} [{r.get('kind') or 'plain'}] {r['route']}->{o.get('route')} "
                  f"{'ok' if o.get('correct') else 'WRONG'}: {r['question'][:40]} => {o.get('answer', '')[:70]!r}"
                  f"  ({o.get('reason', '')[:60]})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kbs", nargs="*", help="knowledge bases (default: all in splits.json)")
    parser.add_argument("--set", choices=sorted(SETS), default="questions",
                        help="question set: questions (default), tiers (tier/condition rules) or paired "
                             "(plain/colloquial/english forms of one question)")
    parser.add_argument("--split", choices=["dev", "heldout", "all"], default="all")
    parser.add_argument("--generator", help="llm.backend for this run (default: configured; e.g. extractive)")
    parser.add_argument("--router", help="router.backend for this run (signals | lora)")
    parser.add_argument("--baseline", action="store_true", help="also run naive RAG on the same index and model")
    parser.add_argument("--limit", type=int, help="first N questions of each knowledge base")
    parser.add_argument("--cache", type=Path, default=Path(os.environ.get("KB_SUITE_CACHE", "/tmp/kb-suite")))
    parser.add_argument("--rebuild", action="store_true", help="re-index even when a cached home exists")
    parser.add_argument("--out", type=Path, help="write metrics.json and answers.jsonl per knowledge base here")
    parser.add_argument("--json", type=Path, help="write the summary of every knowledge base to this file")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--no-wrong", action="store_true", help="do not list the wrong answers")
    args = parser.parse_args(argv)
    print_kb.quiet_wrong = args.no_wrong  # type: ignore[attr-defined]

    from config.settings import Settings

    settings = Settings()
    if args.generator:
        settings = settings.model_copy(update={"llm": settings.llm.model_copy(update={"backend": args.generator})})
    if args.router:
        settings = settings.model_copy(update={"router": settings.router.model_copy(update={"backend": args.router})})
    known = splits()
    names = args.kbs or [n for n, s in known.items() if args.split in ("all", s)]
    missing = [n for n in names if not set_file(n, args.set).is_file()]
    if missing:
        print(f"skipping knowledge bases without {SETS[args.set]}: {missing}", file=sys.stderr)
        names = [n for n in names if n not in missing]
    summary = {}
    all_rows: list[dict[str, Any]] = []
    reports = {"tiers": tier_report, "paired": paired_report}
    for name in names:
        result = run_kb(name, args, settings)
        print_kb(name, known.get(name, "?"), result)
        m = result["metrics"]
        summary[name] = {"split": known.get(name, "?"), "ours": _headline(m["ours"]),
                         "baseline": _headline(m["baseline"]) if "baseline" in m else None,
                         "seconds": result["config"]["seconds"], "by_kind": m["ours"]["by_kind"]}
        if args.set in reports:
            rows = set_records(name, args.set, result)
            all_rows += rows
            summary[name][args.set] = reports[args.set](rows)
            print_set_report(name, args.set, summary[name][args.set])
    print(f"\n{'knowledge base':<14}{'split':<9}{'n':>4}{'route':>7}{'answer':>8}{'overall':>9}{'ref.P':>7}"
          f"{'ref.R':>7}{'unsup':>7}{'base.ans':>10}")
    for name, s in summary.items():
        o, b = s["ours"], s["baseline"] or {}
        print(f"{name:<14}{s['split']:<9}{o['n']:>4}{_f(o['route']):>7}{_f(o['answer']):>8}{_f(o['overall']):>9}"
              f"{_f(o['refusal_p']):>7}{_f(o['refusal_r']):>7}{_f(o['unsupported']):>7}{_f(b.get('answer')):>10}")
    if args.set in reports and all_rows:
        overall = reports[args.set](all_rows)
        print(f"\n{args.set} set, every knowledge base above together:")
        if args.set == "paired":
            print(f"{'knowledge base':<14}{'pairs':>6}{'plain':>7}{'colloq':>8}{'english':>9}{'c/p':>6}{'e/p':>6}{'all3':>6}")
            for name, s_ in [*((n, v[args.set]) for n, v in summary.items()), ("overall", overall)]:
                f = s_["by_form"]
                print(f"{name:<14}{s_['n_pairs']:>6}{_f(f['plain']['accuracy']):>7}{_f(f['colloquial']['accuracy']):>8}"
                      f"{_f(f['english']['accuracy']):>9}{_f(s_['colloquial/plain']):>6}{_f(s_['english/plain']):>6}"
                      f"{_f(s_['all_three_correct']):>6}")
        else:
            print_set_report("all", args.set, overall)
        summary["_overall"] = {"set": args.set, args.set: overall}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary, ensure_ascii=False, indent=1), encoding="utf-8")
    return 0


def _headline(m: dict[str, Any]) -> dict[str, Any]:
    return {"n": m["n"], "route": m["route_accuracy"], "answer": m["answer_correctness"],
            "overall": m["overall_accuracy"], "refusal_p": m["refusal"]["precision"],
            "refusal_r": m["refusal"]["recall"], "unsupported": m["unsupported_number_rate"]}


if __name__ == "__main__":
    sys.exit(main())
