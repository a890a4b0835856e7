"""The faxes the bench submits: one small PDF, and destination numbers chosen so that
no two jobs share a line (the line lease would otherwise serialize them) unless a
sandbox scenario is wanted."""

from __future__ import annotations

from functools import cache

from dispatcher.demo import sample_document
from dispatcher.submission import FaxRequest

__all__ = ["document", "interfax_requests", "plain_numbers"]

#: Area codes for plain numbers; none holds a sandbox scenario, so every send succeeds.
AREA_CODES = ("312", "415", "617", "212", "303", "206", "512", "404", "213", "305", "310")


@cache
def document() -> bytes:
    return sample_document(pages=1)


def plain_numbers(count: int) -> list[str]:
    """``count`` distinct valid E.164 numbers (up to 110,000) outside the scenario table."""
    return [f"+1{AREA_CODES[i // 10_000]}555{i % 10_000:04d}" for i in range(count)]


def interfax_requests(count: int) -> list[FaxRequest]:
    """InterFAX sends, one POST each (FAX.PLUS uploads first, Optum needs a token)."""
    pdf = document()
    return [
        FaxRequest(to=number, documents=[("bench.pdf", pdf)], provider="interfax")
        for number in plain_numbers(count)
    ]
