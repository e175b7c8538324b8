"""The OCR interface (one required method, :meth:`OcrEngine.recognize`), its registry, and the
pure helper that puts recognised boxes back into reading order."""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass

from knowledge.core.registry import Registry


@dataclass
class OcrBox:
    """One recognised line segment: its text, the engine's confidence, and its pixel box."""

    text: str
    score: float
    x0: float
    y0: float
    x1: float
    y1: float

    @property
    def height(self) -> float:
        return self.y1 - self.y0


class OcrEngine(ABC):
    """Reads the text of a page image."""

    name: str = ""

    @abstractmethod
    def recognize(self, image: bytes) -> list[OcrBox]:
        """The text boxes of one PNG/JPEG image, in any order."""


def _same_row(a: OcrBox, b: OcrBox) -> bool:
    """Boxes on one baseline: their vertical extents overlap by more than half the smaller."""
    overlap = min(a.y1, b.y1) - max(a.y0, b.y0)
    return overlap > 0.5 * min(a.height, b.height)


def group_rows(boxes: list[OcrBox]) -> list[list[OcrBox]]:
    """Boxes grouped into rows (top to bottom), each row left to right: reading order.

    A box joins the row whose first box it shares a baseline with; detectors often split one
    printed line into several boxes (table cells, a wide gap), and may return them in any order.

    >>> b = lambda t, x, y: OcrBox(t, 0.9, x, y, x + 10, y + 10)
    >>> [[x.text for x in row] for row in group_rows([b("右", 50, 1), b("下", 0, 30), b("左", 0, 0)])]
    [['左', '右'], ['下']]
    """
    rows: list[list[OcrBox]] = []
    for box in sorted(boxes, key=lambda x: ((x.y0 + x.y1) / 2, x.x0)):
        for row in rows[-3:]:  # a row's boxes are close together in this order
            if _same_row(row[0], box):
                row.append(box)
                break
        else:
            rows.append([box])
    for row in rows:
        row.sort(key=lambda x: x.x0)
    rows.sort(key=lambda r: min(x.y0 for x in r))
    return rows


def render_dpi(width_pt: float, height_pt: float, dpi: int, max_pixels: int) -> int:
    """The resolution to render a ``width_pt`` x ``height_pt`` page at (PDF points, 72 a
    inch): ``dpi``, lowered so that the image has at most ``max_pixels`` pixels (a hostile
    page declares a size of metres; at 200 dpi that is gigabytes of pixels). At least 1.

    >>> render_dpi(595, 842, 200, 40_000_000)       # A4: unchanged
    200
    >>> render_dpi(14400, 14400, 200, 40_000_000)   # a 200-inch square page
    31
    """
    pixels = (width_pt * dpi / 72.0) * (height_pt * dpi / 72.0)
    if pixels <= max_pixels:
        return dpi
    scale = (max_pixels / pixels) ** 0.5
    return max(1, int(dpi * scale))


_REGISTRY: Registry[type[OcrEngine]] = Registry("OCR engine (ingest.ocr_engine)")
_INSTANCES: dict[tuple[str, int], OcrEngine] = {}
_LOCK = threading.Lock()


def register_ocr_engine(name: str, cls: type[OcrEngine]) -> None:
    """Make ``cls`` available under ``name``; registering a name twice is an error."""
    _REGISTRY.register(name, cls)


def available_ocr_engines() -> list[str]:
    return _REGISTRY.names()


def get_ocr_engine(name: str, threads: int = 1) -> OcrEngine:
    """The process-wide engine ``name`` (models load once; MissingExtraError if not installed)."""
    cls = _REGISTRY.get(name)
    with _LOCK:
        engine = _INSTANCES.get((name, threads))
        if engine is None:
            engine = _INSTANCES[(name, threads)] = cls(threads=threads)  # type: ignore[call-arg]
        return engine
