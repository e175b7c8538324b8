"""Contained documents: a hostile file costs bounded time and memory to read.

A spreadsheet that declares ``A1:XFD20000`` over 20,000 one-cell rows, a DOCX whose XML
inflates past the cap, a page too large to render, and a reading child that runs past its
CPU, memory or wall-clock limit. Every read that could hang without its fix runs in a limited
child (:func:`knowledge.bounded.call_bounded`), so a regression fails the test instead of
hanging it.
"""

from __future__ import annotations

import io
import os
import random
import string
import struct
import sys
import time
import zipfile
from pathlib import Path

import pytest

from config.settings import IngestSettings
from knowledge.bounded import Limits, call_bounded
from knowledge.errors import IngestError
from knowledge.loaders import load_document
from fakes.hostile_files import SHEET_NS, hostile_xlsx

LIMITS = Limits(cpu_s=60, memory_mb=1024, timeout_s=60)


def _inspect(path: Path, limits: Limits = LIMITS, **ingest: object) -> list[str]:
    """The loader's warnings, read in a limited child (a hang becomes an IngestError)."""
    options = IngestSettings(**ingest).model_dump(mode="json")
    return call_bounded("knowledge.loaders:inspect_document", path, {"path": str(path), "options": options}, limits)


# ---------------------------------------------------------------- spreadsheets

def test_declared_dimension_does_not_pad_rows(tmp_path):
    path = hostile_xlsx(tmp_path / "wide.xlsx")
    assert path.stat().st_size < 200_000
    started = time.monotonic()
    warnings = _inspect(path)            # in 1 GB of address space and 60 s, or it fails
    assert time.monotonic() - started < 30
    assert any("declares 327680000 cells" in w and "ingest.max_sheet_cells" in w for w in warnings), warnings
    doc = load_document(path)            # and in this process: every row, one cell each
    rows = [b for b in doc.blocks if b.kind == "table"]
    assert len(rows) == 20_000 and rows[0].text == "v1" and rows[-1].text == "v20000"
    assert doc.warnings == warnings


def test_cells_a_sheet_really_holds_are_read_within_the_budget(tmp_path):
    # Every row's one cell sits in the last column: 16,384 cells a row once padded.
    path = hostile_xlsx(tmp_path / "far.xlsx", column="XFD")
    warnings = _inspect(path, max_sheet_cells=200_000)
    assert any("was read only up to row 12" in w and "max_sheet_cells=200000" in w for w in warnings), warnings
    docs = load_document(path, options=IngestSettings(max_sheet_cells=200_000))
    assert len([b for b in docs.blocks if b.kind == "table"]) == 12


def test_trailing_empty_cells_and_rows_are_dropped(tmp_path):
    from openpyxl import Workbook

    from knowledge.loaders.sheet import read_xlsx_rows

    wb = Workbook()
    ws = wb.active
    ws.append(["城市", "标准", None, None])
    ws.append(["北京", 600])
    ws["Z40"] = ""                       # an empty string far away widens the declared range
    wb.save(tmp_path / "t.xlsx")
    sheets, warnings = read_xlsx_rows(tmp_path / "t.xlsx")
    assert sheets[0][1] == [["城市", "标准"], ["北京", "600"]] and warnings == []


# ---------------------------------------------------------------- XML size and pixel caps

def _noise(n: int) -> str:
    rng = random.Random(7)
    return "".join(rng.choice(string.ascii_letters) for _ in range(n))


def _docx_with_large_xml(path: Path, padding: int) -> Path:
    import docx

    d = docx.Document()
    d.add_paragraph("报销标准：每晚500元。")
    buf = io.BytesIO()
    d.save(buf)
    with zipfile.ZipFile(io.BytesIO(buf.getvalue())) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "word/document.xml":  # incompressible padding: passes the zip-ratio check
                data = data.replace(b"<w:body>", b"<w:body><!--" + _noise(padding).encode() + b"-->", 1)
            dst.writestr(info.filename, data)
    return path


def test_docx_whose_xml_inflates_past_the_cap_is_refused_unparsed(tmp_path):
    path = _docx_with_large_xml(tmp_path / "big.docx", 3 * 1024 * 1024)
    with pytest.raises(IngestError, match=r"word/document\.xml inflates to more than 1 MB .*ingest\.max_xml_mb"):
        load_document(path, options=IngestSettings(max_xml_mb=1))
    assert "500元" in load_document(path, options=IngestSettings(max_xml_mb=8)).text


def test_pptx_xml_past_the_cap_is_refused_unparsed(tmp_path):
    from pptx import Presentation

    deck = Presentation()
    slide = deck.slides.add_slide(deck.slide_layouts[1])
    slide.shapes.title.text = "差旅标准"
    slide.placeholders[1].text = "住宿每晚500元。" + _noise(40_000)
    deck.save(tmp_path / "deck.pptx")
    with pytest.raises(IngestError, match=r"slide1\.xml inflates to more than 0.02 MB .*ingest\.max_xml_mb"):
        load_document(tmp_path / "deck.pptx", options=IngestSettings(max_xml_mb=0.02))
    assert "500元" in load_document(tmp_path / "deck.pptx", options=IngestSettings(max_xml_mb=1)).text


