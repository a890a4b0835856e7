"""The one interface every provider adapter implements, and the values it passes around."""

from __future__ import annotations

import json
import math
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from dispatcher.errors import ValidationError

__all__ = [
    "Document",
    "ProviderAdapter",
    "ProviderStatus",
    "SendRequest",
    "batches",
    "default_timeout",
    "fill_missing",
    "parse_count",
    "parse_number",
    "parse_time",
    "webhook_json",
]


def default_timeout() -> httpx.Timeout:
    """Explicit timeouts: a slow provider must never hold a worker for long."""
    return httpx.Timeout(connect=5.0, read=30.0, write=30.0, pool=5.0)


_EXTRA_FRACTION = re.compile(r"(\.\d{6})\d+")


def parse_time(value: object) -> datetime | None:
    """A provider timestamp as an aware UTC datetime; None when absent or unreadable.

    Providers send ``YYYY-MM-DD HH:mm:ss`` (FAX.PLUS), zone-less ISO (InterFAX, GMT) and ISO
    with ``Z`` and seven fractional digits (Optum); a zone-less time is UTC.
    """
    if not isinstance(value, str) or not value.strip():
        return None
    text = _EXTRA_FRACTION.sub(r"\1", value.strip().replace(". ", "."))
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def parse_number(value: object) -> float | None:
    """A numeric field that providers send as a number, a numeric string, or null.
    "NaN" and "inf" parse as floats but are no count, cost or duration: None."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def parse_count(value: object) -> int | None:
    """A count (pages, attempts) sent as a number, a numeric string, or null."""
    number = parse_number(value)
    return None if number is None else int(number)


@dataclass(frozen=True, slots=True)
class Document:
    """A document to fax: bytes plus what the sender knows about them."""

    name: str
    mime_type: str
    content: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class SendRequest:
    """One attempt to send one fax.

    ``reference`` is unique per attempt and travels with the fax (InterFAX ``reference``,
    FAX.PLUS comment, Optum metadata) so a send whose answer was lost can be found again.
    """

    job_id: str
    reference: str
    to: str
    documents: Sequence[Document]
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ProviderStatus:
    """One status reading of one fax, in the provider's own vocabulary (``code``)."""

    fax_id: str
    code: str
    pages_sent: int | None = None
    cost: float | None = None
    duration: float | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    reference: str | None = None
    failed_reason: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)


class ProviderAdapter(ABC):
    """A provider's HTTP API behind one shape.

    Adapters raise only ``dispatcher.errors.ProviderError`` subclasses; no ``httpx``
    exception escapes ``dispatcher.providers``.
    """

    name: str

    @abstractmethod
    def send(self, request: SendRequest) -> str:
        """Send a fax; return the provider's fax id."""

    @abstractmethod
    def status(self, fax_id: str) -> ProviderStatus:
        """Read one fax's current status."""

    def statuses(self, fax_ids: Sequence[str]) -> dict[str, ProviderStatus]:
        """Read many statuses; adapters with a batch read override this."""
        return {fax_id: self.status(fax_id) for fax_id in fax_ids}

    @abstractmethod
    def cancel(self, fax_id: str) -> None:
        """Ask the provider to stop a fax that has not finished."""

    @abstractmethod
    def find_by_reference(self, reference: str) -> ProviderStatus | None:
        """The fax sent with this reference, if the provider has one."""

    @abstractmethod
    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> Iterable[ProviderStatus]:
        """Statuses carried by a provider callback; raises ``ValidationError`` if it is not one."""

    def close(self) -> None:  # noqa: B027 - optional: adapters without a pool keep this no-op
        """Release pooled connections."""


def batches(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    """``items`` in slices of at most ``size``: one batched call per slice."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def fill_missing(
    found: Mapping[str, ProviderStatus],
    fax_ids: Sequence[str],
    read_one: Callable[[str], ProviderStatus],
) -> dict[str, ProviderStatus]:
    """Batch results for ``fax_ids``; a fax the batch call did not return is read on its own."""
    return {fax_id: found[fax_id] if fax_id in found else read_one(fax_id) for fax_id in fax_ids}


def webhook_json(body: bytes) -> dict[str, Any]:
    """A callback body as a JSON object; anything else is not a callback we understand."""
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValidationError("body", f"not JSON: {exc}") from exc
    if not isinstance(payload, dict):
        raise ValidationError("body", "expected a JSON object")
    return payload
