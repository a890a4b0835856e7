"""Documents as the providers receive them: type checks, page counts, nameless multipart."""

from __future__ import annotations

import email.parser
import email.policy
import io
import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import PurePosixPath

__all__ = [
    "DOCUMENT_TYPES",
    "Part",
    "count_pages",
    "extension",
    "media_type",
    "parse_multipart",
]

#: The usual document types a fax API takes: PDF, TIFF, JPEG, PNG, Word, Excel, RTF and text.
DOCUMENT_TYPES = frozenset(
    {
        "application/pdf",
        "application/msword",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "text/plain",
        "application/rtf",
        "text/rtf",
        "image/jpeg",
        "image/png",
        "image/tiff",
        "application/vnd.ms-excel",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    }
)


@dataclass(frozen=True, slots=True)
class Part:
    """One body part: its content type, Content-Location (a document by URI) and bytes."""

    content_type: str | None
    content_location: str | None
    content: bytes


def media_type(value: str | None) -> str | None:
    """``application/pdf; charset=x`` -> ``application/pdf``."""
    return value.split(";", 1)[0].strip().lower() or None if value else None


def extension(filename: str | None) -> str:
    return PurePosixPath(filename or "").suffix.lstrip(".").lower()


def parse_multipart(content_type: str, body: bytes) -> list[Part]:
    """Every part of a multipart body, whether form-data or mixed, named or not.

    The InterFAX Python client sends parts with neither ``name`` nor ``filename``, which
    form parsers reject; the stdlib MIME parser takes them as they are.
    """
    head = f"Content-Type: {content_type}\r\n\r\n".encode("latin-1")
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    if not message.is_multipart():
        return []
    parts = []
    for part in message.iter_parts():
        payload = part.get_payload(decode=True)
        parts.append(
            Part(
                content_type=media_type(part.get("Content-Type")),
                content_location=part.get("Content-Location"),
                content=payload if isinstance(payload, bytes) else b"",
            )
        )
    return parts


def count_pages(content: bytes, content_type: str | None) -> int:
    """Pages in a PDF (1 for anything else or anything unreadable): enough for page counts."""
    if content_type != "application/pdf" and not content.startswith(b"%PDF"):
        return 1
    return _small_pdf_pages(content) if len(content) <= CACHED_PDF_BYTES else _pdf_pages(content)


#: PDFs up to this size have their page count cached (at most 64 of them): a bulk run
#: sends the same few documents many times, and the sandbox shares its host's cores
#: with the workers it serves.
CACHED_PDF_BYTES = 1 << 20


def _pdf_pages(content: bytes) -> int:
    from pypdf import PdfReader

    logging.getLogger("pypdf").setLevel(logging.ERROR)
    try:
        return max(1, len(PdfReader(io.BytesIO(content)).pages))
    except Exception:  # any malformed PDF still faxes as one page here
        return 1


_small_pdf_pages = lru_cache(maxsize=64)(_pdf_pages)
