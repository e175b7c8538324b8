"""Scanned PDFs: pages without a text layer are read by OCR (the real PP-OCRv4 models of
rapidocr-onnxruntime), page by page, with confidences, a page limit and a report of the OCR'd
pages; a question about a figure on a scanned page is answered with that figure and its page.

The scans are made at test time from the demo's travel policy: its pages are rendered to
images and assembled into an image-only PDF (no text layer). Only two or three pages are
OCR'd in all (about 8 s a page on a free core).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from config.settings import IngestSettings, LLMSettings, Settings
from knowledge.demo import DOCS_DIR
from knowledge.errors import IngestError
from knowledge.loaders import load_document
from knowledge.ocr import OcrBox, group_rows
from knowledge.types import Chunk

POLICY = DOCS_DIR / "差旅费管理办法.pdf"


def make_pdf(dest: Path, pages: list[int], scanned: set[int], dpi: int = 200) -> Path:
    """A PDF of the policy's ``pages`` (0-based); those in ``scanned`` become images only."""
    import pymupdf

    src = pymupdf.open(POLICY)
    out = pymupdf.open()
    for i in pages:
        if i in scanned:
            pix = src[i].get_pixmap(dpi=dpi)
            page = out.new_page(width=src[i].rect.width, height=src[i].rect.height)
            page.insert_image(page.rect, pixmap=pix)
        else:
            out.insert_pdf(src, from_page=i, to_page=i)
    out.save(dest)
    return dest


def test_rows_in_reading_order_and_cells():
    from knowledge.loaders.pdf import _join_segment, _row_segments

    boxes = [OcrBox("每晚500元", 0.98, 400, 101, 520, 131), OcrBox("一类城市", 0.99, 100, 100, 220, 130),
             OcrBox("第二行", 0.97, 100, 150, 190, 180), OcrBox("ok", 0.9, 224, 102, 250, 128)]
    rows = group_rows(boxes)
    assert [[b.text for b in r] for r in rows] == [["一类城市", "ok", "每晚500元"], ["第二行"]]
    # A wide gap splits a row into table cells; close boxes join (a space only between Latin).
    assert [_join_segment(s) for s in _row_segments(rows[0])] == ["一类城市ok", "每晚500元"]


def test_scanned_pages_are_skipped_and_reported_without_ocr(tmp_path):
    scan = make_pdf(tmp_path / "scan.pdf", [0, 2], scanned={2})
    off = IngestSettings(ocr=False)
    doc = load_document(scan, options=off)
    assert {b.page for b in doc.blocks} == {1} and doc.ocr_pages == {}
    assert any("page(s) 2" in w and "ingest.ocr" in w for w in doc.warnings)
    only_scan = make_pdf(tmp_path / "only.pdf", [2], scanned={2})
    with pytest.raises(IngestError, match="ocr_max_pages=0"):
        load_document(only_scan, options=IngestSettings(ocr_max_pages=0))


def test_chunks_written_before_ocr_confidence_existed_still_load():
    old = {"chunk_id": "abc-0000", "source": "a.pdf", "text": "住宿费", "page": 2,
           "heading_path": [], "start": 0, "end": 3}
    assert Chunk.from_dict(old).ocr_confidence is None


def test_mixed_pdf_is_read_page_by_page(tmp_path):
    mixed = make_pdf(tmp_path / "mixed.pdf", [1, 2], scanned={2})  # page 1 text, page 2 a scan
    doc = load_document(mixed, options=IngestSettings())
    assert list(doc.ocr_pages) == [2] and doc.ocr_pages[2] > 0.9
    text_blocks = [b for b in doc.blocks if b.page == 1]
    scan_blocks = [b for b in doc.blocks if b.page == 2]
    assert text_blocks and all(b.ocr_confidence is None for b in text_blocks)
    assert scan_blocks and all(b.ocr_confidence is not None for b in scan_blocks)
    text = re.sub(r"\s+", "", doc.text)
    assert "一类城市每人每天120元" in text and "第二十一条" in text
    # The sentence cut by the page break is joined across text layer and OCR.
    assert "超标金额最高不得超过标准的20%" in text


def test_scanned_policy_is_answered_with_its_figure_and_page(tmp_path):
    from retrieval.store import IndexStore
    from router.engine import Engine

    src = tmp_path / "src"
    src.mkdir()
    make_pdf(src / "差旅费管理办法（扫描件）.pdf", [1, 2], scanned={1, 2})  # no text layer at all
    home = tmp_path / "kb"
    settings = Settings(home=home, llm=LLMSettings(backend="extractive"))
    store = IndexStore(home, settings)
    store.ingest([src])
    report = store.build()
    assert report.ok, report.errors
    assert report.ocr == [{"source": "差旅费管理办法（扫描件）.pdf", "pages": report.ocr[0]["pages"]}]
    assert list(report.ocr[0]["pages"]) == [1, 2]
    assert any("page(s) 1, 2" in n and "OCR" in n for n in report.notes)
    index = store.load()
    assert index.manifest["documents"]["差旅费管理办法（扫描件）.pdf"]["ocr_pages"].keys() == {"1", "2"}
    assert all(c.ocr_confidence is not None and c.ocr_confidence > 0.9 for c in index.chunks)

    # 第二十四条, on the scan's second page: "按每餐40元扣减伙食补助".
    answer = Engine(settings, index).answer("接待单位已提供工作餐的，每餐扣减多少伙食补助？").to_dict()
    assert answer["route"] in ("fact", "rag"), answer
    assert re.search(r"(?<!\d)40元", answer["answer"]), answer
    cited = answer["citations"][0]
    assert (cited["source"], cited["page"]) == ("差旅费管理办法（扫描件）.pdf", 2)
    assert "40元" in cited["quote"]
