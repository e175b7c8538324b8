"""Hostile documents built at test time: what a broken exporter or an attacker uploads."""

from __future__ import annotations

import zipfile
from pathlib import Path

_OOXML_RELS = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
SHEET_NS = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_PKG_RELS = "http://schemas.openxmlformats.org/package/2006/relationships"


def hostile_xlsx(path: Path, rows: int = 20_000, dimension: str = "A1:XFD20000", column: str = "A") -> Path:
    """A workbook written as raw XML: ``rows`` one-cell rows (the cell in ``column``) under a
    declared ``dimension`` (what a hostile or broken exporter writes)."""
    types = ('<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/'
             'package/2006/content-types"><Default Extension="rels" ContentType="application/'
             'vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType='
             '"application/xml"/><Override PartName="/xl/workbook.xml" ContentType="application/'
             'vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/><Override PartName='
             '"/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.'
             'spreadsheetml.worksheet+xml"/></Types>')
    rels = (f'<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="{_PKG_RELS}"><Relationship '
            f'Id="rId1" Type="{_OOXML_RELS}/officeDocument" Target="xl/workbook.xml"/></Relationships>')
    workbook = (f'<?xml version="1.0" encoding="UTF-8"?><workbook xmlns="{SHEET_NS}" xmlns:r="{_OOXML_RELS}">'
                f'<sheets><sheet name="Sheet1" sheetId="1" r:id="rId1"/></sheets></workbook>')
    workbook_rels = (f'<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="{_PKG_RELS}"><Relationship '
                     f'Id="rId1" Type="{_OOXML_RELS}/worksheet" Target="worksheets/sheet1.xml"/></Relationships>')
    body = "".join(f'<row r="{i}"><c r="{column}{i}" t="inlineStr"><is><t>v{i}</t></is></c></row>'
                   for i in range(1, rows + 1))
    sheet = (f'<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="{SHEET_NS}">'
             f'<dimension ref="{dimension}"/><sheetData>{body}</sheetData></worksheet>')
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("[Content_Types].xml", types)
        zf.writestr("_rels/.rels", rels)
        zf.writestr("xl/workbook.xml", workbook)
        zf.writestr("xl/_rels/workbook.xml.rels", workbook_rels)
        zf.writestr("xl/worksheets/sheet1.xml", sheet)
    return path
