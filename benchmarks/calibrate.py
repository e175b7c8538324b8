"""Fit the answerability weights on the development knowledge bases, report them held out.

For every question of every ``dev`` knowledge base (benchmarks/kbs/splits.json) the engine decides
the route (no generation) and records the evidence features of :mod:`router.evidence`; the label is
whether the question is answerable. A logistic regression over the features of
:data:`router.calibration.FEATURES` is fitted on all dev knowledge bases together, and its accuracy
is reported leave-one-knowledge-base-out (fit on the others, score on the one left out), which is
what a new company's knowledge base will see. Held-out knowledge bases are never read here.

    python benchmarks/calibrate.py                 # fit, print weights and per-KB figures
    python benchmarks/calibrate.py --write         # also write the weights into config/default.yaml

The per-index part of the calibration (the scale of the cosine margin) is measured at index time
from the knowledge base's own probe questions; this script uses the same function.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def collect(names: list[str], cache: Path) -> dict[str, list[tuple[dict[str, float], int, str]]]:
    """Per knowledge base: (features, answerable?, question id) for each question."""
    from benchmarks.kb_suite import build_home, kb_paths
    from config.settings import Settings
    from api.evaluation.assistant import load_questions
    from retrieval.store import IndexStore
    from router.calibration import calibrate_index, features_for
    from router.engine import Engine
    from router.llm.extractive import ExtractiveGenerator

    settings = Settings()
    out: dict[str, list[tuple[dict[str, float], int, str]]] = {}
    for name in names:
        home = build_home(name, cache, settings)
        s = settings.model_copy(update={"home": home})
        index = IndexStore(home, s).load()
        engine = Engine(s, index, generator=ExtractiveGenerator())
        engine.calibration = calibrate_index(engine)
        rows = []
        for q in load_questions(kb_paths(name)[2]):
            choice, signals = engine.decide(q["question"], q["history"] or None)
            if choice.route == "glossary" or signals.evidence is None:
                continue  # definitions are answered from the glossary, not judged on evidence
            rows.append((features_for(signals), int(q["route"] != "refuse"), q["id"]))
        out[name] = rows
        print(f"[{name}] {len(rows)} questions, calibration {engine.calibration.peak_mid}±"
              f"{engine.calibration.peak_scale}", file=sys.stderr)
    return out


def fit(rows: list[tuple[dict[str, float], int, str]], c: float) -> dict[str, float]:
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from router.calibration import FEATURES

    x = np.array([[r[0][f] for f in FEATURES] for r in rows])
    y = np.array([r[1] for r in rows])
    model = LogisticRegression(C=c, class_weight="balanced", max_iter=2000).fit(x, y)
    weights = {f: round(float(w), 3) for f, w in zip(FEATURES, model.coef_[0])}
    weights["bias"] = round(float(model.intercept_[0]), 3)
    return weights


def score(rows: list[tuple[dict[str, float], int, str]], weights: dict[str, float]) -> dict[str, float]:
    from router.calibration import FEATURES

    tp = fp = fn = tn = 0
    for feats, label, _ in rows:
        z = weights["bias"] + sum(weights[f] * feats[f] for f in FEATURES)
        pred = int(1 / (1 + math.exp(-z)) >= 0.5)
        tp += pred and label
        tn += (not pred) and (not label)
        fp += pred and not label
        fn += (not pred) and label
    n = max(1, tp + tn + fp + fn)
    ref_p = tn / (tn + fn) if tn + fn else None
    ref_r = tn / (tn + fp) if tn + fp else None
    return {"accuracy": round((tp + tn) / n, 3), "refusal_precision": ref_p and round(ref_p, 3),
            "refusal_recall": ref_r and round(ref_r, 3), "n": n}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cache", type=Path, default=Path(os.environ.get("KB_SUITE_CACHE", "/tmp/kb-suite")))
    parser.add_argument("--c", type=float, default=1.0, help="inverse L2 strength of the logistic regression")
    parser.add_argument("--write", action="store_true", help="write the fitted weights into config/default.yaml")
    args = parser.parse_args(argv)
    splits = json.loads((REPO / "benchmarks" / "kbs" / "splits.json").read_text(encoding="utf-8"))
    dev = splits["dev"]
    data = collect(dev, args.cache)
    every = [r for rows in data.values() for r in rows]
    weights = fit(every, args.c)
    print("\nweights fitted on", ", ".join(dev), json.dumps(weights))
    print(f"\n{'left out':<12}{'n':>5}{'acc':>8}{'refP':>8}{'refR':>8}   (fit on the other dev knowledge bases)")
    for name in dev:
        others = [r for k, rows in data.items() if k != name for r in rows]
        m = score(data[name], fit(others, args.c))
        print(f"{name:<12}{m['n']:>5}{m['accuracy']:>8}{m['refusal_precision']!s:>8}{m['refusal_recall']!s:>8}")
    from router.calibration import DEFAULT_WEIGHTS

    print(f"\n{'all (fitted)':<12}" + json.dumps(score(every, weights)))
    print(f"{'all (before)':<12}" + json.dumps(score(every, DEFAULT_WEIGHTS)))
    if args.write:
        path = REPO / "config" / "default.yaml"
        text = path.read_text(encoding="utf-8")
        block = "  answerability:           # fitted by benchmarks/calibrate.py on the dev knowledge bases\n" + "".join(
            f"    {k}: {v}\n" for k, v in weights.items())
        text = re.sub(r"  answerability:.*?\n((    .*\n)*)", "", text)
        text = text.replace("  ambiguity_margin:", block + "  ambiguity_margin:", 1)
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
