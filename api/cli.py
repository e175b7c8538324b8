"""The ``kb`` command line. Every sub-command is a small function; heavy imports are lazy."""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator
from api.evalreports import record
from api.evaluation.assistant import evaluate_file, summary_table
from api.main import check_bind, create_app
from api.state import get_engine
from knowledge.demo import DOCS_DIR, GLOSSARY_DIR
from knowledge.glossary import Glossary, import_glossary
from retrieval.embedders import get_embedder
from router.indexing import build_index
from router.terms import EmbeddingDisambiguator, expand_batch
from router.verifier import Verifier
import shutil
from tqdm import tqdm

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from config import SettingsError, get_settings  # noqa: E402
from knowledge.core.errors import KBError  # noqa: E402
from knowledge.core.files import atomic_file, read_jsonl, write_jsonl  # noqa: E402
from finetune import cli as finetune_cli  # noqa: E402
from retrieval.store import IndexStore  # noqa: E402


def _settings() -> Any:
    return get_settings()


def _store() -> Any:
    settings = _settings()
    return IndexStore(settings.home, settings)


def _err(msg: str) -> None:
    print(f"kb: {msg}", file=sys.stderr)


def _dump(obj: Any) -> Any:
    return asdict(obj) if is_dataclass(obj) else obj


# --- ingest / index / search ----------------------------------------------------------
def cmd_ingest(args: argparse.Namespace) -> int:
    store = _store()
    paths = [Path(p) for p in args.paths]
    missing = [p for p in paths if not p.exists()]
    for p in missing:
        _err(f"{p}: no such file or folder")
    paths = [p for p in paths if p.exists()]
    if args.glossary:
        added = [store.add_glossary(p) for p in paths]
        print(f"added {len(added)} glossary file(s) to {store.home}", file=sys.stderr)
    else:
        report = store.ingest(paths)
        added = report.documents + [g["file"] for g in report.glossaries]
        for g in report.glossaries:
            print(f"{g['file']}: an abbreviation list ({g['entries']} terms): imported as the glossary, "
                  "not indexed as a document", file=sys.stderr)
        for note in report.notes:
            print(note, file=sys.stderr)
        print(f"added {len(report.documents)} document(s) to {store.home}", file=sys.stderr)
    if not args.no_index and added:
        return cmd_index(argparse.Namespace(full=False))
    return 1 if missing else 0


def cmd_index(args: argparse.Namespace) -> int:

    store = _store()
    if getattr(args, "rollback", False) or getattr(args, "publish", None):
        before = store.current_version()
        if args.publish:
            store.publish(args.publish)
        else:
            store.rollback()
        print(json.dumps({"published": store.current_version(), "previous": before}))
        return 0
    report = build_index(store, full=args.full, progress=True)
    store.prune(store.settings.retrieval.keep_versions)  # retention: old versions and crash leftovers
    rep = _dump(report)
    errors = rep.get("errors", []) if isinstance(rep, dict) else []
    for e in errors:
        _err(f"warning: {e}")
    summary = {k: v for k, v in rep.items() if k != "errors"} if isinstance(rep, dict) else rep
    print(json.dumps(summary, ensure_ascii=False, indent=1, default=str))
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    index = _store().load()
    hits = index.search(args.query, k=args.k)
    if args.json:
        out = [{"score": h.score, "dense": h.dense, "bm25": h.bm25, **h.citation(), "text": h.chunk.text}
               for h in hits]
        print(json.dumps(out, ensure_ascii=False, indent=1))
        return 0
    for i, h in enumerate(hits, 1):
        c = h.citation()
        page = f" p.{c['page']}" if c.get("page") else ""
        print(f"[{i}] {h.score:.4f} (cos {h.dense or 0:.3f})  {c['source']}{page}  {c['chunk_id']}")
        print("    " + h.chunk.text.replace("\n", " ")[:300])
    return 0


