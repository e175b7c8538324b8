"""Data records shared by the layers: ingestion, indexing, terminology and answering.

Plain dataclasses with no behaviour beyond (de)serialising themselves, so every layer can
import them (``knowledge.core`` imports nothing of the project). Offsets (``start``/``end``) of document
records are character offsets into :attr:`LoadedDocument.text`, the document's full text as the
loader produced it, so a citation can always be re-quoted; offsets of a :class:`TermMatch` are
offsets into the text that was searched.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass
class Block:
    """One structural unit of a document: a heading, paragraph, list item, table row or article."""

    text: str
    kind: str = "para"          # heading | para | list | table | article | note
    page: int | None = None     # 1-based page/slide/sheet number where the format has one
    level: int = 0              # heading level (1 = top) for kind == "heading"
    ocr_confidence: float | None = None  # mean OCR confidence when the text was read by OCR


@dataclass
class LoadedDocument:
    """A document as a loader read it: ordered blocks plus problems worth telling the user."""

    source: str                 # path relative to the documents folder (used in citations)
    blocks: list[Block]
    sha256: str = ""
    title: str = ""
    warnings: list[str] = field(default_factory=list)
    ocr_pages: dict[int, float] = field(default_factory=dict)  # page -> mean OCR confidence

    @property
    def text(self) -> str:
        """Blocks joined by blank lines; chunk offsets refer to this string."""
        return "\n\n".join(b.text for b in self.blocks)


@dataclass
class Chunk:
    chunk_id: str
    source: str
    text: str
    page: int | None = None
    heading_path: list[str] = field(default_factory=list)
    start: int = 0
    end: int = 0
    # Mean confidence of the OCR'd text in this chunk (None: the text came from a text layer).
    # Optional with a default, so chunks.jsonl files written before it still load.
    ocr_confidence: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Chunk":
        return cls(**d)


@dataclass
class Quantity:
    """A number found in text, normalised: ``3万元`` -> value 30000, unit ``元``."""

    text: str                   # the surface form, e.g. "3万元"
    value: float
    unit: str = ""              # normalised unit: 元, %, 天, 小时, 人, 次, 年, 月, 日, date, ...
    start: int = 0
    end: int = 0
    high: float | None = None   # upper end of a range ("3-5天" -> value 3, high 5)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Fact:
    """A statement of a quantity, its subject and conditions, with its source span."""

    fact_id: str
    statement: str
    subject: str
    values: list[Quantity]
    conditions: list[str]
    source: str
    chunk_id: str
    page: int | None = None
    start: int = 0
    end: int = 0
    # The rule row the clause states (``knowledge.rules.RuleRow.to_dict()``: condition, value,
    # direction, piecewise rule), or None. Optional, so facts.jsonl files written before it load.
    rule: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Fact":
        """A fact from its dict; keys it does not know are ignored and missing optional ones default.

        >>> f = Fact.from_dict({"fact_id": "f", "statement": "年假5天", "subject": "年假", "values": [],
        ...                     "conditions": [], "source": "a.md", "chunk_id": "c"})
        >>> f.rule is None
        True
        """
        known = {f.name for f in fields(cls)}
        d = {k: v for k, v in d.items() if k in known}
        d["values"] = [Quantity(**q) for q in d.get("values", [])]
        return cls(**d)


@dataclass
class Meaning:
    """One meaning of a glossary term."""

    english: str = ""           # English long form (may be empty)
    chinese: str = ""           # Chinese explanation (may be empty)
    description: str = ""       # a further explanation (an English "Description" column); optional

    @property
    def label(self) -> str:
        return self.chinese or self.english


@dataclass
class GlossaryEntry:
    term: str                   # the abbreviation as the glossary spells it
    meanings: list[Meaning]
    source: str = ""            # file the entry came from
    rows: list[int] = field(default_factory=list)  # 1-based rows in that file

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "GlossaryEntry":
        d = dict(d)
        d["meanings"] = [Meaning(**m) for m in d.get("meanings", [])]
        return cls(**d)


@dataclass
class SkippedRow:
    row: int
    reason: str


@dataclass
class TermMatch:
    """One glossary term found in a text.

    ``via`` is ``"abbr"`` when the abbreviation itself was found and ``"meaning"`` when one of
    its meanings was written out (``surface`` is then the long form as written).
    """

    term: str
    surface: str
    start: int
    end: int
    entry: GlossaryEntry
    via: str = "abbr"

    def to_dict(self) -> dict[str, Any]:
        return {"term": self.term, "surface": self.surface, "start": self.start,
                "end": self.end, "via": self.via}


@dataclass
class TermResolution:
    """What the context says one term means.

    ``expansion``/``meaning`` are the best meaning's English long form and Chinese
    explanation (the best guess even when ``decided`` is False); ``alternatives`` the other
    meanings with their calibrated scores, best first.
    """

    term: str
    expansion: str = ""
    meaning: str = ""
    confidence: float = 1.0
    alternatives: list[dict[str, Any]] = field(default_factory=list)
    decided: bool = True

    def to_dict(self) -> dict[str, Any]:
        """The answer JSON's ``terms`` item."""
        return {"term": self.term, "expansion": self.expansion, "meaning": self.meaning,
                "alternatives": [dict(a) for a in self.alternatives],
                "confidence": round(float(self.confidence), 4), "decided": self.decided}
