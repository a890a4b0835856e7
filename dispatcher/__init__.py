"""fax-dispatcher: a distributed fax dispatcher on Celery.

What a service on another host needs is the HTTP client, offered here::

    from dispatcher import FaxClient

The rest of the package is the service itself. The client is imported on first use, so
a worker or the API, which import this package, do not carry it.
"""

import typing

if typing.TYPE_CHECKING:
    from dispatcher.client import (
        AsyncFaxClient,
        Conflict,
        FaxApiError,
        FaxClient,
        FaxConnectionError,
        FaxRequest,
        Filters,
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
    "Filters",
    "Forbidden",
    "InvalidRequest",
    "NotFound",
    "RateLimited",
    "Retries",
    "ServerError",
    "Unauthorized",
]


def __getattr__(name: str) -> typing.Any:
    if name in __all__:
        from dispatcher import client

        return getattr(client, name)
    raise AttributeError(f"module 'dispatcher' has no attribute {name!r}")
