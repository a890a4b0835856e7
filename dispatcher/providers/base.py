"""The one interface every provider adapter implements, and the values it passes around."""

from __future__ import annotations

import json
import math
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import httpx

from dispatcher.errors import ProviderRejected, ValidationError

__all__ = [
    "LOOKBACK_MARGIN",
    "Callback",
    "Document",
    "ManualRetry",
    "ProviderAdapter",
    "ProviderStatus",
    "SendRequest",
    "batches",
    "default_timeout",
    "fill_missing",
    "lookback_start",
    "parse_count",
    "parse_number",
    "parse_time",
    "webhook_json",
]


#: A search for a send looks this much further back than the attempt's start: the
#: provider's clock is not ours.
LOOKBACK_MARGIN = timedelta(minutes=10)


def lookback_start(since: datetime) -> datetime:
    """Where a search for a send that began at ``since`` starts, in UTC."""
    return since.astimezone(UTC) - LOOKBACK_MARGIN


def default_timeout(seconds: float = 30.0) -> httpx.Timeout:
    """Explicit timeouts: a slow provider must never hold a worker for long."""
    return httpx.Timeout(connect=5.0, read=seconds, write=seconds, pool=5.0)


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


@dataclass(frozen=True, slots=True)
class Callback:
    """One provider callback, read once: the statuses it reports and, from a provider that
    signs its events, the event's own id and the time it was made, by which a replay is
    known (the signature covers the body, not when it was sent)."""

    statuses: Sequence[ProviderStatus]
    event_id: str | None = None
    sent_at: datetime | None = None


class ManualRetry(StrEnum):
    """Where a provider's own resend of a failed fax stands (Optum's manual retry)."""

    NONE = "none"  # never asked for, or the request never reached the provider
    RUNNING = "running"
    FINISHED = "finished"


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
    def find_by_reference(self, reference: str, since: datetime) -> ProviderStatus | None:
        """The fax sent with this reference, if the provider has one. ``since`` is when the
        attempt began: the search looks back that far, however many faxes came after."""

    @abstractmethod
    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> Callback:
        """What a provider callback says, verified as the provider allows; raises
        ``ValidationError`` if it is not one (field ``signature`` for a bad signature)."""

    #: True for a provider that resends its own copy of a failed fax when asked, once
    #: (Optum): that is tried before a new send.
    has_manual_retry: bool = False

    def retry(self, fax_id: str) -> None:
        """Ask the provider to resend its own copy of a failed fax."""
        raise ProviderRejected(self.name, "http_405", "this provider has no manual retry")

    def manual_retry(self, fax_id: str) -> ManualRetry:
        """Whether the provider's own resend of this fax was made, and if it has ended."""
        return ManualRetry.NONE

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
    """Batch results for ``fax_ids``; a fax the batch call did not return is read on its
    own, and one the provider does not know (404) is left out: the caller deals with it
    alone, the others' statuses still count."""
    statuses: dict[str, ProviderStatus] = {}
    for fax_id in fax_ids:
        if fax_id in found:
            statuses[fax_id] = found[fax_id]
            continue
        try:
            statuses[fax_id] = read_one(fax_id)
        except ProviderRejected as exc:
            if exc.status_code != 404:
                raise
    return statuses


def webhook_json(body: bytes) -> dict[str, Any]:
    """A callback body as a JSON object; anything else is not a callback we understand."""
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValidationError("body", f"not JSON: {exc}") from exc
    if not isinstance(payload, dict):
        raise ValidationError("body", "expected a JSON object")
    return payload
