"""What a knowledge-base home holds, for its administrators.

* :func:`document_rows` — every stored document with its size, whether the published index
  holds this content (and since which version), its chunks, facts, warnings and errors;
* :func:`read_glossary` / :func:`write_glossary` — the glossary as one table (the merge of every
  file in ``glossary/``, exactly as a build merges them), and saving an edited table as a new
  numbered glossary version::

      glossary/glossary.json              the edited table (kb-glossary JSON), the only file
      glossary_versions/v0001/            manifest.json, glossary.json, replaced/<old files>

  A save goes through the ordinary import path (the file is written, imported with
  :func:`knowledge.glossary.import_glossary` and stored with :meth:`IndexStore.add_glossary`),
  holds the store's build lock so a build never sees the folder half-replaced, and its glossary
  lock (which every upload holds too) so it never deletes a file an upload stored after it
  listed the folder; it keeps the files it replaced. The serving index changes at the next reindex.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from knowledge.core.memo import BoundedMemo
from knowledge.core.errors import ConflictError, GlossaryError, ValidationError
from knowledge.core.files import atomic_write_json, numbered_versions, sha256_file
from knowledge.failpoints import hit

from .store import _walk
from knowledge.core.types import GlossaryEntry, Meaning
from knowledge.glossary import Glossary, import_glossary, normalize_term

if TYPE_CHECKING:  # pragma: no cover
    from .store import IndexStore

EDITED_NAME = "glossary.json"
VERSIONS_DIR = "glossary_versions"
MAX_ENTRIES = 50_000
MAX_FIELD_CHARS = 500

_sha_memo: BoundedMemo[str] = BoundedMemo(limit=10_000)
_manifest_memo: BoundedMemo[dict[str, Any]] = BoundedMemo(limit=10_000)


# --- documents ----------------------------------------------------------------------------------
def document_rows(store: "IndexStore") -> list[dict[str, Any]]:
    """One row per stored document (and per document the index still holds but that was deleted).

    ``state``: ``indexed`` (the published index holds this content), ``new`` / ``changed``
    (stored, not indexed yet: run a reindex), ``duplicate`` (same bytes as ``duplicate_of``,
    indexed once under that name), ``failed`` (the last build could not read it; ``error`` says
    why) or ``removed`` (deleted, still served until the next reindex). ``since`` is the oldest
    index version from which this exact content has been served without a break.
    """
    current = store.current_version()
    manifest = _manifest(store, current) if current else {}
    indexed: dict[str, Any] = manifest.get("documents", {})
    failed = {e.get("source"): e.get("error", "") for e in manifest.get("errors", [])}
    duplicates = manifest.get("duplicates", {})
    chain = _served_chain(store, current)
    rows = []
    files = store._source_files()
    for name, path in sorted(files.items()):
        stat = path.stat()
        sha = _sha(path, stat)
        entry = indexed.get(name)
        row: dict[str, Any] = {"name": name, "bytes": stat.st_size, "modified": stat.st_mtime, "sha256": sha,
                               "chunks": None, "facts": None, "title": "", "warnings": [], "error": "",
                               "since": None, "duplicate_of": None}
        if entry is not None:
            row.update(chunks=entry.get("chunks"), facts=entry.get("facts"), title=entry.get("title", ""),
                       warnings=list(entry.get("warnings", [])), error=entry.get("error", ""))
        if entry is not None and entry.get("sha256") == sha:
            row["state"] = "indexed"
            row["since"] = _since(chain, name, sha)
        elif name in duplicates and entry is None:
            row.update(state="duplicate", duplicate_of=duplicates[name])
        elif name in failed and entry is None:
            row.update(state="failed", error=failed[name])
        else:
            row["state"] = "changed" if entry is not None else "new"
        rows.append(row)
    for name, entry in sorted(indexed.items()):
        if name not in files:
            rows.append({"name": name, "bytes": None, "modified": None, "sha256": entry.get("sha256", ""),
                         "chunks": entry.get("chunks"), "facts": entry.get("facts"), "title": entry.get("title", ""),
                         "warnings": list(entry.get("warnings", [])), "error": entry.get("error", ""),
                         "since": _since(chain, name, entry.get("sha256", "")), "duplicate_of": None,
                         "state": "removed"})
    return rows


def index_versions(store: "IndexStore") -> list[dict[str, Any]]:
    """Every complete index version, newest first, with the figures an administrator compares."""
    current = store.current_version()
    out = []
    for version in reversed(store.versions()):
        m = _manifest(store, version)
        counts, build = m.get("counts", {}), m.get("build", {})
        out.append({
            "version": version, "current": version == current, "created_at": m.get("created_at", ""),
            "documents": counts.get("documents", len(m.get("documents", {}))), "chunks": counts.get("chunks"),
            "facts": counts.get("facts"), "glossary_entries": counts.get("glossary_entries"),
            "embedder": (m.get("embedder") or {}).get("name", ""), "full": bool(build.get("full")),
            "previous": build.get("previous"), "seconds": build.get("seconds"),
            "errors": len(m.get("errors", [])),
        })
    return out


def _manifest(store: "IndexStore", version: str) -> dict[str, Any]:
    # Version folders never change once published, so their manifests are cached by name.
    return _manifest_memo.get((str(store.indexes_dir), version), lambda: store.manifest(version))


def _served_chain(store: "IndexStore", current: str | None, limit: int = 50) -> list[dict[str, Any]]:
    """Documents maps of the published version and the builds before it, newest first."""
    chain: list[dict[str, Any]] = []
    known = set(store.versions())
    version = current
    while version and version in known and len(chain) < limit:
        m = _manifest(store, version)
        chain.append({"version": version, "documents": m.get("documents", {})})
        version = (m.get("build") or {}).get("previous")
    return chain


def _since(chain: list[dict[str, Any]], name: str, sha: str) -> str | None:
    since = None
    for link in chain:
        entry = link["documents"].get(name)
        if not entry or entry.get("sha256") != sha:
            break
        since = link["version"]
    return since


def _sha(path: Path, stat: Any) -> str:
    return _sha_memo.get((str(path), stat.st_size, stat.st_mtime_ns), lambda: sha256_file(path))


# --- glossary -----------------------------------------------------------------------------------
def glossary_revision(store: "IndexStore") -> str:
    """A short hash of the glossary folder's files (names and contents): what an edit was based on."""
    return _revision(_glossary_hashes(store))


