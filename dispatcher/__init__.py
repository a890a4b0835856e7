"""fax-dispatcher: a distributed fax dispatcher on Celery.

What a service on another host needs is the HTTP client, importable from here::

    from dispatcher import FaxClient

The rest of the package is the service itself. The client's names load on first use, so
a worker importing ``dispatcher.sending`` does not pay for the client.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dispatcher.client import (
        AsyncFaxClient,
        Conflict,
        FaxApiError,
        FaxClient,
        FaxConnectionError,
        FaxRequest,
        Forbidden,
        InvalidRequest,
        NotFound,
        RateLimited,
        Retries,
        ServerError,
        Unauthorized,
    )

__all__ = [
    "AsyncFaxClient",
    "Conflict",
    "FaxApiError",
    "FaxClient",
    "FaxConnectionError",
    "FaxRequest",
    "Forbidden",
    "InvalidRequest",
    "NotFound",
    "RateLimited",
    "Retries",
    "ServerError",
    "Unauthorized",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("dispatcher.client"), name)
    raise AttributeError(f"module 'dispatcher' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
