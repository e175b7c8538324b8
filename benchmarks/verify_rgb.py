"""Number verifier on the RGB counterfactual set (``rgb/en_fact.json``).

For every item whose ``answer`` and ``fakeanswer`` both hold a quantity (amounts, dates), check
"The answer is {fakeanswer}." and "The answer is {answer}." against the item's ``positive``
passages: the fake must be flagged, the true answer must pass.

    python benchmarks/verify_rgb.py [--data DIR_OR_FILE] [--verbose] [--all-variants]

The data lives outside the repository (``../shared/evaldata`` next to the repo, or ``$KB_EVALDATA``)
and is never copied into it; without it the script says so and exits 0.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Iterator

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:          # run as a plain script from anywhere
    sys.path.insert(0, str(ROOT))

from knowledge.numbers import extract_quantities  # noqa: E402
from router.verifier import Verifier  # noqa: E402

DEFAULT_EVALDATA = Path(__file__).resolve().parents[2] / "shared" / "evaldata"


def data_file(arg: str | None) -> Path:
    """--data (a file or an evaldata folder), else $KB_EVALDATA, else ../shared/evaldata."""
    base = Path(arg or os.environ.get("KB_EVALDATA") or DEFAULT_EVALDATA)
    return base if base.suffix == ".json" else base / "rgb" / "en_fact.json"


def load_items(path: Path) -> list[dict[str, Any]]:
    """The file is JSON Lines in the RGB release; a plain JSON array is accepted too."""
    text = path.read_text(encoding="utf-8")
    if text.lstrip().startswith("["):
        return json.loads(text)
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def variants(answer: Any) -> list[str]:
    """Answer spellings: a string, or (nested) lists of acceptable strings."""
    if isinstance(answer, str):
        return [answer]
    out: list[str] = []
    for a in answer or []:
        out += variants(a)
    return out


def numeric(text: str) -> bool:
    return bool(extract_quantities(text))


def cases(items: list[dict[str, Any]], all_variants: bool) -> Iterator[tuple[dict, str, list[str]]]:
    """(item, fake, true spellings) for items whose answer and fake answer are both numeric."""
    for it in items:
        trues = variants(it.get("answer"))
        fakes = variants(it.get("fakeanswer"))
        if not trues or not fakes or not numeric(trues[0]) or not numeric(fakes[0]):
            continue
        yield it, fakes[0], (trues if all_variants else trues[:1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", help="evaldata folder or the en_fact.json file")
    ap.add_argument("--verbose", action="store_true", help="print every miss")
    ap.add_argument("--all-variants", action="store_true",
                    help="check every accepted spelling of the true answer, not only the first")
    args = ap.parse_args(argv)

    path = data_file(args.data)
    if not path.is_file():
        print(f"verify_rgb: skipped: {path} not found (set --data or KB_EVALDATA)")
        return 0
    verifier = Verifier()
    n = flagged = true_total = passed = 0
    for it, fake, trues in cases(load_items(path), args.all_variants):
        n += 1
        positive = [p for p in it.get("positive", []) if isinstance(p, str)]
        v = verifier.check(f"The answer is {fake}.", positive, question=it.get("query", ""))
        if v.status == "flagged":
            flagged += 1
        elif args.verbose:
            ok = [(c.text, c.evidence, c.detail) for c in v.numbers]
            print(f"  MISS fake id={it.get('id')} {fake!r} -> {v.status} {ok}")
        for true in trues:
            true_total += 1
            v = verifier.check(f"The answer is {true}.", positive, question=it.get("query", ""))
            if v.status == "verified":
                passed += 1
            elif args.verbose:
                bad = [c.text for c in v.unsupported]
                print(f"  MISS true id={it.get('id')} {true!r} -> {v.status} unsupported={bad}")
    if not n:
        print(f"verify_rgb: no numeric items in {path}")
        return 0
    print(f"verify_rgb: n={n} flag_rate(fake)={100 * flagged / n:.1f}% "
          f"pass_rate(true)={100 * passed / true_total:.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
