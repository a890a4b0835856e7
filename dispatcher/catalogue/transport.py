"""Transport failures, classified like provider status codes.

Codes are the ``kind`` of a ``dispatcher.errors.ProviderError``: ``connect``, ``timeout``,
``protocol`` (garbled or empty answer), ``http_5xx`` (any 5xx), ``http_429``, ``http_401``,
``http_403``, ``http_4xx`` (any other refusal).
"""

from __future__ import annotations

from dispatcher.catalogue.model import Family, Outcome, Remediation, StatusEntry

__all__ = ["SPECIFIC_KINDS", "canonical_kind", "classify", "kinds_of"]

_RULES: dict[str, tuple[str, Remediation, Family, str]] = {
    "connect": (
        "Connection failed",
        Remediation.WAIT_AND_RETRY,
        Family.TRANSPORT,
        "Could not reach the provider; retried after a backoff.",
    ),
    "timeout": (
        "Timed out",
        Remediation.WAIT_AND_RETRY,
        Family.TRANSPORT,
        "No answer in time; the send is reconciled by reference before any new send.",
    ),
    "protocol": (
        "Unreadable answer",
        Remediation.WAIT_AND_RETRY,
        Family.TRANSPORT,
        "The provider's answer could not be read; reconciled by reference, then retried.",
    ),
    "lost": (
        "Send lost",
        Remediation.WAIT_AND_RETRY,
        Family.TRANSPORT,
        "The worker stopped before the provider's answer was recorded; followed if the "
        "provider has the fax, sent again only once FAX_SETTLE_DELAY shows it never arrived.",
    ),
    "http_5xx": (
        "Provider server error",
        Remediation.WAIT_AND_RETRY,
        Family.TRANSPORT,
        "The provider answered 5xx; reconciled by reference, then retried after a backoff.",
    ),
    "http_429": (
        "Rate limited",
        Remediation.WAIT_AND_RETRY,
        Family.RATE_LIMIT,
        "The provider asked us to slow down; retried after its Retry-After.",
    ),
    "http_401": (
        "Unauthorized",
        Remediation.NO_RETRY,
        Family.AUTH,
        "Credentials refused; an operator must fix them, then retry the job.",
    ),
    "http_403": (
        "Forbidden",
        Remediation.NO_RETRY,
        Family.AUTH,
        "Credentials lack the needed scope; an operator must fix them, then retry the job.",
    ),
    "http_4xx": (
        "Request refused",
        Remediation.NO_RETRY,
        Family.REJECTED,
        "The provider refused the request as invalid; its message says why.",
    ),
}


#: The rows that name one kind; ``http_5xx`` and ``http_4xx`` take every other 5xx or 4xx.
SPECIFIC_KINDS = frozenset(kind for kind in _RULES if not kind.endswith("xx"))


def kinds_of(family: Family) -> list[str]:
    """The table's rows in ``family`` (``http_5xx`` stands for every 5xx)."""
    return [kind for kind, (_, _, rule_family, _) in _RULES.items() if rule_family is family]


def canonical_kind(kind: str) -> str:
    """Fold a specific HTTP status into the table's rows (``http_503`` -> ``http_5xx``)."""
    if kind in _RULES:
        return kind
    if kind.startswith("http_5"):
        return "http_5xx"
    if kind.startswith("http_4"):
        return "http_4xx"
    return "protocol"


def classify(provider: str, kind: str) -> StatusEntry:
    label, remediation, family, description = _RULES[canonical_kind(kind)]
    return StatusEntry(
        provider=provider,
        code=kind,
        label=label,
        outcome=Outcome.FAILURE,
        remediation=remediation,
        family=family,
        description=description,
    )
