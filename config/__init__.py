"""Settings and deployment configuration (retry policy data, Celery settings)."""

from config.settings import Settings, get_settings

__all__ = ["Settings", "get_settings"]
