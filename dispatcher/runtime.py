"""Per-process shared objects: the loaded retry policy and the document store."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from config.settings import get_settings
from dispatcher.documents import DocumentStore
from dispatcher.policy import Policy, load_policy

__all__ = ["document_store", "policy"]


@cache
def _policy(path: str, time_scale: float) -> Policy:
    return load_policy(Path(path), time_scale)


def policy() -> Policy:
    """The retry policy from FAX_RETRY_POLICY_FILE, scaled by FAX_TIME_SCALE."""
    settings = get_settings()
    return _policy(str(settings.retry_policy_file), settings.time_scale)


@cache
def _document_store(path: Path) -> DocumentStore:
    return DocumentStore(path)


def document_store() -> DocumentStore:
    """The store under FAX_HOME/documents (one per directory per process)."""
    return _document_store(get_settings().documents_dir)
