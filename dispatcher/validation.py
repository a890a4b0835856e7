"""Input validation for new faxes: every check runs before anything is written.

Each failure is a ``ValidationError`` naming the field and the reason.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberType

from config.settings import get_settings
from dispatcher.callbacks.targets import check_target
from dispatcher.clock import utcnow
from dispatcher.documents import DocumentInfo, inspect_document
from dispatcher.errors import ValidationError
from dispatcher.lanes import Priority, parse_priority
from dispatcher.policy import PartialSend
from dispatcher.privacy import mask_number
from dispatcher.providers.registry import definition, definitions, provider_name
from dispatcher.routing import current_routing

__all__ = ["MAX_DOCUMENT_BYTES", "ValidFax", "normalize_number", "validate_fax"]

_REFUSED_TYPES = {
    PhoneNumberType.PREMIUM_RATE: "premium-rate numbers are never dialled",
    PhoneNumberType.SHARED_COST: "shared-cost numbers are never dialled",
    PhoneNumberType.PERSONAL_NUMBER: "personal numbers are never dialled",
    PhoneNumberType.UAN: "universal access numbers are never dialled",
    PhoneNumberType.VOICEMAIL: "voicemail numbers are never dialled",
}
#: No provider takes more: a larger upload is refused before anything parses it.
MAX_DOCUMENT_BYTES = max(d.limits.max_total_bytes for d in definitions().values())
MAX_METADATA_KEYS = 20
MAX_METADATA_BYTES = 4096
MAX_TAG_KEY, MAX_TAG_VALUE = 64, 255


@dataclass(frozen=True, slots=True)
class ValidFax:
    """A fax request that passed every check, with its documents inspected."""

    to: str
    provider: str
    documents: Sequence[tuple[str, bytes, DocumentInfo]]
    send_at: datetime | None
    metadata: Mapping[str, str]
    options: Mapping[str, Any]
    route: tuple[str, ...] = ()
    deadline: datetime | None = None
    priority: Priority = Priority.NORMAL
    callback_url: str | None = None

    @property
    def pages(self) -> int:
        return sum(info.page_count for _, _, info in self.documents)


def _parse_number(raw: str, field: str) -> phonenumbers.PhoneNumber:
    """The parsed, dialable destination; parsed once so callers can reuse it."""
    text = (raw or "").strip()
    if not text:
        raise ValidationError(field, "a destination number is required")
    if len(text) > 32:
        raise ValidationError(field, "the number is too long")
    shown = mask_number(text)  # error bodies end up in logs: never the whole number
    if not text.startswith("+"):
        raise ValidationError(field, f"{shown!r} is not in international format (+country...)")
    try:
        number = phonenumbers.parse(text, None)
    except NumberParseException as exc:
        raise ValidationError(field, f"{shown!r} is not a phone number: {exc}") from exc
    if not phonenumbers.is_possible_number(number):
        raise ValidationError(field, f"{shown!r} has the wrong length for its country")
    # number_type is UNKNOWN exactly when is_valid_number is false: asking once instead
    # of both halves the cost, which is most of checking a 100,000-row bulk file.
    kind = phonenumbers.number_type(number)
    if kind == PhoneNumberType.UNKNOWN:
        raise ValidationError(field, f"{shown!r} is not a valid number in its country")
    refused = _REFUSED_TYPES.get(kind)
    if refused:
        raise ValidationError(field, refused)
    return number


def normalize_number(raw: str, field: str = "to") -> str:
    """E.164 form of a destination; international format with ``+`` is required."""
    return phonenumbers.format_number(
        _parse_number(raw, field), phonenumbers.PhoneNumberFormat.E164
    )


def _metadata(raw: Mapping[str, Any] | None) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ValidationError("metadata", "must be an object of string keys and values")
    if len(raw) > MAX_METADATA_KEYS:
        raise ValidationError("metadata", f"at most {MAX_METADATA_KEYS} keys")
    clean = {str(k): str(v) for k, v in raw.items()}
    for key, value in clean.items():  # each pair is indexed for search (job_tags)
        if not 0 < len(key) <= MAX_TAG_KEY or len(value) > MAX_TAG_VALUE:
            raise ValidationError(
                "metadata",
                f"keys of 1 to {MAX_TAG_KEY} characters, values of at most {MAX_TAG_VALUE}",
            )
    if len(json.dumps(clean)) > MAX_METADATA_BYTES:
        raise ValidationError("metadata", f"at most {MAX_METADATA_BYTES} bytes")
    return clean


def _options(raw: Mapping[str, Any] | None) -> dict[str, Any]:
    options = dict(raw or {})
    unknown = set(options) - {"max_attempts", "retry_delay", "partial"}
    if unknown:
        raise ValidationError("options", f"unknown options {sorted(unknown)}")
    attempts = options.get("max_attempts")
    if attempts is not None and (not isinstance(attempts, int) or not 1 <= attempts <= 20):
        raise ValidationError("options.max_attempts", "must be a whole number from 1 to 20")
    delay = options.get("retry_delay")
    if delay is not None and (not isinstance(delay, int | float) or not 0 <= delay <= 86400):
        raise ValidationError("options.retry_delay", "must be seconds from 0 to 86400")
    partial = options.get("partial")
    choices = [choice.value for choice in PartialSend]
    if partial is not None and partial not in choices:
        raise ValidationError("options.partial", f"must be one of {', '.join(choices)}")
    return options


def _moment(value: datetime | None, field: str) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValidationError(field, "must include a time zone")
    return value.astimezone(UTC)


def _deadline(deadline: datetime | None, send_at: datetime | None) -> datetime | None:
    """No attempt starts after the deadline; it must leave time for one."""
    deadline = _moment(deadline, "deadline")
    if deadline is not None and deadline <= max(send_at or utcnow(), utcnow()):
        raise ValidationError("deadline", "must be later than now and than send_at")
    return deadline


def _check_limits(
    provider: str, region: str, inspected: Sequence[tuple[str, bytes, DocumentInfo]]
) -> None:
    """Raise ``ValidationError`` unless ``provider`` takes these documents to this region."""
    limits = definition(provider).limits
    if limits.countries is not None and region not in limits.countries:
        raise ValidationError("to", f"{provider} does not fax to {region} numbers")
    if len(inspected) > limits.max_files:
        raise ValidationError(
            "documents", f"{provider} takes at most {limits.max_files} files per fax"
        )
    for index, (name, _, info) in enumerate(inspected):
        if info.mime_type not in limits.mime_types:
            raise ValidationError(
                f"documents[{index}]",
                f"{info.mime_type} is not a type {provider} accepts ({name!r})",
            )
    total = sum(info.size for _, _, info in inspected)
    if total > limits.max_total_bytes:
        raise ValidationError(
            "documents", f"{total} bytes is over {provider}'s {limits.max_total_bytes}"
        )
    pages = sum(info.page_count for _, _, info in inspected)
    if pages > limits.max_pages:
        raise ValidationError("documents", f"{pages} pages is over {provider}'s {limits.max_pages}")


def validate_fax(
    to: str,
    documents: Sequence[tuple[str, bytes]],
    provider: str | None,
    send_at: datetime | None = None,
    metadata: Mapping[str, Any] | None = None,
    options: Mapping[str, Any] | None = None,
    *,
    deadline: datetime | None = None,
    priority: str | None = None,
    callback_url: str | None = None,
    inspections: MutableMapping[bytes, DocumentInfo] | None = None,
) -> ValidFax:
    """Check a request against the destination rules and the providers' limits.

    With no ``provider``, the route for the destination (``config/routing.toml``) decides,
    keeping only providers that take these documents to this country; the first of them
    sends, the rest are the failover order. ``inspections`` caches document inspections
    across calls, so a batch sending the same bytes to many numbers parses them once.
    """
    named = None if provider is None else provider_name(provider)
    routing = current_routing()
    parsed = _parse_number(to, "to")
    number = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    refused = routing.reject_reason(number)
    if refused:
        raise ValidationError("to", refused)
    if not documents:
        raise ValidationError("documents", "at least one document is required")
    total = sum(len(content) for _, content in documents)
    if total > MAX_DOCUMENT_BYTES:
        raise ValidationError(
            "documents", f"{total} bytes is over the {MAX_DOCUMENT_BYTES} any provider takes"
        )
    inspected = []
    for index, (name, content) in enumerate(documents):
        info = inspections.get(content) if inspections is not None else None
        if info is None:
            info = inspect_document(content, f"documents[{index}]")
            if inspections is not None:
                inspections[content] = info
        inspected.append((name, content, info))
    region = phonenumbers.region_code_for_number(parsed) or ""
    candidates: tuple[str, ...] = (named,) if named is not None else routing.route_for(number)
    route: list[str] = []
    first_error: ValidationError | None = None
    for candidate in candidates:
        try:
            _check_limits(candidate, region, inspected)
        except ValidationError as exc:
            first_error = first_error or exc
            continue
        route.append(candidate)
    if not route:
        assert first_error is not None
        raise first_error
    when = _moment(send_at, "send_at")
    return ValidFax(
        number,
        route[0],
        inspected,
        when,
        _metadata(metadata),
        _options(options),
        tuple(route),
        _deadline(deadline, when),
        parse_priority(priority) or Priority.NORMAL,
        check_target(callback_url, get_settings().callbacks) if callback_url else None,
    )
