"""Per-process shared objects: the loaded retry policy and the document store."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from config.settings import Settings, get_settings
from dispatcher.policy import Policy, load_policy
from dispatcher.store.documents import DatabaseStore, DocumentStore, ObjectStore

__all__ = ["document_store", "policy"]


@cache
def _policy(path: str, time_scale: float) -> Policy:
    return load_policy(Path(path), time_scale)


def policy() -> Policy:
    """The retry policy from FAX_RETRY_POLICY_FILE, scaled by FAX_TIME_SCALE."""
    settings = get_settings()
    return _policy(str(settings.retry_policy_file), settings.time_scale)


_stores: dict[str, DocumentStore] = {}


def document_store(settings: Settings | None = None) -> DocumentStore:
    """The store FAX_DOCUMENT_STORE names, one per configuration per process (an object
    store client is built once)."""
    settings = settings or get_settings()
    key = settings.document_store + settings.s3.model_dump_json()
    if key not in _stores:
        if settings.document_store == "s3":
            _stores[key] = ObjectStore(settings.s3)
        else:
            _stores[key] = DatabaseStore()
    return _stores[key]
