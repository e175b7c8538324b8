"""What an upload will become, read in a limited child process: an abbreviation list to import
as the glossary, or a document, with the warnings the next index build will report.

The API calls :func:`preview_upload` for each stored document (through
:func:`knowledge.bounded.call_bounded`, never in the server); the parent gets a small JSON
answer and copies the file without parsing it again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from config.settings import IngestSettings
from knowledge.glossary import GLOSSARY_SHEET_EXTENSIONS, detected_glossary_entries
from knowledge.loaders import inspect_document

__all__ = ["preview_upload"]


def preview_upload(path: str, options: dict[str, Any], detect_glossary: bool = True) -> dict[str, Any]:
    """``{"glossary_entries": n, "warnings": [...]}`` for one uploaded document.

    ``glossary_entries`` is more than 0 when the file is a spreadsheet or CSV shaped like an
    abbreviation list (:func:`knowledge.glossary.looks_like_glossary`); then the warnings
    are empty, since it is not indexed as a document. ``options`` are the ingest settings.
    """
    ingest = IngestSettings.model_validate(options)
    if detect_glossary and Path(path).suffix.lower() in GLOSSARY_SHEET_EXTENSIONS:
        entries = detected_glossary_entries(path, ingest.max_sheet_cells, ingest.max_xml_mb)
        if entries:
            return {"glossary_entries": entries, "warnings": []}
    return {"glossary_entries": 0, "warnings": inspect_document(path, options)}