def cmd_glossary(args: argparse.Namespace) -> int:
    index = _store().load()
    entry = index.glossary.get(args.term)
    if entry is None:
        hits = index.glossary.search_meaning(args.term)
        if not hits:
            _err(f"{args.term!r} is not in the glossary")
            return 1
        for e, m in hits:
            print(f"{e.term}\t{m.english}\t{m.chinese}")
        return 0
    for m in entry.meanings:
        print(f"{entry.term}\t{m.english}\t{m.chinese}")
    return 0


# --- ask / serve / demo ---------------------------------------------------------------
def _read_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any] | None, str]]:
    """Yield (line number, object or None, error) for every non-blank line (objects only)."""
    for n, obj, error in read_jsonl(path):
        if not error and not isinstance(obj, dict):
            obj, error = None, f"line {n}: expected a JSON object"
        yield n, obj, error


def _run_batch(inp: Path, out: Path, fn: Callable[[dict[str, Any]], dict[str, Any]],
               required: Iterable[str], desc: str) -> int:
    """Apply ``fn`` to every line; bad lines become error records, never stop the batch."""

    if not inp.is_file():
        _err(f"{inp}: no such file")
        return 2
    lines = list(_read_jsonl(inp))
    failures = 0
    with atomic_file(out) as fh:
        for n, obj, error in tqdm(lines, desc=desc, unit="line", disable=None, file=sys.stderr):
            if obj is not None:
                lacking = [k for k in required if k not in obj]
                if lacking:
                    error = f"line {n}: missing field(s) {', '.join(lacking)}"
            if error:
                rec = {"id": (obj or {}).get("id"), "error": error}
            else:
                try:
                    rec = fn(obj)
                except Exception as exc:  # one bad line must not lose the rest
                    rec = {"id": obj.get("id"), "error": f"line {n}: {type(exc).__name__}: {exc}"}
            if "error" in rec:
                failures += 1
                _err(rec["error"])
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
    print(f"wrote {len(lines)} line(s) to {out} ({failures} error(s))", file=sys.stderr)
    return 1 if failures else 0


def _print_answer(ans: dict[str, Any]) -> None:
    print(ans["answer"])
    print(f"\n— route: {ans['route']} (confidence {ans['confidence']:.2f}), "
          f"verification: {ans['verification']['status']}, {ans['timings_ms'].get('total', 0):.0f} ms")
    for i, c in enumerate(ans["citations"], 1):
        page = f" p.{c['page']}" if c.get("page") else ""
        print(f"  [{i}] {c['source']}{page}: {c['quote'][:120]}")


