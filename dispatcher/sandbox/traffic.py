"""The request log: every provider request the sandbox saw, classed as send, status or other.

Benchmarks count requests per kind (how many polls a fax cost), so recording must stay cheap:
a bounded deque of tuples, appended without a lock (``deque.append`` is atomic).
"""

from __future__ import annotations

import re
from collections import deque
from typing import Any, NamedTuple

__all__ = ["MAX_REQUESTS", "RequestEntry", "RequestLog", "classify"]

MAX_REQUESTS = 200_000
_ID = r"[^/]+"
_FAX_ID = rf"(?!search$|webhook$){_ID}"  # Optum's /fax/{id} must not swallow fixed routes
_ROUTES: dict[str, list[tuple[str, re.Pattern[str], str]]] = {
    "faxplus": [
        ("POST", re.compile(rf"/accounts/{_ID}/outbox"), "send"),
        ("GET", re.compile(rf"/accounts/{_ID}/(outbox|faxes)(/{_ID})?"), "status"),
    ],
    "interfax": [
        ("POST", re.compile(r"/outbound/faxes"), "send"),
        ("GET", re.compile(rf"/outbound/(search|faxes(/{_ID})?)"), "status"),
    ],
    "optum": [
        ("POST", re.compile(r"/fax"), "send"),
        ("POST", re.compile(r"/fax/search"), "status"),
        ("GET", re.compile(rf"/fax/{_FAX_ID}"), "status"),
    ],
}
_PREFIXES = {"faxplus": "/faxplus/v3", "interfax": "/interfax", "optum": "/optum"}


def classify(provider: str, method: str, path: str) -> str:
    """``send`` for the request that creates a fax, ``status`` for one that reads status."""
    route = path.removeprefix(_PREFIXES[provider]).rstrip("/")
    for wanted, pattern, kind in _ROUTES[provider]:
        if method == wanted and pattern.fullmatch(route):
            return kind
    return "other"


class RequestEntry(NamedTuple):
    provider: str
    method: str
    path: str
    kind: str
    at: float  # wall clock, time.time()

    def to_json(self) -> dict[str, Any]:
        return self._asdict()


class RequestLog:
    """The newest ``MAX_REQUESTS`` provider requests, oldest first."""

    def __init__(self, maxlen: int = MAX_REQUESTS) -> None:
        self._entries: deque[RequestEntry] = deque(maxlen=maxlen)

    def record(self, provider: str, method: str, path: str, at: float) -> None:
        self._entries.append(
            RequestEntry(provider, method, path, classify(provider, method, path), at)
        )

    def entries(self) -> list[RequestEntry]:
        return list(self._entries)

    def clear(self) -> None:
        self._entries.clear()
