"""Document loaders: one module per format, chosen by extension and checked against content.

>>> from pathlib import Path
>>> docs, errors = load_documents(Path("docs").rglob("*"), root=Path("docs"))   # doctest: +SKIP

:func:`load_document` raises :class:`~knowledge.core.errors.IngestError` naming the file for every
bad input (missing, empty, too large, unsupported, content not matching the extension, corrupt,
encrypted, scanned without a text layer); :func:`load_documents` collects those errors and goes
on with the rest of the batch.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from knowledge.core.errors import IngestError
from knowledge.loaders.base import (
    SNIFF_BYTES,
    SUPPORTED_EXTENSIONS,
    Loader,
    check_content,
    decode_text,
    loader_for,
    read_text_file,
    register_loader,
    sniff_content,
    unregister_loader,
)
from knowledge.text_utils import classify_text
from knowledge.core.types import Block, LoadedDocument

# Importing the format modules registers their loaders.
from knowledge.loaders import docx, html, pdf, pptx, sheet, text  # noqa: E402,F401  isort: skip
from config.settings import IngestSettings, get_settings
from tqdm import tqdm

__all__ = [
    "SUPPORTED_EXTENSIONS", "Loader", "register_loader", "unregister_loader", "loader_for",
    "load_document", "load_documents", "read_text_file", "decode_text", "sniff_content",
    "inspect_document",
]


def load_document(path: Path, root: Path | None = None, max_bytes: int | None = None,
                  options: Any = None, progress: bool = False) -> LoadedDocument:
    """Load one file into a :class:`LoadedDocument`.

    ``source`` is the path relative to ``root`` (POSIX separators) when the file lies under it,
    else the file name. ``max_bytes`` defaults to the ``ingest.max_file_mb`` setting;
    ``options`` (the ingest settings: OCR on or off, its page limit) to the process-wide ones.
    """
    path = Path(path)
    _check_file(path, _limit(max_bytes))
    cls = loader_for(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise IngestError(path, f"cannot read file ({exc})") from exc
    check_content(path, data[:SNIFF_BYTES], cls)
    loader = cls()
    loader.options, loader.progress = options, progress
    try:
        blocks = loader.load(path)
    except IngestError:
        raise
    except Exception as exc:  # any library failure on a damaged file becomes one clear error
        raise IngestError(path, f"corrupt or unreadable {path.suffix.lower()} file "
                                f"({type(exc).__name__}: {exc})") from exc
    blocks = clean_blocks(blocks)
    if not blocks:
        raise IngestError(path, "no text found in the document")
    return LoadedDocument(
        source=source_name(path, root),
        blocks=blocks,
        sha256=hashlib.sha256(data).hexdigest(),
        title=loader.title(path, blocks),
        warnings=list(loader.warnings),
        ocr_pages=dict(loader.ocr_pages),
    )


def load_documents(
    paths: Iterable[Path],
    root: Path | None = None,
    max_bytes: int | None = None,
    progress: bool = False,
    options: Any = None,
) -> tuple[list[LoadedDocument], list[IngestError]]:
    """Load many files; a bad file adds an :class:`IngestError` and never stops the batch."""

    paths = [Path(p) for p in paths]
    limit = _limit(max_bytes)
    documents: list[LoadedDocument] = []
    errors: list[IngestError] = []
    for path in tqdm(paths, desc="loading documents", unit="file", disable=not progress):
        try:
            documents.append(load_document(path, root=root, max_bytes=limit, options=options,
                                           progress=progress))
        except IngestError as exc:
            errors.append(exc)
        except Exception as exc:  # a bug in one loader must not lose the other documents
            errors.append(IngestError(path, f"unexpected error ({type(exc).__name__}: {exc})"))
    return documents, errors


def inspect_document(path: str, options: dict[str, Any]) -> list[str]:
    """What the next index build will report about one file: the loader's warnings (scanned
    pages, encoding fallbacks, a sheet cut at its cell budget), or why it will not be indexed.

    ``options`` are the ingest settings as a dict. The API runs this in a limited child
    process (:func:`knowledge.bounded.call_bounded`) when a document is uploaded, never in
    the server.
    """
    ingest = IngestSettings.model_validate(options)
    try:
        doc = load_document(Path(path), max_bytes=int(ingest.max_file_mb * 1024 * 1024), options=ingest)
    except IngestError as exc:
        return [f"will not be indexed: {exc.reason}"]
    return list(doc.warnings)


def source_name(path: Path, root: Path | None) -> str:
    """Citation name: path relative to ``root`` in POSIX form, else the bare file name.

    >>> source_name(Path("/kb/documents/hr/差旅.pdf"), Path("/kb/documents"))
    'hr/差旅.pdf'
    >>> source_name(Path("/elsewhere/差旅.pdf"), Path("/kb/documents"))
    '差旅.pdf'
    """
    if root is not None:
        try:
            return path.resolve().relative_to(Path(root).resolve()).as_posix()
        except ValueError:
            pass
    return path.name


def clean_blocks(blocks: list[Block]) -> list[Block]:
    """Strip blocks, drop empty ones, and mark numbered articles and chapters written in text.

    Formats with explicit structure (Word styles, HTML tags) still write ``第十二条 ...`` as an
    ordinary paragraph, so articles and short ``第X章`` / ``第X节`` lines are recognised here
    for every format.

    >>> [(b.kind, b.level) for b in clean_blocks([Block(" 第一章 总则 "), Block(""), Block("第一条 目的。")])]
    [('heading', 2), ('article', 0)]
    """
    cleaned = []
    for block in blocks:
        text = block.text.replace("\x00", "").strip()
        if not text:
            continue
        kind, level = block.kind, block.level
        if kind == "para":
            guess, guess_level = classify_text(text)
            if guess == "article" or (guess == "heading" and guess_level in (2, 3)):
                kind, level = guess, guess_level
        cleaned.append(Block(text, kind=kind, page=block.page, level=level,
                             ocr_confidence=block.ocr_confidence))
    return cleaned


def _limit(max_bytes: int | None) -> int:
    if max_bytes is not None:
        return max_bytes

    return int(get_settings().ingest.max_file_mb * 1024 * 1024)


def _check_file(path: Path, max_bytes: int) -> None:
    if not path.exists():
        raise IngestError(path, "file not found")
    if not path.is_file():
        raise IngestError(path, "not a regular file")
    size = path.stat().st_size
    if size == 0:
        raise IngestError(path, "empty file (0 bytes)")
    if size > max_bytes:
        raise IngestError(path, f"file too large ({size} bytes; the limit is {max_bytes} bytes, "
                                f"setting ingest.max_file_mb)")
