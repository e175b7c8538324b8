"""A generator without a language model: it quotes the passage sentences that best match.

Useful where no model can run (tiny machines, tests) and as a baseline: every
word of the answer comes from a passage, so numbers are never invented. The
answer engine calls :meth:`ExtractiveGenerator.compose` directly;
:meth:`ExtractiveGenerator.generate` reads the passages back out of a prompt
built by :func:`router.llm.prompts.build_rag_messages`.
"""

from __future__ import annotations

import re
from functools import lru_cache

from router.llm.base import Generator, Message, register_generator
from router.llm.prompts import detect_language, parse_rag_messages, refusal_for
import logging

MAX_SENTENCES = 3
# Further sentences must score at least this share of the best one to be quoted too.
RELATIVE_CUTOFF = 0.6

_STOP_ZH = set(
    "的 了 是 在 和 与 及 或 吗 呢 吧 啊 么 什么 多少 怎么 怎样 如何 哪些 哪个 哪 几 请问 请 我 我们 你 您 "
    "他 她 它 这 那 这个 那个 一下 关于 有 有没有 是否 都 也 就 要".split()
)
_STOP_EN = set(
    "a an the is are was were be been being of to in on at for and or not what which who whom how when "
    "where why does do did can could should would will shall may might must i we you he she it they "
    "this that these those there with by as from about much many any some my our your their its me us".split()
)
_CJK_RUN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")
_WORD = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)?|\d+(?:[.,]\d+)*")
# Sentence ends: Chinese/full-width marks and ";" always, "." only before whitespace (keeps 1.5 and e.g.).
_SENTENCE_END = re.compile(r"(?<=[。！？!?；;])|(?<=[.])(?=\s)|\n")
_TRAILING_PUNCT = "。．.！!？?；;，,、：: "


@lru_cache(maxsize=1)
def _jieba():  # type: ignore[no-untyped-def]

    import jieba  # deferred: heavy: jieba's dictionary takes about 1 s to load

    jieba.setLogLevel(logging.WARNING)  # it prints dictionary-loading chatter otherwise
    return jieba


def split_sentences(text: str) -> list[str]:
    """Split text into sentences, keeping their end marks.

    >>> split_sentences("住宿每晚500元；餐费每天100元。Taxis are fine. Rate 1.5 applies")
    ['住宿每晚500元；', '餐费每天100元。', 'Taxis are fine.', 'Rate 1.5 applies']
    """
    pieces = (p.strip() for p in _SENTENCE_END.split(text))
    return [p for p in pieces if p and any(ch.isalnum() for ch in p)]


def tokens(text: str) -> list[str]:
    """Content words: jieba words for Chinese runs, lowercase words and numbers otherwise.

    >>> tokens("AM负责哪些客户？")
    ['am', '负责', '客户']
    >>> tokens("What is the hotel limit per night?")
    ['hotel', 'limit', 'per', 'night']
    """
    out: list[str] = []
    pos = 0
    for match in _CJK_RUN.finditer(text):
        out.extend(_latin_tokens(text[pos : match.start()]))
        out.extend(w for w in _jieba().lcut(match.group(), HMM=False) if w not in _STOP_ZH)
        pos = match.end()
    out.extend(_latin_tokens(text[pos:]))
    return out


def _latin_tokens(text: str) -> list[str]:
    return [w for w in (m.group().lower() for m in _WORD.finditer(text)) if w not in _STOP_EN]


def features(text: str) -> set[str]:
    """Words, pairs of neighbouring words, and character pairs inside long Chinese words.

    The character pairs let "住宿费" match "住宿" even when jieba cuts them differently.

    >>> sorted(features("hotel limit"))
    ['hotel', 'hotel limit', 'limit']
    """
    words = tokens(text)
    feats = set(words)
    feats.update(f"{a} {b}" for a, b in zip(words, words[1:]))
    for word in words:
        if len(word) >= 3 and _CJK_RUN.fullmatch(word):
            feats.update(word[i : i + 2] for i in range(len(word) - 1))
    return feats


def rank_sentences(question: str, passages: list[str]) -> list[tuple[float, int, str]]:
    """``(score, passage number, sentence)`` for every sentence, best first.

    Score = number of shared features with the question; ties keep passage order
    (passages arrive ranked by retrieval), then sentence order.

    >>> rank_sentences("hotel limit", ["Taxis are fine. The hotel limit is 80 USD."])[0]
    (3.0, 1, 'The hotel limit is 80 USD.')
    """
    wanted = features(question)
    scored = []
    for number, passage in enumerate(passages, start=1):
        for order, sentence in enumerate(split_sentences(passage)):
            score = float(len(wanted & features(sentence)))
            scored.append((score, number, order, sentence))
    scored.sort(key=lambda item: (-item[0], item[1], item[2]))
    return [(score, number, sentence) for score, number, _, sentence in scored]


def cite(sentence: str, number: int, lang: str) -> str:
    """Put ``[number]`` before the sentence's end mark.

    >>> cite("住宿每晚500元；", 2, "zh")
    '住宿每晚500元[2]。'
    >>> cite("The limit is 80 USD.", 1, "en")
    'The limit is 80 USD [1].'
    """
    body = sentence.rstrip(_TRAILING_PUNCT)
    end = sentence[len(body) :].strip()
    mark = end[-1] if end and end[-1] in "。！？!?" else ("。" if lang == "zh" else ".")
    return f"{body}[{number}]{mark}" if lang == "zh" else f"{body} [{number}]{mark}"


def compose(question: str, passages: list[str]) -> str:
    """Answer with the 1-3 passage sentences that best match the question, cited as [n].

    Returns the fixed refusal sentence when no sentence shares a word with the question.

    >>> compose("出差住宿标准是多少？", ["差旅费包括交通费。出差住宿标准为每晚500元。", "餐补每天100元。"])
    '出差住宿标准为每晚500元[1]。'
    """
    lang = detect_language(question)
    ranked = [item for item in rank_sentences(question, passages) if item[0] > 0]
    if not ranked:
        return refusal_for(lang)
    best = ranked[0][0]
    chosen: list[tuple[float, int, str]] = []
    for score, number, sentence in ranked:
        if len(chosen) == MAX_SENTENCES or score < RELATIVE_CUTOFF * best:
            break
        if all(sentence != s for _, _, s in chosen):
            chosen.append((score, number, sentence))
    joiner = "" if lang == "zh" else " "
    return joiner.join(cite(sentence, number, lang) for _, number, sentence in chosen)


class ExtractiveGenerator(Generator):
    """No model: quotes the best-matching passage sentences (deterministic)."""

    name = "extractive"

    def compose(self, question: str, passages: list[str]) -> str:
        """See :func:`compose`."""
        return compose(question, passages)

    def generate(
        self,
        messages: list[Message],
        *,
        max_tokens: int = 0,
        temperature: float = 0.0,
        stop: list[str] | None = None,
    ) -> str:
        """Answer the question in a :func:`build_rag_messages` prompt; sampling arguments are ignored."""
        question, passages = parse_rag_messages(messages)
        return compose(question, passages)


register_generator(ExtractiveGenerator.name, ExtractiveGenerator)
