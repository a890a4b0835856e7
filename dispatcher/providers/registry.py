"""Builds each provider's adapter from settings, pointing unconfigured ones at the sandbox.

A provider with its own credentials talks to its configured service. One without them talks
to ``settings.sandbox_url`` when that is set, with the sandbox's well-known credentials, and
is a ``ConfigurationError`` otherwise.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import httpx
from pydantic import SecretStr

from config.settings import Settings, get_settings
from dispatcher.errors import ConfigurationError
from dispatcher.providers.base import ProviderAdapter
from dispatcher.providers.faxplus import FaxPlusAdapter
from dispatcher.providers.interfax import InterFaxAdapter
from dispatcher.providers.observed import ObservedAdapter
from dispatcher.providers.optum import OptumAdapter

__all__ = ["PROVIDERS", "build_adapter", "clear_adapters", "get_adapter"]

SANDBOX_FAXPLUS_TOKEN = "alohi_pat_sandbox"
SANDBOX_USER = "sandbox"
SANDBOX_SECRET = "sandbox"


def _faxplus(settings: Settings, client: httpx.Client | None) -> ProviderAdapter:
    config = settings.faxplus
    if config.token is None and settings.sandbox_url:
        config = config.model_copy(
            update={
                "base_url": f"{settings.sandbox_url.rstrip('/')}/faxplus/v3",
                "token": SecretStr(SANDBOX_FAXPLUS_TOKEN),
            }
        )
    return FaxPlusAdapter(config, client=client, timeout=settings.provider_timeout)


def _interfax(settings: Settings, client: httpx.Client | None) -> ProviderAdapter:
    config = settings.interfax
    if (not config.username or config.password is None) and settings.sandbox_url:
        config = config.model_copy(
            update={
                "base_url": f"{settings.sandbox_url.rstrip('/')}/interfax",
                "username": SANDBOX_USER,
                "password": SecretStr(SANDBOX_SECRET),
            }
        )
    return InterFaxAdapter(config, client=client, timeout=settings.provider_timeout)


def _optum(settings: Settings, client: httpx.Client | None) -> ProviderAdapter:
    config = settings.optum
    if (not config.client_id or config.client_secret is None) and settings.sandbox_url:
        base_url = f"{settings.sandbox_url.rstrip('/')}/optum"
        config = config.model_copy(
            update={
                "base_url": base_url,
                "token_url": f"{base_url}/oauth/token",
                "client_id": SANDBOX_USER,
                "client_secret": SecretStr(SANDBOX_SECRET),
            }
        )
    return OptumAdapter(config, client=client, timeout=settings.provider_timeout)


_BUILDERS: dict[str, Callable[[Settings, httpx.Client | None], ProviderAdapter]] = {
    "faxplus": _faxplus,
    "interfax": _interfax,
    "optum": _optum,
}
PROVIDERS = tuple(_BUILDERS)

_cache: dict[str, ProviderAdapter] = {}
_cache_lock = threading.Lock()


def build_adapter(
    provider: str, settings: Settings, *, client: httpx.Client | None = None
) -> ProviderAdapter:
    """A new adapter for ``provider``; raises ``ConfigurationError`` if it cannot talk to one.

    ``client`` replaces the adapter's own pooled client (tests: short timeouts).
    """
    try:
        builder = _BUILDERS[provider]
    except KeyError:
        raise ConfigurationError(f"unknown provider {provider!r}") from None
    try:
        return builder(settings, client)
    except ConfigurationError as exc:
        raise ConfigurationError(f"{exc}; configure it, or set FAX_SANDBOX_URL") from exc


def get_adapter(provider: str) -> ProviderAdapter:
    """This process's adapter for ``provider``, built once from ``get_settings()``, with the
    call hooks (circuit breaker, metrics) attached."""
    from dispatcher.guards import record_provider_call

    with _cache_lock:
        if provider not in _cache:
            adapter = build_adapter(provider, get_settings())
            _cache[provider] = ObservedAdapter(adapter, [record_provider_call])
        return _cache[provider]


def clear_adapters() -> None:
    """Close and forget every cached adapter (tests; settings changes; worker shutdown)."""
    with _cache_lock:
        for adapter in _cache.values():
            adapter.close()
        _cache.clear()
