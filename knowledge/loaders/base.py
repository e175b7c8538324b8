"""The loader interface, its registry, content sniffing and text decoding.

A loader turns one file into ordered :class:`~knowledge.core.types.Block` records. It has one
required method, :meth:`Loader.load`; problems worth telling the user (a page without text,
a formula without a cached value) go to :meth:`Loader.warn` and end up on the document.
"""

from __future__ import annotations

import codecs
import logging
import zipfile
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

from knowledge.core.errors import IngestError, KBError
from knowledge.core.registry import Registry
from knowledge.core.types import Block
from config.settings import get_settings

log = logging.getLogger(__name__)

SNIFF_BYTES = 8192

# What each content family looks like to a person reading an error message.
_FAMILY_NAMES = {
    "pdf": "a PDF",
    "zip": "a zip archive",
    "ole": "a legacy binary Office file (.doc/.xls/.ppt)",
    "image": "an image",
    "binary": "binary data",
    "text": "plain text",
}
# Office Open XML documents are zip archives told apart by one member each.
_ZIP_MEMBERS = {
    "word/document.xml": "a Word document (.docx)",
    "ppt/presentation.xml": "a PowerPoint deck (.pptx)",
    "xl/workbook.xml": "an Excel workbook (.xlsx)",
}


class Loader(ABC):
    """Reads one file format into blocks.

    Subclasses set :attr:`content` (the content family the file must sniff as: ``"text"``,
    ``"pdf"`` or ``"zip"``) and, for Office files, :attr:`zip_member` (a member the archive must
    hold). A fresh instance is made for every file, so instance state is per document.
    """

    content: ClassVar[str] = "text"
    zip_member: ClassVar[str] = ""

    def __init__(self) -> None:
        self.warnings: list[str] = []
        self.doc_title: str = ""   # a title from the file's own metadata, when it has one
        self.options: Any = None   # the ingest settings (IngestSettings); None: the process-wide ones
        self.progress = False      # show progress bars for slow steps (OCR)
        self.ocr_pages: dict[int, float] = {}  # pages read by OCR -> their mean confidence

    @abstractmethod
    def load(self, path: Path) -> list[Block]:
        """Read ``path`` and return its blocks in reading order."""

    def title(self, path: Path, blocks: list[Block]) -> str:
        """The document title: file metadata, else the first heading, else the file name stem."""
        if self.doc_title.strip():
            return self.doc_title.strip()
        for block in blocks:
            if block.kind == "heading":
                return block.text
        return path.stem

    def warn(self, message: str) -> None:
        """Record a problem that does not stop the document from loading."""
        self.warnings.append(message)

    def ingest_options(self) -> Any:
        """The ingest settings this load runs with (:attr:`options`, else the process-wide ones)."""
        return self.options if self.options is not None else get_settings().ingest


_REGISTRY: Registry[type[Loader]] = Registry("loader for extension")
SUPPORTED_EXTENSIONS: set[str] = set()
"""Lower-case file extensions (with the dot) that have a registered loader; kept in step with
the registry by :func:`register_loader`."""


def register_loader(exts: tuple[str, ...], cls: type[Loader]) -> None:
    """Register ``cls`` for the extensions ``exts`` (``(".md", ".markdown")``).

    An extension that already has a loader raises :class:`KBError`: replacing a loader must be
    deliberate (unregister first), never the side effect of an import order.
    """
    normalised = [e.lower() if e.startswith(".") else "." + e.lower() for e in exts]
    taken = [ext for ext in normalised if ext in _REGISTRY]
    if taken:  # all or nothing: a half-registered loader would be worse than none
        raise KBError(f"a loader is already registered for {taken[0]!r}: {_REGISTRY.get(taken[0]).__name__}")
    for ext in normalised:
        _REGISTRY.register(ext, cls)
        SUPPORTED_EXTENSIONS.add(ext)


