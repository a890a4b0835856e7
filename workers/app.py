"""The Celery app: ``celery -A workers.app worker`` / ``beat`` / ``flower``.

It is the dispatcher's own app (``dispatcher.messaging.app``), with the tasks of
``workers.tasks`` registered on it; its settings, and why each delivery setting is what
it is, are in ``config/celery.py``.
"""

from __future__ import annotations

from dispatcher.messaging import app
from dispatcher.privacy import hide_queries_in_http_logs

__all__ = ["app"]

app.conf.include = ["workers.tasks"]
# Workers call the providers: their request logs must not carry destination numbers.
hide_queries_in_http_logs()
