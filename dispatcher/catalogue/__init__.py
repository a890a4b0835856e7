"""The status catalogue: (provider, code) -> outcome, remediation, family.

Each provider's table is data in its own package (``dispatcher/providers/<name>/
catalogue.py``); ``classify`` is the only lookup, and unknown codes get the provider's
safe default, marked ``known=False``. Transport failures (timeouts, 5xx, ...) are
classified alike for every provider (``transport``).
"""

from __future__ import annotations

from dispatcher.catalogue import transport
from dispatcher.catalogue.model import Family, Outcome, Remediation, StatusEntry
from dispatcher.providers import registry

__all__ = [
    "Family",
    "Outcome",
    "Remediation",
    "StatusEntry",
    "classify",
    "classify_transport",
    "entries",
    "normalize_code",
]


def normalize_code(provider: str, code: object) -> str:
    """The canonical text of a code: InterFAX integers as decimal text, others stripped."""
    return registry.definition(provider).normalize(code)


def classify(provider: str, code: object) -> StatusEntry:
    """The catalogue entry for a provider's status code, or the provider's safe default."""
    return registry.definition(provider).classify(code)


def classify_transport(provider: str, kind: str) -> StatusEntry:
    """The entry for a transport-level failure (timeout, 5xx, 429, 401, 400, ...)."""
    return transport.classify(registry.definition(provider).name, kind)


def entries(provider: str) -> list[StatusEntry]:
    """Every known entry of one provider, in table order."""
    return list(registry.definition(provider).table.values())