def read_glossary(store: "IndexStore") -> dict[str, Any]:
    """The glossary as the next build will merge it, with its files, revision and saved versions.

    ``published`` is true when the serving index was built from exactly these files.
    """

    hashes = _glossary_hashes(store)
    merged = Glossary([])
    files, skipped = [], []
    for path in _glossary_files(store):
        name = path.relative_to(store.glossary_dir).as_posix()
        try:
            imported = import_glossary(path)
        except Exception as exc:  # a file a build would also fail on: show it, do not hide the rest
            files.append({"name": name, "entries": 0, "error": f"{type(exc).__name__}: {exc}"})
            continue
        merged.merge(Glossary(imported.entries))
        files.append({"name": name, "entries": len(imported.entries), "error": ""})
        skipped.extend({"file": name, "row": s.row, "reason": s.reason} for s in imported.skipped[:200])
    current = store.current_version()
    served = _manifest(store, current).get("glossary", {}) if current else {}
    return {
        "revision": _revision(hashes), "published": served == hashes and current is not None,
        "files": files, "skipped": skipped, "versions": glossary_versions(store),
        "entries": [{"term": e.term, "source": e.source,
                     "meanings": [{"english": m.english, "chinese": m.chinese} for m in e.meanings]}
                    for e in merged],
    }


def glossary_versions(store: "IndexStore") -> list[dict[str, Any]]:
    """Saved glossary versions, newest first (their manifests)."""
    root = store.home / VERSIONS_DIR
    if not root.is_dir():
        return []
    out = []
    for folder in sorted(root.iterdir(), reverse=True):
        try:
            out.append(json.loads((folder / "manifest.json").read_text(encoding="utf-8")))
        except (OSError, ValueError):
            continue
    return out


