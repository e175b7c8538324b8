"""A real, small ``kb eval`` report: the first demo questions answered by an engine and written
with the evaluation module's own writer, then recorded as the knowledge base's latest report."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def write_eval_report(home: Path, engine: Any, n: int = 3) -> Path:
    from api.evalreports import record
    from api.evaluation.assistant import load_questions, run_eval, write_outputs
    from knowledge.demo import EVAL_QUESTIONS

    result = run_eval(engine, load_questions(EVAL_QUESTIONS)[:n], None)
    folder = Path(home).parent / "eval_report"
    write_outputs(result, folder)
    record(home, folder)
    return folder