def cmd_ask(args: argparse.Namespace) -> int:

    if args.batch:
        if not args.out:
            _err("--batch needs --out")
            return 2
        engine = get_engine()  # models loaded once for the whole batch

        def one(obj: dict[str, Any]) -> dict[str, Any]:
            return {"id": obj.get("id"), **engine.answer(obj["question"], obj.get("history")).to_dict()}

        return _run_batch(Path(args.batch), Path(args.out), one, ["question"], "ask")
    if not args.question:
        _err("give a QUESTION or --batch IN.jsonl --out OUT.jsonl")
        return 2
    ans = get_engine().answer(" ".join(args.question)).to_dict()
    if args.json:
        print(json.dumps(ans, ensure_ascii=False, indent=1))
    else:
        _print_answer(ans)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve the HTTP API; ``--workers N`` runs N processes on one KB_HOME (each follows the
    published ``current`` pointers, jobs run once per home, metrics are summed over workers)."""

    import uvicorn  # deferred: server only


    s = _settings()
    host = args.host or s.api.host
    port = args.port or s.api.port
    workers = getattr(args, "workers", None) or s.api.workers
    if getattr(args, "allow_insecure", False):
        s = s.model_copy(update={"api": s.api.model_copy(update={"allow_insecure_bind": True})})
    check_bind(host, s)  # ConfigError → exit status 1 with the reason
    print(f"serving on http://{host}:{port} with {workers} worker(s)  (web console: /ui/, OpenAI-compatible: /v1, "
          "native: /api/ask, health: /healthz)", file=sys.stderr)
    # proxy_headers=False: uvicorn would believe X-Forwarded-For from any local peer; the app
    # reads it itself, only from api.trusted_proxies (api.deps.client_of).
    # Counters of an earlier run's workers must not be summed into this one.
    shutil.rmtree(Path(s.home) / ".run" / "metrics", ignore_errors=True)
    if workers > 1:
        os.environ["KB_HOME"] = str(s.home)
        uvicorn.run("api.main:app_factory", factory=True, host=host, port=port, workers=workers, log_level="info",
                    proxy_headers=False)
    else:
        uvicorn.run(create_app(s), host=host, port=port, log_level="info", proxy_headers=False)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Copy the bundled demo knowledge base into KB_HOME, index it, then serve (or ask once)."""

    store = _store()
    store.add_documents(sorted(p for p in DOCS_DIR.iterdir() if p.is_file()))
    for g in sorted(GLOSSARY_DIR.iterdir()):
        if g.is_file():
            store.add_glossary(g)
    cmd_index(argparse.Namespace(full=False))
    if args.ask:
        return cmd_ask(argparse.Namespace(question=[args.ask], json=args.json, batch=None, out=None))
    print("\nTry:  curl -s http://127.0.0.1:%d/api/ask -H 'content-type: application/json' "
          "-d '{\"question\": \"AM出差住宿标准是多少？\"}'\n" % (args.port or _settings().api.port), file=sys.stderr)
    return cmd_serve(argparse.Namespace(host=args.host, port=args.port, workers=None, allow_insecure=False))


# --- batch tools: expand / verify -----------------------------------------------------------
def cmd_expand(args: argparse.Namespace) -> int:

    imported = import_glossary(Path(args.glossary))
    for row in imported.skipped:
        _err(f"glossary row {row.row} skipped: {row.reason}")
    glossary = Glossary(imported.entries)
    settings = _settings()
    disamb = EmbeddingDisambiguator.from_settings(get_embedder(settings), glossary, settings)
    inp, out = Path(args.batch), Path(args.out)
    if not inp.is_file():
        _err(f"{inp}: no such file")
        return 2
    items, bad = [], []
    for n, obj, error in _read_jsonl(inp):
        if obj is not None and not all(k in obj for k in ("id", "text", "term")):
            error = f"line {n}: needs id, text and term"
        (bad if error else items).append(error or obj)
    for e in bad:
        _err(e)
    write_jsonl(out, expand_batch(glossary, items, disamb))
    print(f"wrote {len(items)} line(s) to {out} ({len(bad)} bad line(s))", file=sys.stderr)
    return 1 if bad else 0


def cmd_verify(args: argparse.Namespace) -> int:

    verifier = Verifier()

    def one(obj: dict[str, Any]) -> dict[str, Any]:
        passages = obj["passages"]
        if not isinstance(passages, list):
            raise ValueError("passages must be a list of strings")
        v = verifier.check(str(obj["answer"]), [str(p) for p in passages], str(obj.get("question", "")))
        d = v.to_dict()
        return {"id": obj.get("id"), "status": d["status"],
                "numbers": [{k: n[k] for k in ("text", "value", "unit", "supported")} for n in d["numbers"]]}

    return _run_batch(Path(args.batch), Path(args.out), one, ["answer", "passages"], "verify")


# --- eval -----------------------------------------------------------------------------------
def cmd_eval(args: argparse.Namespace) -> int:
    """Answer a questions file with the assistant (and the naive baseline); write the report."""

    result = evaluate_file(Path(args.file), Path(args.report), settings=_settings(), generator=args.generator,
                           baseline=args.baseline, limit=args.limit)

    record(_settings().home, args.report)  # the admin console shows the latest report
    print(summary_table(result["metrics"]))
    print(f"\nwrote {args.report}/metrics.json, answers.jsonl, report.html "
          f"({result['config']['seconds']} s)", file=sys.stderr)
    return 0


