"""OCR for pages without a text layer: an engine interface, its registry, reading-order helpers.

Importing this package registers the built-in engine (``rapidocr``: PP-OCRv4 detection and
recognition from the ``rapidocr-onnxruntime`` wheel); the engine's own library is imported only
when a page is first read.
"""

from .base import (
    OcrBox,
    OcrEngine,
    available_ocr_engines,
    get_ocr_engine,
    group_rows,
    register_ocr_engine,
    render_dpi,
)
from .rapid import RapidOcrEngine

register_ocr_engine("rapidocr", RapidOcrEngine)

__all__ = [
    "OcrBox", "OcrEngine", "RapidOcrEngine", "available_ocr_engines", "get_ocr_engine", "group_rows",
    "register_ocr_engine", "render_dpi",
]
