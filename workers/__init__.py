"""The Celery app, its tasks and the beat schedule."""
