"""Page surgery for partial resends: the pages a provider has not yet delivered."""

from __future__ import annotations

import io
from collections.abc import Sequence

from dispatcher.providers.base import Document

__all__ = ["pages_after"]


def pages_after(documents: Sequence[Document], delivered: int) -> Document | None:
    """One PDF of every page after the first ``delivered`` pages of the documents in order.

    Returns None when the documents cannot be split (not all PDFs, or nothing left), and
    the caller resends everything.
    """
    if any(d.mime_type != "application/pdf" for d in documents):
        return None
    from pypdf import PdfReader, PdfWriter  # only a partial resend needs it (10 MB)

    writer = PdfWriter()
    seen = 0
    for document in documents:
        for page in PdfReader(io.BytesIO(document.content)).pages:
            seen += 1
            if seen > delivered:
                writer.add_page(page)
    if seen <= delivered:
        return None
    buffer = io.BytesIO()
    writer.write(buffer)
    return Document(
        f"remaining-from-page-{delivered + 1}.pdf", "application/pdf", buffer.getvalue()
    )
