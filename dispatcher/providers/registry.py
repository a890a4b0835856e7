"""The registry of providers: every package under ``dispatcher/providers/`` with a
``DEFINITION``, found once. The rest of the service asks here, never by name.

A provider with its own credentials talks to its configured service; one without them
talks to ``FAX_SANDBOX_URL`` when that is set, with the sandbox's well-known credentials,
and is a ``ConfigurationError`` otherwise.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache

import httpx

import dispatcher.providers
from config.settings import Settings, get_settings
from dispatcher.errors import ConfigurationError, ValidationError
from dispatcher.providers.base import ProviderAdapter
from dispatcher.providers.definition import ProviderDefinition, ProviderSettings

__all__ = [
    "PROVIDERS",
    "build_adapter",
    "definition",
    "definitions",
    "provider_name",
    "provider_settings",
]


@cache
def definitions() -> dict[str, ProviderDefinition]:
    """Every provider, by name, in name order."""
    found: dict[str, ProviderDefinition] = {}
    for module in pkgutil.iter_modules(dispatcher.providers.__path__):
        if module.ispkg:
            package = importlib.import_module(f"dispatcher.providers.{module.name}")
            defined = getattr(package, "DEFINITION", None)
            if isinstance(defined, ProviderDefinition):
                found[defined.name] = defined
    return dict(sorted(found.items()))


#: Every provider's name.
PROVIDERS = tuple(definitions())


def definition(name: str) -> ProviderDefinition:
    """The provider called ``name``; ``ConfigurationError`` for one there is not."""
    try:
        return definitions()[name]
    except KeyError:
        raise ConfigurationError(f"unknown provider {name!r}") from None


def provider_name(name: str, field: str = "provider") -> str:
    """``name`` if a provider has it, else a ``ValidationError`` for ``field`` listing them."""
    if name not in definitions():
        known = ", ".join(PROVIDERS)
        raise ValidationError(field, f"unknown provider {name!r} (one of {known})")
    return name


def provider_settings(
    name: str, settings: Settings | None = None, own: ProviderSettings | None = None
) -> ProviderSettings:
    """The provider's settings (``own``, else as the environment gives them now), pointed
    at the sandbox when it has no credentials of its own and FAX_SANDBOX_URL is set."""
    settings = settings or get_settings()
    own = own or definition(name).load_settings()
    if not own.configured() and settings.sandbox_url:
        return own.for_sandbox(settings.sandbox_url)
    return own


def build_adapter(
    provider: str,
    settings: Settings,
    *,
    own: ProviderSettings | None = None,
    client: httpx.Client | None = None,
) -> ProviderAdapter:
    """A new adapter for ``provider``; raises ``ConfigurationError`` if it cannot talk to one.

    ``own`` replaces the provider's settings from the environment; ``client`` replaces the
    adapter's own pooled client (tests: short timeouts).
    """
    defined = definition(provider)
    account = provider_settings(provider, settings, own)
    try:
        return defined.adapter(account, client=client, timeout=settings.provider_timeout)
    except ConfigurationError as exc:
        raise ConfigurationError(f"{exc}; configure it, or set FAX_SANDBOX_URL") from exc
