"""Admin API under ``/admin`` (API key from ``KB_ADMIN_API_KEY``): uploads, deletes, jobs.

Uploads are checked by content, not by name: the bytes must sniff as the family the extension
promises (a ``.pdf`` that is not a PDF is refused with 415) and text must decode. Files are
staged in ``KB_HOME/.uploads`` and only moved into ``documents/`` or ``glossary/`` when every
file of the request passed, so a request stores all of its files or none of them.

The upload endpoints parse the form themselves (after the key check), so an unauthenticated
caller cannot make the server read a large body first.

The server itself checks an upload's type, size and archive sanity only. Reading its content
(the preview warnings of a document, whether a spreadsheet is an abbreviation list, the import
check of a glossary workbook) happens in a child process with CPU, memory and wall-clock
limits (``ingest.parse_*``, :mod:`knowledge.bounded`), so a hostile file cannot hold the server.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import unicodedata
from pathlib import Path, PurePosixPath
from typing import Any

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from api.deps import AdminAuth, AdminRoute, JobsDep, SettingsDep
from api.schemas import DeleteResult, JobList, JobStatus, ReindexRequest, UploadResult
from knowledge.core.errors import GlossaryError, IngestError, KBError, ValidationError
from api.jobs import retrain_commands
from knowledge.core.files import sha256_file
from knowledge.bounded import Limits, call_bounded
from knowledge.failpoints import hit
from knowledge.glossary import GLOSSARY_SHEET_EXTENSIONS, import_glossary
from knowledge.loaders import SUPPORTED_EXTENSIONS, loader_for, SNIFF_BYTES, decode_text, sniff_content
from knowledge.loaders.base import check_content
from retrieval.store import IndexStore

router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[AdminAuth], route_class=AdminRoute)

_MAX_NAME_BYTES = 255
MAX_FILES = 20  # files per upload request
_UPLOAD_FORM = {"requestBody": {"content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["files"],
    "properties": {"files": {"type": "array", "items": {"type": "string", "format": "binary"}}}}}}}}
GLOSSARY_EXTENSIONS = {".xlsx", ".xlsm", ".csv", ".tsv", ".txt", ".json"}
log = logging.getLogger("kb.api")


def safe_filename(raw: str) -> str:
    """The bare, harmless file name of an upload: no folders, no ``..``, no control characters.

    Unicode letters are kept (NFC-normalised); leading dots are dropped because the indexer
    skips hidden files.

    >>> safe_filename("../../evil.md"), safe_filename("C:\\\\temp\\\\差旅.pdf"), safe_filename("a\\x00b\\u202e.txt")
    ('evil.md', '差旅.pdf', 'ab.txt')
    >>> safe_filename("..")
    Traceback (most recent call last):
    knowledge.core.errors.ValidationError: unusable file name '..'
    """
    name = unicodedata.normalize("NFC", raw or "").replace("\\", "/").rsplit("/", 1)[-1]
    # Category C covers control, format (bidi overrides, zero-width), private and unassigned.
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C")
    name = name.strip().lstrip(".~$ ").rstrip(". ")
    if not name or name in (".", "..") or len(name.encode("utf-8")) > _MAX_NAME_BYTES:
        raise ValidationError(f"unusable file name {raw!r}")
    return name


class _TextContent:
    """Content rule for glossary formats that have no document loader (JSON)."""

    content = "text"
    zip_member = ""


def _content_rule(name: str, glossary: bool) -> Any:

    ext = PurePosixPath(name).suffix.lower()
    allowed = GLOSSARY_EXTENSIONS if glossary else SUPPORTED_EXTENSIONS
    if ext not in allowed:
        raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
                            f"{name}: unsupported file type {ext or '(none)'!r}; supported: {', '.join(sorted(allowed))}")
    return _TextContent if ext == ".json" else loader_for(Path(name))


def _check_content(path: Path, rule: Any) -> str:
    """Sniff the staged file; 415 when its bytes do not match its extension. Returns the family."""

    data = path.read_bytes()
    if not data:
        raise HTTPException(422, f"{path.name}: empty file")
    try:
        check_content(path, data[:SNIFF_BYTES], rule)
    except IngestError as exc:
        raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, f"{path.name}: {exc.reason}") from None
    if rule.content == "text" and decode_text(data)[2]:
        raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
                            f"{path.name}: not decodable text (tried UTF-8, UTF-16, GB18030)")
    return sniff_content(data[:SNIFF_BYTES])


async def _stage(request: Request, settings: Any, glossary: bool) -> tuple[Path, list[tuple[Path, str]]]:
    """Read the multipart ``files`` into a staging folder, enforcing name and size rules."""
    limit = int(settings.ingest.max_file_mb * 1024 * 1024)
    # Refuse an oversized request before the multipart parser spools it to disk.
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_FILES * limit + (1 << 20):
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE,
                            f"request larger than {MAX_FILES} files of the {limit} byte limit (ingest.max_file_mb)")
    form = await request.form(max_files=MAX_FILES)
    uploads = [f for f in form.getlist("files") if isinstance(f, UploadFile)]
    if not uploads:
        raise HTTPException(422, "no files: send multipart field 'files'")
    root = Path(settings.home) / ".uploads"
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=root))
    staged: list[tuple[Path, str]] = []
    try:
        for upload in uploads:
            name = safe_filename(upload.filename or "")
            if any(p.name == name for p, _ in staged):
                raise HTTPException(422, f"{name}: sent twice")
            rule = _content_rule(name, glossary)
            dest = staging / name
            await _save_limited(upload, dest, limit)
            staged.append((dest, await run_in_threadpool(_check_content, dest, rule)))
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return staging, staged


async def _save_limited(upload: UploadFile, dest: Path, limit: int) -> None:
    size = 0
    with open(dest, "wb") as fh:
        while chunk := await upload.read(1 << 20):
            size += len(chunk)
            if size > limit:
                raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE,
                                    f"{dest.name}: larger than the {limit} byte limit (ingest.max_file_mb)")
            fh.write(chunk)
            hit("upload.stage")  # a full disk while staging (tests/api/test_inputs.py)


def _commit(settings: Any, staged: list[tuple[Path, str]], glossary: bool) -> list[dict[str, Any]]:
    """Store every staged file, or none, and glossary files under the glossary lock for the whole
    request. On any error (a full disk midway) the files this call replaced are put back and the
    ones it added are removed, then the error goes on. Under the lock, a save (``PUT
    /admin/glossary``) that replaces the folder's files runs before or after the upload, never in
    between, so a file answered 201 is never deleted by a save that listed the folder earlier."""

    store = IndexStore(settings.home, settings)
    backup = staged[0][0].parent / ".replaced" if staged else None
    touched: list[tuple[Path, Path | None]] = []  # (stored path, hard link to what it held before)
    if backup is not None:
        backup.mkdir(exist_ok=True)
        for i, (path, _) in enumerate(staged):
            for folder in (store.documents_dir, store.glossary_dir):
                target = folder / path.name
                saved = None
                if target.is_file():
                    saved = backup / f"{i}-{folder.name}"
                    os.link(target, saved)  # no copy: the old bytes stay reachable without more disk
                touched.append((target, saved))
    try:
        # Documents: only a file imported as the glossary touches glossary/ (under the lock, in ingest).
        with store.glossary_lock() if glossary else contextlib.nullcontext():
            return _store_files(store, settings, staged, glossary)
    except BaseException:
        for target, saved in touched:
            try:
                if saved is not None:
                    os.replace(saved, target)
                elif target.exists():
                    target.unlink()
            except OSError:
                log.exception("could not undo %s after a failed upload", target.name)
        raise


def _store_files(store: IndexStore, settings: Any, staged: list[tuple[Path, str]],
                 glossary: bool) -> list[dict[str, Any]]:
    previews = {} if glossary else {path: preview(path, settings) for path, _ in staged}
    out = []
    for n, (path, family) in enumerate(staged):
        if n and glossary:
            hit("upload.commit")  # a full disk between two stored files (tests/api/test_inputs.py)
        sha = sha256_file(path)
        existing = (store.glossary_dir if glossary else store.documents_dir) / path.name
        item: dict[str, Any] = {"name": path.name, "bytes": path.stat().st_size, "kind": family, "sha256": sha,
                                "status": "stored", "warnings": []}
        if existing.is_file() and sha256_file(existing) == sha:
            item["status"] = "unchanged"
        if glossary:
            try:
                store.add_glossary(path)
            except GlossaryError as exc:
                raise HTTPException(422, f"{path.name}: {exc}") from None
            item["status"] = "glossary"
        else:
            item["warnings"] = previews[path]["warnings"]
        out.append(item)
    if not glossary:
        # An abbreviation list uploaded as a document is imported as the glossary instead
        # (the child found it; the store checks it again, within the sheet budget).
        lists = [p for p, _ in staged if previews[p]["glossary_entries"]]
        report = store.ingest(lists) if lists else None
        for n, path in enumerate(p for p, _ in staged if p not in lists):
            if n:
                hit("upload.commit")  # a full disk between two stored files (tests/api/test_inputs.py)
            store.add_documents([path])
        as_glossary = {g["file"]: g["entries"] for g in report.glossaries} if report is not None else {}
        for item in out:
            if item["name"] in as_glossary:
                item.update(imported_as="glossary", glossary_entries=as_glossary[item["name"]],
                            status="glossary", warnings=[])
    return out


def preview(path: Path, settings: Any) -> dict[str, Any]:
    """Read an upload with its real loader in a limited child process, so the uploader learns
    now what the next reindex will report: pages without a text layer (scanned), encoding
    fallbacks, a sheet cut at its cell budget, or why the file will not be indexed at all
    (a fully scanned or encrypted PDF); and whether it is an abbreviation list. Never refuses
    the file: one that cannot be read within the limits is stored with a warning saying so."""

    try:
        return call_bounded("knowledge.preflight:preview_upload", path,
                            {"path": str(path), "options": settings.ingest.model_dump(mode="json")},
                            Limits.from_ingest(settings.ingest))
    except KBError as exc:  # past a limit, or a loader bug: the build reports it too
        reason = exc.reason if isinstance(exc, IngestError) else str(exc)
        return {"glossary_entries": 0, "warnings": [f"not previewed: {reason}"]}


async def _upload(request: Request, settings: Any, glossary: bool) -> dict[str, Any]:
    staging, staged = await _stage(request, settings, glossary)
    try:
        if glossary:  # check every glossary imports before storing any of them
            await run_in_threadpool(_import_all, [p for p, _ in staged], settings)
        return {"stored": await run_in_threadpool(_commit, settings, staged, glossary)}
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _import_all(paths: list[Path], settings: Any) -> None:
    """422 unless every file imports as a glossary. Spreadsheets and CSV files are read in a
    limited child process (:func:`knowledge.glossary.glossary_entries`); JSON and plain text
    lists, read in one linear pass, here."""

    ingest = settings.ingest
    for path in paths:
        try:
            if path.suffix.lower() in GLOSSARY_SHEET_EXTENSIONS:
                call_bounded("knowledge.glossary:glossary_entries", path,
                             {"path": str(path), "max_cells": ingest.max_sheet_cells, "max_xml_mb": ingest.max_xml_mb},
                             Limits.from_ingest(ingest))
            else:
                import_glossary(path)
        except GlossaryError as exc:
            raise HTTPException(422, f"{path.name}: {exc}") from None
        except IngestError as exc:
            raise HTTPException(422, f"{path.name}: not imported: {exc.reason}") from None


@router.post("/documents", response_model=UploadResult, status_code=status.HTTP_201_CREATED,
             openapi_extra=_UPLOAD_FORM)
async def upload_documents(request: Request, settings: SettingsDep) -> Any:
    """Store documents (multipart field ``files``, repeatable); publish with ``/admin/reindex``."""
    return await _upload(request, settings, glossary=False)


@router.post("/glossary", response_model=UploadResult, status_code=status.HTTP_201_CREATED,
             openapi_extra=_UPLOAD_FORM)
async def upload_glossary(request: Request, settings: SettingsDep) -> Any:
    """Store glossary files (.xlsx, .csv, .json ...) after checking that each one imports."""
    return await _upload(request, settings, glossary=True)


@router.delete("/documents/{name:path}", response_model=DeleteResult)
def delete_document(name: str, settings: SettingsDep) -> Any:
    """Remove a stored document (a path relative to ``documents/``); publish with a reindex."""
    root = (Path(settings.home) / "documents").resolve()
    if any(unicodedata.category(ch) == "Cc" for ch in name):  # a NUL byte makes resolve() raise ValueError
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"invalid document name {name!r}: control character")
    try:
        target = (root / name).resolve()
    except (ValueError, OSError):  # a name the file system cannot take (too long, a symlink loop)
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"invalid document name {name!r}") from None
    if not target.is_relative_to(root) or target == root:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"invalid document name {name!r}")
    try:
        found = target.is_file()
    except OSError:  # a name the file system refuses (ENAMETOOLONG)
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"invalid document name {name[:80]!r}") from None
    if not found:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no document {name!r}")
    target.unlink()
    return {"deleted": target.relative_to(root).as_posix()}


def _job_response(job: dict[str, Any]) -> JobStatus:
    return JobStatus.from_row(job)


@router.post("/reindex", response_model=JobStatus, status_code=status.HTTP_202_ACCEPTED)
def reindex(jobs: JobsDep, req: ReindexRequest | None = None) -> Any:
    """Start an index build in a worker process (or return the one already running); every
    worker serves the new index once it is published."""
    full = bool(req and req.full)
    job, _ = jobs.start("reindex", {"full": full})
    return _job_response(job)


@router.post("/retrain", response_model=JobStatus, status_code=status.HTTP_202_ACCEPTED)
def retrain(jobs: JobsDep) -> Any:
    """Start distill + train (+ gate/publish of the adapter) as a job in a worker process."""

    retrain_commands()  # KBError (400) now, not a failed job later, when the CLI lacks a step
    job, _ = jobs.start("retrain", {})
    return _job_response(job)


@router.get("/jobs", response_model=JobList)
def list_jobs(jobs: JobsDep, limit: int = 50) -> Any:
    return {"jobs": [_job_response(j) for j in jobs.store.list(limit=max(1, min(limit, 500)))]}


@router.get("/jobs/{job_id}", response_model=JobStatus)
def get_job(job_id: str, jobs: JobsDep) -> Any:
    job = jobs.store.get(job_id)
    if job is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no job {job_id!r}")
    return _job_response(job)


@router.post("/jobs/{job_id}/cancel", response_model=JobStatus)
def cancel_job(job_id: str, jobs: JobsDep) -> Any:
    """Ask a job to stop at its next stage boundary (finished jobs are returned unchanged)."""
    job = jobs.cancel(job_id)
    if job is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no job {job_id!r}")
    return _job_response(job)
