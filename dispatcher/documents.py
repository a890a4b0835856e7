"""Documents: type sniffing and page counting. The type comes from the bytes, never from
the file name. Where the bytes are kept is ``dispatcher.store.documents``."""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from typing import Literal

from dispatcher.errors import ValidationError

__all__ = [
    "IMAGES",
    "MiB",
    "OFFICE",
    "PDF_TIFF",
    "TEXT",
    "DocumentInfo",
    "inspect_document",
    "sniff_mime_type",
]

MiB = 1024 * 1024
#: Document types by kind, for the providers' limits.
PDF_TIFF = frozenset({"application/pdf", "image/tiff"})
IMAGES = frozenset({"image/png", "image/jpeg"})
OFFICE = frozenset(
    {
        "application/msword",
        "application/rtf",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    }
)
TEXT = frozenset({"text/plain"})

_SIGNATURES: list[tuple[bytes, str]] = [
    (b"%PDF-", "application/pdf"),
    (b"II*\x00", "image/tiff"),
    (b"MM\x00*", "image/tiff"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"PK\x03\x04", "application/zip"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "application/x-ole-storage"),
    (b"{\\rtf", "application/rtf"),
]
_OOXML = {
    b"word/": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    b"xl/": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}


def sniff_mime_type(content: bytes) -> str:
    """The document's type from its first bytes; ``application/octet-stream`` if unknown."""
    for signature, mime in _SIGNATURES:
        if content.startswith(signature):
            if mime == "application/zip":
                return next((m for marker, m in _OOXML.items() if marker in content[:4096]), mime)
            if mime == "application/x-ole-storage":
                return "application/msword"
            return mime
    head = content[:4096]
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return "application/octet-stream"
    if text and all(ch.isprintable() or ch in "\r\n\t\f" for ch in text):
        return "text/plain"
    return "application/octet-stream"


@dataclass(frozen=True, slots=True)
class DocumentInfo:
    sha256: str
    mime_type: str
    size: int
    page_count: int


def _pdf_pages(content: bytes, field: str) -> int:
    # Imported here: pypdf (and the PIL it loads) is 10 MB a worker, which never
    # inspects a document, would carry for nothing.
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    try:
        reader = PdfReader(io.BytesIO(content), strict=False)
        if reader.is_encrypted:
            raise ValidationError(field, "the PDF is encrypted or password-protected")
        pages = len(reader.pages)
    except ValidationError:
        raise
    except (PyPdfError, RecursionError, ValueError, KeyError, TypeError, OSError) as exc:
        # PyPdfError covers pypdf's own limits (a page tree too deep, too many objects):
        # a crafted file is bad input like any other unreadable one.
        raise ValidationError(field, f"the PDF cannot be read ({exc.__class__.__name__})") from exc
    if pages == 0:
        raise ValidationError(field, "the PDF has no pages")
    return pages


def _tiff_pages(content: bytes) -> int:
    """Count TIFF image file directories (one per page)."""
    order: Literal["little", "big"] = "little" if content[:2] == b"II" else "big"
    offset = int.from_bytes(content[4:8], order)
    pages = 0
    seen: set[int] = set()
    while 0 < offset < len(content) - 2 and offset not in seen and pages < 10_000:
        seen.add(offset)
        pages += 1
        count = int.from_bytes(content[offset : offset + 2], order)
        link = offset + 2 + 12 * count
        offset = int.from_bytes(content[link : link + 4], order)
    return max(pages, 1)


def inspect_document(content: bytes, field: str = "document") -> DocumentInfo:
    """Type, size and page count of a document; raises ``ValidationError`` if unusable."""
    if not content:
        raise ValidationError(field, "the document is empty")
    mime = sniff_mime_type(content)
    if mime == "application/pdf":
        pages = _pdf_pages(content, field)
    elif mime == "image/tiff":
        pages = _tiff_pages(content)
    elif mime == "text/plain":
        pages = max(1, content.count(b"\f") + 1, (content.count(b"\n") + 59) // 60)
    else:
        pages = 1
    return DocumentInfo(hashlib.sha256(content).hexdigest(), mime, len(content), pages)
