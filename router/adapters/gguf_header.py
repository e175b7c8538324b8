"""A small, fast reader for the header of a GGUF file: metadata and tensor table.

``gguf.GGUFReader`` builds a numpy view for every item of every metadata array, which takes
7+ s on the packaged model (its tokenizer holds 150k tokens and merges). Checking an adapter
needs only the scalar metadata and the tensor table, so this walks the header with
``struct`` and skips long arrays (about 0.2 s). It also tells where each tensor's bytes lie,
which lets the validator catch truncated files before llama.cpp reads past their end.

Format (little-endian, version 2/3): magic ``GGUF``, u32 version, u64 tensor count, u64
metadata count; metadata = (string key, u32 type, value)*; tensor infos = (string name, u32
n_dims, u64 dims[n_dims], u32 ggml type, u64 offset)*; then data, aligned to
``general.alignment`` (default 32). A string is a u64 length plus UTF-8 bytes.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from knowledge.core.errors import ValidationError

_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9
# Arrays longer than this are skipped (their value is reported as None): only tokenizer
# tables are that long, and nothing here needs their contents.
MAX_ARRAY_ITEMS = 64
# ggml type id -> (block size in elements, bytes per block) for the types an adapter may use.
GGML_SIZES = {0: (1, 4), 1: (1, 2), 30: (1, 2)}  # F32, F16, BF16


@dataclass
class TensorInfo:
    name: str
    shape: list[int]  # innermost first, as GGUF stores it: a (out, in) matrix is [in, out]
    ggml_type: int
    offset: int  # absolute file offset of the data

    def nbytes(self) -> int | None:
        """Size of the data for unquantised types (``None`` for quantised ones)."""
        size = GGML_SIZES.get(self.ggml_type)
        if size is None:
            return None
        n = 1
        for d in self.shape:
            n *= d
        return n // size[0] * size[1]


@dataclass
class GGUFHeader:
    version: int
    fields: dict[str, Any]
    tensors: dict[str, TensorInfo]
    file_size: int


def read_gguf_header(path: str | Path) -> GGUFHeader:
    """Parse the header of ``path``; raises ``ValidationError`` for a non-GGUF or truncated file."""
    path = Path(path)
    with open(path, "rb") as fh:
        size = path.stat().st_size
        if size < 24:
            head = fh.read(4)
            raise ValidationError(f"{path} is not a GGUF file (magic {head!r})")
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            try:
                return _parse(mm, path, size)
            except (struct.error, UnicodeDecodeError, IndexError) as exc:
                raise ValidationError(f"{path}: truncated or corrupt GGUF header ({exc})") from None


def _parse(mm: Any, path: Path, size: int) -> GGUFHeader:
    if mm[:4] != b"GGUF":
        raise ValidationError(f"{path} is not a GGUF file (magic {bytes(mm[:4])!r})")
    version, n_tensors, n_kv = struct.unpack_from("<IQQ", mm, 4)
    if version not in (2, 3) or n_tensors > 1_000_000 or n_kv > 1_000_000:
        raise ValidationError(f"{path}: unsupported GGUF version {version} or absurd counts "
                              f"({n_tensors} tensors, {n_kv} keys); big-endian files are not supported")
    off = 24
    fields: dict[str, Any] = {}
    for _ in range(n_kv):
        key, off = _string(mm, off, size)
        (vtype,) = struct.unpack_from("<I", mm, off)
        fields[key], off = _value(mm, off + 4, vtype, size)
    infos = []
    for _ in range(n_tensors):
        name, off = _string(mm, off, size)
        (n_dims,) = struct.unpack_from("<I", mm, off)
        if n_dims > 8:
            raise ValidationError(f"{path}: tensor {name!r} claims {n_dims} dimensions")
        dims = list(struct.unpack_from(f"<{n_dims}Q", mm, off + 4))
        ggml_type, rel = struct.unpack_from("<IQ", mm, off + 4 + 8 * n_dims)
        off += 4 + 8 * n_dims + 12
        infos.append((name, dims, ggml_type, rel))
    align = int(fields.get("general.alignment") or 32)
    data_start = -(-off // align) * align
    tensors = {name: TensorInfo(name, dims, t, data_start + rel) for name, dims, t, rel in infos}
    return GGUFHeader(version=version, fields=fields, tensors=tensors, file_size=size)


def _string(mm: Any, off: int, size: int) -> tuple[str, int]:
    (n,) = struct.unpack_from("<Q", mm, off)
    if off + 8 + n > size:
        raise struct.error(f"string of {n} bytes at offset {off} runs past the end")
    return bytes(mm[off + 8 : off + 8 + n]).decode("utf-8"), off + 8 + n


def _value(mm: Any, off: int, vtype: int, size: int) -> tuple[Any, int]:
    if vtype in _SCALARS:
        fmt = _SCALARS[vtype]
        return struct.unpack_from(fmt, mm, off)[0], off + struct.calcsize(fmt)
    if vtype == _STRING:
        return _string(mm, off, size)
    if vtype != _ARRAY:
        raise struct.error(f"unknown metadata type {vtype} at offset {off}")
    item_type, count = struct.unpack_from("<IQ", mm, off)
    off += 12
    keep = count <= MAX_ARRAY_ITEMS
    if item_type in _SCALARS and not keep:
        end = off + count * struct.calcsize(_SCALARS[item_type])
        if end > size:
            raise struct.error("array runs past the end of the file")
        return None, end
    items = []
    for _ in range(count):
        item, off = _value(mm, off, item_type, size)
        if keep:
            items.append(item)
    return (items if keep else None), off
