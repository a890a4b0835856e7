"""The Celery app: ``celery -A workers.app worker`` / ``beat`` / ``flower``.

It is the dispatcher's own app (``dispatcher.messaging.app``), with the tasks of
``workers.tasks`` registered on it; its settings, and why each delivery setting is what
it is, are in ``config/celery.py``.
"""

from __future__ import annotations

from typing import Any

from celery.signals import after_setup_logger, after_setup_task_logger, worker_init

from dispatcher.errors import ConfigurationError
from dispatcher.messaging import app
from dispatcher.privacy import mask_numbers_in, mask_numbers_in_http_logs
from dispatcher.runtime import document_store

__all__ = ["app"]

app.conf.include = ["workers.tasks"]
# Workers call the providers: their request logs must not carry destination numbers.
mask_numbers_in_http_logs()


def _mask_numbers(logger: Any, **kwargs: Any) -> None:
    """Every line a worker or beat writes has its numbers masked."""
    mask_numbers_in(logger)


after_setup_logger.connect(_mask_numbers, weak=False)
after_setup_task_logger.connect(_mask_numbers, weak=False)


def _check_document_keys(**kwargs: Any) -> None:
    """A worker without the documents' keys (FAX_DOCUMENT_KEYS) refuses to start, naming
    the setting, rather than take faxes it cannot read. (Celery logs and ignores what a
    signal handler raises, except an exit.)"""
    try:
        document_store()
    except ConfigurationError as exc:
        raise SystemExit(f"the worker cannot start: {exc}") from exc


worker_init.connect(_check_document_keys, weak=False)
