"""The Celery app: ``celery -A workers.app worker`` / ``beat`` / ``flower``.

Its settings, and why each delivery setting is what it is, are in ``config/celery.py``.
"""

from __future__ import annotations

from celery import Celery

from config.celery import CeleryConfig

__all__ = ["app"]

app = Celery("fax_dispatcher", include=["workers.tasks"])
app.config_from_object(CeleryConfig())
