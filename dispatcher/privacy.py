"""How a destination number is shown where it need not be read whole: logs, error bodies,
metrics, Redis keys, and a job's record once its retention has passed.

A number is protected health information when it is a patient's or a clinic's; the
job's owner sees it whole through the API until it is purged, everyone else sees
``+1202555****``.
"""

from __future__ import annotations

import hashlib
import logging
import re

__all__ = [
    "MaskNumbers",
    "mask_number",
    "mask_numbers",
    "mask_numbers_in",
    "mask_numbers_in_http_logs",
    "number_key",
]

_HIDDEN = 4


def mask_number(number: str) -> str:
    """``number`` with its last four characters hidden: ``+12025550123`` -> ``+1202555****``
    (a number of four characters or fewer is hidden whole)."""
    keep = max(0, len(number) - _HIDDEN)
    return number[:keep] + "*" * (len(number) - keep)


def number_key(number: str) -> str:
    """A stable name for ``number`` in shared keys (line leases), that is not the number."""
    return hashlib.sha256(number.encode()).hexdigest()[:32]


#: ``+12025550123`` or its URL-encoded ``%2B12025550123``: everything but the last four.
_NUMBER = re.compile(r"(\+|%2B)(\d{4,11})\d{4}(?!\d)")


def mask_numbers(text: str) -> str:
    """``text`` with every number in international form masked (a provider's error text,
    a task's result), as ``mask_number`` would."""
    return _NUMBER.sub(lambda m: f"{m[1]}{m[2]}****", text)


class MaskNumbers(logging.Filter):
    """On a handler: the line it writes has every international number masked, whoever
    logged it (a provider's error text quoted by a task, Celery logging a task's result)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask_numbers(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


def mask_numbers_in(logger: logging.Logger) -> None:
    """Install ``MaskNumbers`` on every handler of ``logger`` (once each)."""
    for handler in logger.handlers:
        if not any(isinstance(f, MaskNumbers) for f in handler.filters):
            handler.addFilter(MaskNumbers())


def mask_numbers_in_http_logs() -> None:
    """Install ``MaskNumbers`` on httpx's logger (once): it logs each request's URL, and a
    provider's query string can hold the number (InterFAX's ``faxNumber=``)."""
    logger = logging.getLogger("httpx")
    if not any(isinstance(f, MaskNumbers) for f in logger.filters):
        logger.addFilter(MaskNumbers())