def write_glossary(store: "IndexStore", entries: Iterable[dict[str, Any]],
                   base_revision: str | None = None, comment: str = "") -> dict[str, Any]:
    """Save ``entries`` (``{"term", "meanings": [{"english", "chinese"}]}``) as the whole glossary.

    Raises ConflictError when ``base_revision`` is given and the glossary changed since,
    ValidationError for an unusable table, GlossaryError when the written file does not import.
    Returns the new version's manifest.
    """

    glossary = Glossary(_checked_entries(entries))
    with store._lock(), store.glossary_lock():
        hashes = _glossary_hashes(store)
        if base_revision is not None and base_revision != _revision(hashes):
            raise ConflictError(f"the glossary changed since revision {base_revision} (now {_revision(hashes)}); "
                                "reload it and apply your edits again")
        version = _next_version(store.home / VERSIONS_DIR)
        folder = store.home / VERSIONS_DIR / version
        folder.mkdir(parents=True)
        try:
            staged = folder / EDITED_NAME
            glossary.to_json(staged)
            imported = import_glossary(staged)  # the same import every upload and build uses
            if len(imported.entries) != len(glossary):
                raise GlossaryError(f"{staged.name}: wrote {len(glossary)} terms but {len(imported.entries)} import")
            old = _glossary_files(store)
            for path in old:
                dest = folder / "replaced" / path.relative_to(store.glossary_dir)
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, dest)
            store.add_glossary(staged)
            hit("glossary.replace")  # the new table is stored, the files it replaces not yet removed
            for path in old:
                if path != store.glossary_dir / EDITED_NAME:
                    path.unlink(missing_ok=True)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        manifest = {
            "version": version, "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "terms": len(glossary), "meanings": sum(len(e.meanings) for e in glossary),
            "replaced": [p.relative_to(store.glossary_dir).as_posix() for p in old],
            "base_revision": _revision(hashes), "revision": glossary_revision(store), "comment": comment[:500],
        }
        atomic_write_json(folder / "manifest.json", manifest)
    return manifest


def _checked_entries(entries: Iterable[dict[str, Any]]) -> list[Any]:

    out = []
    for n, item in enumerate(entries, start=1):
        if n > MAX_ENTRIES:
            raise ValidationError(f"more than {MAX_ENTRIES} glossary terms")
        term = normalize_term(item.get("term", ""))
        if not term:
            raise ValidationError(f"glossary row {n}: empty term")
        meanings = []
        for m in item.get("meanings") or []:
            english = normalize_term(m.get("english", ""))
            chinese = " ".join(str(m.get("chinese", "") or "").split())
            if len(english) > MAX_FIELD_CHARS or len(chinese) > MAX_FIELD_CHARS or len(term) > MAX_FIELD_CHARS:
                raise ValidationError(f"glossary term {term!r}: longer than {MAX_FIELD_CHARS} characters")
            if english or chinese:
                meanings.append(Meaning(english=english, chinese=chinese))
        if not meanings:
            raise ValidationError(f"glossary term {term!r} has no meaning (give an English or a Chinese one)")
        out.append(GlossaryEntry(term=term, meanings=meanings, source=EDITED_NAME))
    return out


def _glossary_files(store: "IndexStore") -> list[Path]:
    return _walk(store.glossary_dir) if store.glossary_dir.is_dir() else []


def _glossary_hashes(store: "IndexStore") -> dict[str, str]:
    return {p.relative_to(store.glossary_dir).as_posix(): sha256_file(p) for p in _glossary_files(store)}


def _revision(hashes: dict[str, str]) -> str:
    """
    >>> _revision({}) == _revision({}) != _revision({"a.csv": "00"})
    True
    """
    text = "\n".join(f"{name}\t{sha}" for name, sha in sorted(hashes.items()))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _next_version(root: Path) -> str:
    """
    >>> import tempfile; _next_version(Path(tempfile.mkdtemp()))
    'v0001'
    """
    names = numbered_versions(root, require=None)
    root.mkdir(parents=True, exist_ok=True)
    return f"v{int(names[-1][1:]) + 1 if names else 1:04d}"

