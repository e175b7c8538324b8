"""RapidOCR backend: PP-OCRv4 detection, orientation classifier and recognition (Chinese and
English) as ONNX models inside the ``rapidocr-onnxruntime`` wheel; nothing is downloaded.

About 8 s per A4 page rendered at 200 dpi on one free core (more on a busy one); most of it is
recognition, which grows with the number of text lines. onnxruntime runs with ``threads``
intra-op threads: on a shared machine one thread per OCR call is the fastest overall.
"""

from __future__ import annotations

import threading
from typing import Any

from knowledge.core.errors import MissingExtraError

from .base import OcrBox, OcrEngine


class RapidOcrEngine(OcrEngine):
    name = "rapidocr"

    def __init__(self, threads: int = 1):
        try:
            from rapidocr_onnxruntime import RapidOCR  # deferred: optional extra [ocr]
        except ImportError as exc:
            raise MissingExtraError("rapidocr-onnxruntime", "ocr") from exc
        self._ocr: Any = RapidOCR(intra_op_num_threads=threads)
        self._lock = threading.Lock()  # one onnxruntime session set, used by one page at a time

    def recognize(self, image: bytes) -> list[OcrBox]:
        with self._lock:
            result, _ = self._ocr(image)
        boxes = []
        for points, text, score in result or []:
            xs, ys = [p[0] for p in points], [p[1] for p in points]
            boxes.append(OcrBox(str(text), float(score), min(xs), min(ys), max(xs), max(ys)))
        return boxes
