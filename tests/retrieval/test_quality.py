"""Retrieval quality on the demo knowledge base: the gold passage is in the top 5 for >= 90%,
on every vector backend (FAISS in process, Milvus Lite with its own BM25 full-text search)."""

from __future__ import annotations

import json
import re
from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / "data" / "retrieval_questions.jsonl"


def _squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


def test_gold_passage_in_top5_for_90_percent(backend_index):
    demo_index = backend_index
    questions = [json.loads(line) for line in DATA.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert len(questions) >= 30
    misses = []
    for q in questions:
        hits = demo_index.search(q["question"], k=5)
        found = any(h.chunk.source == q["source"] and _squash(q["gold"]) in _squash(h.chunk.text) for h in hits)
        if not found:
            misses.append((q["id"], q["question"], [h.chunk.source for h in hits]))
    recall = 1 - len(misses) / len(questions)
    print(f"top-5 recall {recall:.1%} on {len(questions)} questions; misses: {misses}")
    assert recall >= 0.90, misses