def test_workbook_shared_strings_past_the_cap_are_refused(tmp_path):
    from openpyxl import Workbook

    wb = Workbook()
    wb.active.append(["城市", "标准"])
    buf = io.BytesIO()
    wb.save(buf)
    strings = (f'<sst xmlns="{SHEET_NS}"><si><t>{_noise(50_000)}</t></si></sst>').encode()
    with zipfile.ZipFile(buf, "a") as zf:   # a part openpyxl would load whole
        zf.writestr("xl/sharedStrings.xml", strings)
    (tmp_path / "s.xlsx").write_bytes(buf.getvalue())
    with pytest.raises(IngestError, match=r"sharedStrings\.xml inflates to more than 0.01 MB .*ingest\.max_xml_mb"):
        load_document(tmp_path / "s.xlsx", options=IngestSettings(max_xml_mb=0.01))
    # Worksheets are streamed row by row: their size is bounded by the cell budget instead.
    assert load_document(tmp_path / "s.xlsx", options=IngestSettings(max_xml_mb=1)).blocks


class _SizeProbe:
    """An OCR engine (the real interface) that records the size of the image it is given."""

    seen: list[tuple[int, int]] = []

    def __init__(self, threads: int = 1):
        pass

    def recognize(self, image: bytes):
        from knowledge.ocr import OcrBox

        width, height = struct.unpack(">II", image[16:24])   # PNG IHDR
        type(self).seen.append((width, height))
        return [OcrBox("扫描页：每晚500元", 0.99, 10, 10, 400, 40)]


def test_page_render_has_a_pixel_cap(tmp_path):
    import pymupdf

    from knowledge.ocr import OcrEngine, register_ocr_engine, render_dpi
    from knowledge.ocr.base import _REGISTRY

    doc = pymupdf.open()
    page = doc.new_page(width=2000, height=2000)          # 27.8 inches square
    pix = pymupdf.Pixmap(pymupdf.csRGB, pymupdf.IRect(0, 0, 40, 40), False)
    pix.clear_with(120)
    page.insert_image(page.rect, pixmap=pix)
    doc.save(tmp_path / "huge.pdf")

    probe = type("SizeProbe", (_SizeProbe, OcrEngine), {"name": "size-probe-test"})
    register_ocr_engine("size-probe-test", probe)
    try:
        options = IngestSettings(ocr_engine="size-probe-test", ocr_dpi=200, max_render_pixels=1_000_000)
        loaded = load_document(tmp_path / "huge.pdf", options=options)
    finally:
        _REGISTRY.unregister("size-probe-test")
    (width, height), = probe.seen
    assert width * height <= 1_000_000 and width > 500     # 5,556 px square at 200 dpi without the cap
    assert "500元" in loaded.text
    assert any("max_render_pixels=1000000" in w and f"{render_dpi(2000, 2000, 200, 1_000_000)} dpi" in w
               for w in loaded.warnings), loaded.warnings


# ---------------------------------------------------------------- the limited child

_HOSTILE = '''
import time
def spin(seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass
def sleep(seconds):
    time.sleep(seconds)
def hog(mb):
    return len(bytearray(mb * 1024 * 1024))
def fail():
    from knowledge.core.errors import GlossaryError
    raise GlossaryError("no entries")
'''


@pytest.fixture()
def hostile_module(tmp_path, monkeypatch):
    (tmp_path / "hostile_target.py").write_text(_HOSTILE, encoding="utf-8")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    return "hostile_target"


def test_child_limits_wall_clock_cpu_and_memory(hostile_module):
    from knowledge.errors import GlossaryError

    t = time.monotonic()
    with pytest.raises(IngestError, match=r"stopped after 1 s .*ingest\.parse_timeout_s"):
        call_bounded(f"{hostile_module}:sleep", "slow.xlsx", {"seconds": 60}, Limits(60, 1024, 1))
    assert time.monotonic() - t < 10
    with pytest.raises(IngestError, match=r"more than 1 s of CPU .*ingest\.parse_cpu_s"):
        call_bounded(f"{hostile_module}:spin", "busy.xlsx", {"seconds": 60}, Limits(1, 1024, 30))
    with pytest.raises(IngestError, match=r"more than 512 MB .*ingest\.parse_memory_mb"):
        call_bounded(f"{hostile_module}:hog", "big.docx", {"mb": 2048}, Limits(30, 512, 30))
    assert call_bounded(f"{hostile_module}:hog", "ok.docx", {"mb": 16}, Limits(30, 512, 30)) == 16 << 20
    with pytest.raises(GlossaryError, match="no entries"):
        call_bounded(f"{hostile_module}:fail", "g.xlsx", {}, Limits(30, 512, 30))


def test_children_are_bounded_in_number(hostile_module):
    from concurrent.futures import ThreadPoolExecutor

    limits = Limits(30, 512, 4, concurrency=1)
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(call_bounded, f"{hostile_module}:sleep", "a.xlsx", {"seconds": 3}, limits)
        time.sleep(0.5)
        second = pool.submit(call_bounded, f"{hostile_module}:sleep", "b.xlsx", {"seconds": 0}, limits)
        assert first.result() is None
        assert second.result() is None          # it waited for the slot, then ran
    short = Limits(30, 512, 1, concurrency=1)
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(call_bounded, f"{hostile_module}:sleep", "a.xlsx", {"seconds": 3}, Limits(30, 512, 10, 1))
        time.sleep(0.1)
        with pytest.raises(IngestError, match="ingest.parse_concurrency"):
            pool.submit(call_bounded, f"{hostile_module}:sleep", "b.xlsx", {"seconds": 0}, short).result()
        first.result()


def test_the_child_is_not_this_interpreter_module_cache():
    # The child imports the code base from this checkout, whatever the caller's cwd.
    assert call_bounded("knowledge.bounded:echo", "x", {"value": sys.version_info[:2]}, LIMITS) == list(sys.version_info[:2])
