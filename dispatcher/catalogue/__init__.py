"""The status catalogue: (provider, code) -> outcome, remediation, family.

This package is the one place that knows what a provider's status code means.
Each provider's table is data in its own module; ``classify`` is the only lookup,
and unknown codes get a safe per-provider default marked ``known=False``.
"""

from __future__ import annotations

from collections.abc import Callable

from dispatcher.catalogue import faxplus, interfax, optum, transport
from dispatcher.catalogue.model import Family, Outcome, Provider, Remediation, StatusEntry

__all__ = [
    "Family",
    "Outcome",
    "Provider",
    "Remediation",
    "StatusEntry",
    "classify",
    "classify_transport",
    "entries",
    "normalize_code",
]

_TABLES: dict[Provider, dict[str, StatusEntry]] = {
    Provider.FAXPLUS: faxplus.TABLE,
    Provider.INTERFAX: interfax.TABLE,
    Provider.OPTUM: optum.TABLE,
}
_DEFAULTS: dict[Provider, Callable[[str], StatusEntry]] = {
    Provider.FAXPLUS: faxplus.unknown,
    Provider.INTERFAX: interfax.unknown,
    Provider.OPTUM: optum.unknown,
}


def normalize_code(provider: Provider | str, code: object) -> str:
    """The canonical text of a code: InterFAX integers as decimal text, others stripped."""
    provider = Provider(provider)
    text = str(code).strip()
    if provider is Provider.INTERFAX:
        try:
            return str(int(text))
        except ValueError:
            return text
    return text


def classify(provider: Provider | str, code: object) -> StatusEntry:
    """The catalogue entry for a provider's status code, or the provider's safe default."""
    provider = Provider(provider)
    key = normalize_code(provider, code)
    entry = _TABLES[provider].get(key)
    return entry if entry is not None else _DEFAULTS[provider](key)


def classify_transport(provider: Provider | str, kind: str) -> StatusEntry:
    """The entry for a transport-level failure (timeout, 5xx, 429, 401, 400, ...)."""
    return transport.classify(Provider(provider).value, kind)


def entries(provider: Provider | str) -> list[StatusEntry]:
    """Every known entry of one provider, in table order."""
    return list(_TABLES[Provider(provider)].values())