# --- parser ---------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kb", description="Terminology-aware knowledge assistant.")
    sub = p.add_subparsers(dest="cmd", required=True)

    s = sub.add_parser("ingest", help="add documents (or --glossary files) to the knowledge base and index them")
    s.add_argument("paths", nargs="+")
    s.add_argument("--glossary", action="store_true", help="the files are glossaries (abbreviation lists)")
    s.add_argument("--no-index", action="store_true", help="copy only; run `kb index` later")
    s.set_defaults(fn=cmd_ingest)

    s = sub.add_parser("index", help="build a new index version (incremental unless --full)")
    s.add_argument("--full", action="store_true")
    s.add_argument("--rollback", action="store_true", help="publish the version before the current one")
    s.add_argument("--publish", metavar="VERSION", help="publish an existing version")
    s.set_defaults(fn=cmd_index)

    s = sub.add_parser("search", help="hybrid search with citations")
    s.add_argument("query")
    s.add_argument("--k", type=int, default=5)
    s.add_argument("--json", action="store_true")
    s.set_defaults(fn=cmd_search)

    s = sub.add_parser("glossary", help="glossary tools")
    gsub = s.add_subparsers(dest="gcmd", required=True)
    g = gsub.add_parser("lookup", help="meanings of a term (or terms whose meaning contains TEXT)")
    g.add_argument("term")
    g.set_defaults(fn=cmd_glossary)

    s = sub.add_parser("ask", help="answer a question (or a JSONL batch)")
    s.add_argument("question", nargs="*")
    s.add_argument("--json", action="store_true")
    s.add_argument("--batch", help="JSONL with {id, question} per line")
    s.add_argument("--out", help="output JSONL for --batch")
    s.set_defaults(fn=cmd_ask)

    s = sub.add_parser("serve", help="serve the HTTP API")
    s.add_argument("--host")
    s.add_argument("--port", type=int)
    s.add_argument("--workers", type=int, help="API worker processes on this KB_HOME (default api.workers)")
    s.add_argument("--allow-insecure", action="store_true",
                   help="serve a non-loopback address without KB_ADMIN_API_KEY")
    s.set_defaults(fn=cmd_serve)

    s = sub.add_parser("demo", help="build the bundled demo knowledge base and serve it")
    s.add_argument("--host")
    s.add_argument("--port", type=int)
    s.add_argument("--ask", help="answer one question instead of serving")
    s.add_argument("--json", action="store_true")
    s.set_defaults(fn=cmd_demo)

    s = sub.add_parser("expand", help="disambiguate abbreviations in a JSONL batch")
    s.add_argument("--glossary", required=True)
    s.add_argument("--batch", required=True)
    s.add_argument("--out", required=True)
    s.set_defaults(fn=cmd_expand)

    s = sub.add_parser("verify", help="check the numbers of answers against passages (JSONL batch)")
    s.add_argument("--batch", required=True)
    s.add_argument("--out", required=True)
    s.set_defaults(fn=cmd_verify)

    s = sub.add_parser("eval", help="evaluate the assistant on a JSONL questions file (HTML report)")
    s.add_argument("file", help="JSONL: {id, question, route?, expected?: [[alternatives]...], refuse?}")
    s.add_argument("--report", default="eval_report", help="output folder (default ./eval_report)")
    s.add_argument("--baseline", action=argparse.BooleanOptionalAction, default=True,
                   help="also run the naive retrieve-then-generate baseline (default on)")
    s.add_argument("--generator", help="llm backend for this run (e.g. extractive)")
    s.add_argument("--limit", type=int, help="only the first N questions")
    s.set_defaults(fn=cmd_eval)

    # The offline commands (distill, train, adapters) register themselves here: the one place
    # api imports finetune (see ARCHITECTURE.md); the server runs them only as `kb` subprocesses.
    finetune_cli.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except (KBError, SettingsError) as exc:  # config raises its own SettingsError (config imports nothing)
        _err(str(exc))
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
