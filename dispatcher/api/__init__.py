"""The HTTP API: submit, read and act on faxes, receive provider webhooks, export metrics.

Served by ``faxctl api`` (uvicorn); ``create_app()`` builds a fresh application.
"""

from __future__ import annotations

from dispatcher.api.app import create_app

__all__ = ["create_app"]
