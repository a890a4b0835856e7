"""Per-process shared objects: the loaded retry policy, the document store, and one
adapter per provider with the call hooks (circuit breaker) and timers (send latency)
attached."""

from __future__ import annotations

import threading
from functools import cache
from pathlib import Path

from config.settings import Settings, get_settings
from dispatcher import latency
from dispatcher.guards import record_provider_call
from dispatcher.policy import Policy, load_policy
from dispatcher.providers.base import ProviderAdapter
from dispatcher.providers.observed import ObservedAdapter
from dispatcher.providers.registry import build_adapter
from dispatcher.store.documents import DatabaseStore, DocumentStore, ObjectStore
from dispatcher.store.encryption import cipher_for

__all__ = ["clear_adapters", "document_store", "get_adapter", "policy"]


@cache
def _policy(path: str, time_scale: float) -> Policy:
    return load_policy(Path(path), time_scale)


def policy() -> Policy:
    """The retry policy from FAX_RETRY_POLICY_FILE, scaled by FAX_TIME_SCALE."""
    settings = get_settings()
    return _policy(str(settings.retry_policy_file), settings.time_scale)


_stores: dict[str, DocumentStore] = {}


def document_store(settings: Settings | None = None) -> DocumentStore:
    """The store FAX_DOCUMENT_STORE names, with the keys of FAX_DOCUMENT_KEYS, one per
    configuration per process (an object store client is built once)."""
    settings = settings or get_settings()
    keys = "|".join(k.get_secret_value() for k in settings.document_keys)
    key = "|".join((settings.document_store, settings.s3.model_dump_json(), keys))
    key += settings.resolved_database_url
    if key not in _stores:
        cipher = cipher_for(settings)
        if settings.document_store == "s3":
            _stores[key] = ObjectStore(settings.s3, cipher)
        else:
            _stores[key] = DatabaseStore(cipher)
    return _stores[key]


_adapters: dict[str, ProviderAdapter] = {}
_adapters_lock = threading.Lock()


def get_adapter(provider: str) -> ProviderAdapter:
    """This process's adapter for ``provider``, built once from the settings, with the
    call hooks (the circuit breaker) and timers (send latency) attached."""
    with _adapters_lock:
        if provider not in _adapters:
            adapter = build_adapter(provider, get_settings())
            _adapters[provider] = ObservedAdapter(
                adapter, [record_provider_call], [latency.record_call]
            )
        return _adapters[provider]


def clear_adapters() -> None:
    """Close and forget every cached adapter (tests; settings changes; worker shutdown)."""
    with _adapters_lock:
        for adapter in _adapters.values():
            adapter.close()
        _adapters.clear()
