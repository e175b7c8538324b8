"""The plain baseline a user would otherwise pick: naive retrieve-then-generate.

Same embedder, same index and same LLM as the assistant, but no terminology layer, no
routing, no verifier and no refusal rule: dense top-k passages go into a plain "answer
using the context" prompt and the model's raw text is the answer. Its "citations" are the
passages it was given (what a plain RAG app lists as sources), so citation correctness for
the baseline is lenient: any of its k passages may hold the expected fact.
"""

from __future__ import annotations

import time
from typing import Any
from router.llm.prompts import detect_language

PROMPTS = {
    "zh": "请根据以下内容回答问题。\n\n{context}\n\n问题：{question}\n回答：",
    "en": "Answer the question using the context below.\n\n{context}\n\nQuestion: {question}\nAnswer:",
}


def naive_messages(question: str, passages: list[str], lang: str) -> list[dict[str, str]]:
    """One user message: the passages, then the question (no system rules, no citation format).

    >>> naive_messages("住宿标准？", ["住宿每晚500元。"], "zh")[0]["content"]
    '请根据以下内容回答问题。\\n\\n住宿每晚500元。\\n\\n问题：住宿标准？\\n回答：'
    """
    template = PROMPTS["zh" if lang == "zh" else "en"]
    context = "\n\n".join(p.strip() for p in passages)
    return [{"role": "user", "content": template.format(context=context, question=question.strip())}]


class NaiveRAG:
    """Dense top-k from the same index -> plain prompt -> raw LLM text.

    ``answer(question)`` returns a dict shaped like the assistant's answer object so both
    are scored by the same code (route is always "rag", verification "not_applicable").
    """

    name = "naive-rag"

    def __init__(self, index: Any, generator: Any, settings: Any, k: int | None = None):
        self.index = index
        self.generator = generator
        self.settings = settings
        self.k = k or settings.retrieval.top_k

    def answer(self, question: str) -> dict[str, Any]:
        t0 = time.perf_counter()
        hits = self.index.dense_search(question, k=self.k)
        t1 = time.perf_counter()
        passages = [h.chunk.text for h in hits]
        llm = self.settings.llm
        if hasattr(self.generator, "compose"):
            # The extractive backend has no model to read a free-form prompt; give it the parts.
            text = self.generator.compose(question, passages)
        else:
            messages = naive_messages(question, passages, detect_language(question))
            text = self.generator.generate(messages, max_tokens=llm.max_tokens, temperature=llm.temperature)
        t2 = time.perf_counter()
        return {
            "answer": (text or "").strip(),
            "route": "rag",
            "confidence": None,
            "citations": [h.citation() for h in hits],
            "verification": {"status": "not_applicable", "numbers": []},
            "timings_ms": {"retrieve": round((t1 - t0) * 1000, 1), "generate": round((t2 - t1) * 1000, 1),
                           "total": round((t2 - t0) * 1000, 1)},
        }

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "k": self.k, "retrieval": "dense",
                "generator": getattr(self.generator, "name", type(self.generator).__name__),
                "prompt": PROMPTS}