def unregister_loader(ext: str) -> None:
    """Remove the loader for ``ext`` (no error when none is registered)."""
    _REGISTRY.unregister(ext.lower())
    SUPPORTED_EXTENSIONS.discard(ext.lower())


def loader_for(path: Path) -> type[Loader]:
    """The loader class for ``path``'s extension; :class:`IngestError` when none is registered."""
    ext = path.suffix.lower()
    if ext not in _REGISTRY:
        hint = ""
        if ext in (".doc", ".xls", ".ppt"):
            hint = f"; legacy binary Office format, save it as {ext}x first"
        supported = ", ".join(sorted(SUPPORTED_EXTENSIONS))
        raise IngestError(path, f"unsupported file type {ext or '(no extension)'!r}{hint} "
                                f"(supported: {supported})")
    return _REGISTRY.get(ext)


def sniff_content(head: bytes) -> str:
    """Name the content family of a file from its first bytes.

    Returns ``"pdf"``, ``"zip"``, ``"ole"`` (legacy Office), ``"image"``, ``"binary"`` or
    ``"text"``. UTF-16 text with a byte-order mark counts as text despite its zero bytes.

    >>> sniff_content(b"%PDF-1.7 ..."), sniff_content(b"PK\\x03\\x04..."), sniff_content("正文".encode())
    ('pdf', 'zip', 'text')
    >>> sniff_content(b"\\x89PNG\\r\\n"), sniff_content(b"abc\\x00\\x01def")
    ('image', 'binary')
    """
    stripped = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if stripped.startswith(b"%PDF-"):
        return "pdf"
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "zip"
    if head.startswith(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"):
        return "ole"
    if head.startswith((b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"II*\x00", b"MM\x00*", b"BM")):
        return "image"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "text"
    if b"\x00" in head:
        return "binary"
    controls = sum(1 for b in head if b < 32 and b not in (9, 10, 12, 13, 27))
    return "binary" if head and controls / len(head) > 0.1 else "text"


def check_content(path: Path, head: bytes, cls: type[Loader]) -> None:
    """Raise :class:`IngestError` when the file's content does not match what its extension
    promises (a ``.pdf`` that is really text, a ``.docx`` that is really a workbook)."""
    family = sniff_content(head)
    ext = path.suffix.lower()
    if family != cls.content:
        raise IngestError(path, f"content does not match the extension {ext} "
                                f"(looks like {_FAMILY_NAMES.get(family, family)})")
    if cls.content == "zip" and cls.zip_member:
        _check_zip_member(path, ext, cls.zip_member)


# Office files are zip archives: refuse ones no Office program writes before any library
# inflates them (a zip bomb expands a few MB into many GB; member names with ``..``, absolute
# paths or symlink modes are an archive attack, never an Office document).
MAX_ZIP_MEMBERS = 10_000
MAX_UNZIPPED_BYTES = 512 * 1024 * 1024
MAX_ZIP_RATIO = 200  # inflated / compressed, for members above 1 MB inflated


def check_zip_safety(path: Path, zf: zipfile.ZipFile) -> None:
    """Raise :class:`IngestError` for zip bombs and unsafe member names (nothing is extracted)."""
    infos = zf.infolist()
    if len(infos) > MAX_ZIP_MEMBERS:
        raise IngestError(path, f"archive has {len(infos)} members (limit {MAX_ZIP_MEMBERS}); refused")
    total = 0
    for info in infos:
        name = info.filename
        mode = (info.external_attr >> 16) & 0o170000
        if name.startswith(("/", "\\")) or ".." in name.replace("\\", "/").split("/") or ":" in name.split("/")[0]:
            raise IngestError(path, f"archive member {name!r} has an unsafe path; refused")
        if mode == 0o120000:
            raise IngestError(path, f"archive member {name!r} is a symbolic link; refused")
        total += info.file_size
        if info.file_size > (1 << 20) and info.file_size > MAX_ZIP_RATIO * max(1, info.compress_size):
            raise IngestError(path, f"archive member {name!r} inflates {info.file_size // max(1, info.compress_size)}"
                                    f"x (a zip bomb?); refused")
    if total > MAX_UNZIPPED_BYTES:
        raise IngestError(path, f"archive inflates to {total >> 20} MB (limit {MAX_UNZIPPED_BYTES >> 20} MB); refused")


def check_xml_sizes(path: Path, max_mb: float, setting: str, streamed: tuple[str, ...] = ()) -> None:
    """Raise :class:`IngestError` when an XML part of an Office file inflates to more than
    ``max_mb`` MB: the parts a library parses whole (``word/document.xml``, shared strings,
    styles), whatever the archive names them. Members under a ``streamed`` prefix (worksheets,
    read row by row) are not checked.

    The size is measured by inflating the part (a stream, nothing kept), not taken from the
    size its header declares, so an XML bomb is refused before any XML parser sees it.
    """
    limit = int(max_mb * 1024 * 1024)
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            name = info.filename
            if not name.lower().endswith((".xml", ".rels")) or name.startswith(streamed):
                continue
            if _inflated_size(zf, info, limit) > limit:
                raise IngestError(path, f"{name} inflates to more than {max_mb:g} MB (setting {setting}); "
                                        f"refused unparsed (an XML bomb?)")


def _inflated_size(zf: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int) -> int:
    """The member's inflated size, counted up to just past ``limit``."""
    if info.file_size > limit:
        return info.file_size
    size = 0
    with zf.open(info) as fh:
        while chunk := fh.read(1 << 20):
            size += len(chunk)
            if size > limit:
                break
    return size


def _check_zip_member(path: Path, ext: str, member: str) -> None:
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
            check_zip_safety(path, zf)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise IngestError(path, f"corrupt {ext} file (not a readable zip archive: {exc})") from exc
    if member not in names:
        found = next((desc for m, desc in _ZIP_MEMBERS.items() if m in names), "a zip archive")
        raise IngestError(path, f"content does not match the extension {ext} (looks like {found})")


def decode_text(data: bytes) -> tuple[str, str, bool]:
    """Decode file bytes: ``(text, encoding, lossy)``.

    Order: a byte-order mark (UTF-8, UTF-16), strict UTF-8, strict GB18030 (a superset of GBK
    and GB2312, so GBK files decode exactly), then UTF-8 with replacement characters
    (``lossy=True``; the caller warns).

    >>> decode_text("差旅费".encode("utf-8-sig"))
    ('差旅费', 'utf-8-sig', False)
    >>> decode_text("差旅费".encode("gbk"))
    ('差旅费', 'gb18030', False)
    >>> decode_text(b"ok \\xff\\xfe\\xfd")[1:]
    ('utf-8', True)
    """
    if data.startswith(codecs.BOM_UTF8):
        return data[len(codecs.BOM_UTF8):].decode("utf-8", errors="replace"), "utf-8-sig", False
    for bom, enc in ((codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be")):
        if data.startswith(bom):
            return data[len(bom):].decode(enc, errors="replace"), enc, False
    for enc in ("utf-8", "gb18030"):
        try:
            return data.decode(enc), enc, False
        except UnicodeDecodeError:
            continue
    return data.decode("utf-8", errors="replace"), "utf-8", True


def read_text_file(path: Path, warnings: list[str] | None = None) -> str:
    """Read a text file in UTF-8, UTF-8 with BOM, UTF-16 with BOM, GBK or GB18030.

    Line endings are normalised to ``\\n``. When no encoding decodes the bytes cleanly the text is
    decoded with replacement characters and a warning is appended to ``warnings`` (and logged).
    """
    text, encoding, lossy = decode_text(Path(path).read_bytes())
    if lossy:
        message = (f"{Path(path).name}: not valid UTF-8, GBK or GB18030; undecodable bytes "
                   f"were replaced with U+FFFD")
        log.warning(message)
        if warnings is not None:
            warnings.append(message)
    return text.replace("\r\n", "\n").replace("\r", "\n")
