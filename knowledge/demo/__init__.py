"""The bundled demo knowledge base: a fictional printing-technology company's policies.

Paths only (nothing heavy is imported): ``DOCS_DIR`` holds the built documents the demo ingests,
``GLOSSARY_DIR`` the company abbreviation list and ``EVAL_QUESTIONS`` the end-to-end
evaluation set. The text sources they are rendered from, and the renderer, are development
material outside the runtime packages (``benchmarks/kbs/demo/sources``, ``benchmarks/kbs/build.py``). See ``knowledge/demo/README.md`` for the company and its documents.
"""

from __future__ import annotations

from pathlib import Path

DEMO_DIR = Path(__file__).resolve().parent
DOCS_DIR = DEMO_DIR / "docs"
GLOSSARY_DIR = DEMO_DIR / "glossary"
GLOSSARY_FILE = GLOSSARY_DIR / "缩略语表.xlsx"
EVAL_QUESTIONS = DEMO_DIR / "eval_questions.jsonl"

__all__ = ["DEMO_DIR", "DOCS_DIR", "GLOSSARY_DIR", "GLOSSARY_FILE", "EVAL_QUESTIONS"]
