"""File helpers every layer uses: atomic writes, hashing, JSONL, version folders and pointers.

Atomic means a reader sees the old file or the new one, never half of one: the data goes into
a temporary file in the same folder (so the rename stays on one file system), is flushed and
``fsync``-ed, then moved over the target with ``os.replace``, and the folder holding it is
``fsync``-ed so the rename itself survives a power cut. On any failure the temporary file is
removed and the target is left as it was. Folders are published the same way: every file and
sub-folder of the temporary folder is synced (:func:`fsync_tree`), then it is renamed and its
parent synced, so a pointer switched afterwards never names a folder whose files a power cut
emptied.

Versioned artifacts (index, adapter and dataset versions, glossary versions) are folders with a
``manifest.json`` next to a ``current`` pointer file naming the published one;
:func:`write_pointer` switches it atomically and :func:`claim_version` takes the next free
``vNNNN`` name without ever overwriting another writer's folder.

>>> import tempfile; root = Path(tempfile.mkdtemp())
>>> _ = atomic_write(root / "a.txt", "hello")
>>> (root / "a.txt").read_text(), sorted(p.name for p in root.iterdir())
('hello', ['a.txt'])
>>> write_pointer(root, "v0002"); read_pointer(root)
'v0002'
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from knowledge.core.errors import KBError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

POINTER = "current"
MANIFEST = "manifest.json"
_BLOCK = 1 << 20
_VERSION_RE = re.compile(r"^v(\d{4,})$")


# --- atomic writes ----------------------------------------------------------------------------
@contextlib.contextmanager
def atomic_file(path: str | Path, mode: str = "w", *, encoding: str | None = "utf-8", fsync: bool = True,
                file_mode: int | None = None, prefix: str | None = None) -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path``; on a clean exit it replaces ``path``.

    ``fsync=False`` skips the flush to disk (for files rewritten every few seconds whose loss
    in a power cut costs nothing, like per-worker metrics); ``file_mode`` sets permissions;
    ``prefix`` names the temporary file (default ``.<name>.``, always hidden, ending ``.tmp``)
    so clean-up code can recognise what a killed process left behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=prefix or f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else encoding) as fh:
            yield fh
            fh.flush()
            if fsync:
                os.fsync(fh.fileno())
        if file_mode is not None:
            os.chmod(tmp, file_mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if fsync:
        fsync_dir(path.parent)


@contextlib.contextmanager
def atomic_path(path: str | Path, *, fsync: bool = True) -> Iterator[Path]:
    """A temporary file name beside ``path`` for writers that open files by name themselves
    (``gguf.GGUFWriter``); on a clean exit the file replaces ``path``, otherwise it is removed.

    >>> import tempfile
    >>> target = Path(tempfile.mkdtemp()) / "x.bin"
    >>> with atomic_path(target) as tmp:
    ...     _ = tmp.write_bytes(b"ok")
    >>> target.read_bytes(), tmp.exists()
    (b'ok', False)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    os.chmod(tmp, 0o644)  # mkstemp makes it private; the result is an ordinary readable file
    try:
        yield tmp
        if fsync:
            with open(tmp, "rb") as done:
                os.fsync(done.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if fsync:
        fsync_dir(path.parent)


def atomic_write(path: str | Path, data: str | bytes, *, fsync: bool = True, file_mode: int | None = None,
                 prefix: str | None = None) -> Path:
    """Write ``data`` (text as UTF-8, or bytes) to ``path`` atomically; returns the path."""
    with atomic_file(path, "wb" if isinstance(data, bytes) else "w", fsync=fsync, file_mode=file_mode,
                     prefix=prefix) as fh:
        fh.write(data)
    return Path(path)


def atomic_write_json(path: str | Path, data: Any, *, indent: int | None = 1, fsync: bool = True) -> Path:
    """:func:`atomic_write` of ``data`` as JSON (UTF-8, not ASCII-escaped)."""
    return atomic_write(path, json.dumps(data, ensure_ascii=False, indent=indent, default=str), fsync=fsync)


def atomic_copy(src: str | Path, dest: str | Path, before_replace: Callable[[], None] | None = None) -> Path:
    """Copy ``src`` to ``dest`` atomically (``before_replace`` runs once the copy is written).

    The temporary file is ``.copy-*.tmp`` beside ``dest``.
    """
    with atomic_file(dest, "wb", prefix=".copy-") as out, open(src, "rb") as fh:
        shutil.copyfileobj(fh, out, _BLOCK)
        if before_replace is not None:
            before_replace()
    return Path(dest)


@contextlib.contextmanager
def atomic_dir(final: str | Path, *, replace: bool = True) -> Iterator[Path]:
    """A temporary folder beside ``final`` that becomes ``final`` on a clean exit.

    ``replace``: an existing ``final`` (a stale copy) is removed first; otherwise the rename
    fails when ``final`` exists and holds files. The temporary folder never outlives the block.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp"))
    try:
        yield tmp
        fsync_tree(tmp)
        if replace and final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        fsync_dir(final.parent)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def fsync_dir(path: str | Path) -> None:
    """``fsync`` a folder, so the names created, renamed or removed in it survive a power cut
    (a no-op where folders cannot be opened, as on Windows)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except (PermissionError, IsADirectoryError):  # pragma: no cover - Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - file systems that cannot sync a folder (EINVAL)
        pass
    finally:
        os.close(fd)


def fsync_tree(root: str | Path) -> None:
    """``fsync`` every file and folder under ``root`` (and ``root`` itself), deepest first:
    call it before renaming a finished folder into place.

    >>> import tempfile; root = Path(tempfile.mkdtemp()); (root / "sub").mkdir()
    >>> _ = (root / "sub" / "a.bin").write_bytes(b"x"); fsync_tree(root)
    """
    root = Path(root)
    for folder, dirs, names in os.walk(root, topdown=False):
        for name in names:
            path = os.path.join(folder, name)
            if os.path.islink(path):
                continue
            with open(path, "rb") as fh:
                os.fsync(fh.fileno())
        fsync_dir(folder)


_held = threading.local()  # paths this thread holds a file_lock on -> depth


@contextlib.contextmanager
def file_lock(path: str | Path) -> Iterator[None]:
    """An exclusive advisory lock on ``path`` across processes and threads (POSIX ``flock``; a
    no-op where ``fcntl`` is missing, as on Windows).

    Re-entrant within one thread (a locked operation may call another that takes the same
    lock); another thread of the same process waits like another process does.

    >>> import tempfile; lock = Path(tempfile.mkdtemp()) / ".lock"
    >>> with file_lock(lock):
    ...     with file_lock(lock):
    ...         print("nested")
    nested
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    key = os.path.abspath(path)
    held: dict[str, int] = getattr(_held, "paths", None) or {}
    _held.paths = held
    if held.get(key):
        held[key] += 1
        try:
            yield
        finally:
            held[key] -= 1
        return
    with open(path, "a+b") as fh:
        if fcntl is None:  # pragma: no cover - Windows: no cross-process lock
            yield
            return
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        held[key] = 1
        try:
            yield
        finally:
            held.pop(key, None)
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


# --- hashing ----------------------------------------------------------------------------------
def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks.

    >>> import tempfile; p = Path(tempfile.mkdtemp()) / "x"; _ = p.write_bytes(b"abc")
    >>> sha256_file(p)[:16]
    'ba7816bf8f01cfea'
    """
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def sha256_text(text: str) -> str:
    """Hex sha256 of a string's UTF-8 bytes.

    >>> sha256_text("abc")[:16]
    'ba7816bf8f01cfea'
    """
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def folder_checksums(root: str | Path, skip: Iterable[str] = (MANIFEST,)) -> dict[str, dict[str, Any]]:
    """``{relative path: {"bytes", "sha256"}}`` of every file under ``root`` but ``skip`` (names at
    the top level): what a manifest records so a reader can tell a whole version from one a
    power cut or a disk error damaged (:func:`damaged_files`).

    >>> import tempfile; root = Path(tempfile.mkdtemp()); _ = (root / "a.bin").write_bytes(b"abc")
    >>> folder_checksums(root)["a.bin"]["bytes"]
    3
    """
    root = Path(root)
    skipped = set(skip)
    out: dict[str, dict[str, Any]] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_file() and not path.is_symlink() and rel not in skipped:
            out[rel] = {"bytes": path.stat().st_size, "sha256": sha256_file(path)}
    return out


def damaged_files(root: str | Path, recorded: dict[str, dict[str, Any]], hashes: bool = True) -> list[str]:
    """Files of ``recorded`` (:func:`folder_checksums`) that are missing, of another size, or
    (``hashes``) of other content under ``root``; ``[]`` when the folder is whole.

    >>> import tempfile; root = Path(tempfile.mkdtemp()); _ = (root / "a.bin").write_bytes(b"abc")
    >>> sums = folder_checksums(root); _ = (root / "a.bin").write_bytes(b"")
    >>> damaged_files(root, sums), damaged_files(root, {"b": {"bytes": 1}})
    (['a.bin (0 bytes, expected 3)'], ['b (missing)'])
    """
    root = Path(root)
    bad: list[str] = []
    for rel, want in sorted(recorded.items()):
        path = root / rel
        try:
            size = path.stat().st_size
        except OSError:
            bad.append(f"{rel} (missing)")
            continue
        if want.get("bytes") is not None and size != want["bytes"]:
            bad.append(f"{rel} ({size} bytes, expected {want['bytes']})")
        elif hashes and want.get("sha256") and sha256_file(path) != want["sha256"]:
            bad.append(f"{rel} (checksum differs)")
    return bad


# --- JSONL ------------------------------------------------------------------------------------
def read_jsonl(path: str | Path) -> Iterator[tuple[int, Any, str]]:
    """``(line number, object, error)`` for every non-blank line of a UTF-8 (BOM allowed) JSONL file.

    A line that is not JSON gives ``(n, None, "line n: invalid JSON (...)")``; callers decide
    whether that stops them or becomes an error record.

    >>> import tempfile; p = Path(tempfile.mkdtemp()) / "q.jsonl"
    >>> _ = p.write_text('{"id": 1}\\n\\nnot json\\n', encoding="utf-8")
    >>> list(read_jsonl(p))
    [(1, {'id': 1}, ''), (3, None, 'line 3: invalid JSON (Expecting value)')]
    """
    with open(path, encoding="utf-8-sig") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                yield n, json.loads(line), ""
            except json.JSONDecodeError as exc:
                yield n, None, f"line {n}: invalid JSON ({exc.msg})"


def write_jsonl(path: str | Path, rows: Iterable[Any]) -> Path:
    """Write ``rows`` as JSONL atomically (one JSON object per line, UTF-8)."""
    with atomic_file(path) as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
    return Path(path)


# --- versions and pointers --------------------------------------------------------------------
def read_pointer(root: str | Path, name: str = POINTER) -> str | None:
    """The version the pointer file ``root/name`` names, or ``None`` when absent or empty."""
    try:
        value = (Path(root) / name).read_text(encoding="utf-8").strip()
    except (FileNotFoundError, NotADirectoryError):
        return None
    return value or None


def write_pointer(root: str | Path, version: str, name: str = POINTER) -> None:
    """Point ``root/name`` at ``version`` atomically (readers see the old or the new name).

    The temporary file is ``.<name>-*.tmp`` (``.current-*.tmp``).
    """
    atomic_write(Path(root) / name, version + "\n", prefix=f".{name}-")


def numbered_versions(root: str | Path, require: str | None = MANIFEST) -> list[str]:
    """``vNNNN`` folder names under ``root``, oldest first (only those holding ``require``).

    >>> import tempfile; root = Path(tempfile.mkdtemp())
    >>> for n in ("v0002", "v0010", "junk"): (root / n).mkdir()
    >>> numbered_versions(root, require=None)
    ['v0002', 'v0010']
    """
    root = Path(root)
    if not root.is_dir():
        return []
    names = [p.name for p in root.iterdir()
             if _VERSION_RE.match(p.name) and p.is_dir() and (require is None or (p / require).is_file())]
    return sorted(names, key=lambda n: int(n[1:]))


def is_version_name(name: str) -> bool:
    """``vNNNN`` (four or more digits).

    >>> is_version_name("v0001"), is_version_name("v1"), is_version_name("../x")
    (True, False, False)
    """
    return bool(_VERSION_RE.match(name))


def claim_version(root: str | Path, folder: str | Path, before: Callable[[str], None] | None = None) -> str:
    """Rename the finished ``folder`` to the next free ``vNNNN`` under ``root``; returns the name.

    ``before(name)`` runs before each attempt (to write the version into the manifest). A rename
    onto an existing, non-empty folder fails, so two writers racing for one number cannot
    overwrite each other: the loser takes the next number. The folder's files are synced
    before the rename and ``root`` after it, so a claimed version survives a power cut whole.
    """
    root = Path(root)
    fsync_tree(folder)
    for _ in range(1000):
        names = numbered_versions(root, require=None)
        name = f"v{int(names[-1][1:]) + 1 if names else 1:04d}"
        if before is not None:
            before(name)
        try:
            os.rename(folder, root / name)
        except OSError:
            continue
        fsync_dir(root)
        return name
    raise KBError(f"could not claim a new version folder in {root}")
