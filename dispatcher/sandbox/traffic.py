"""The request log: every provider request the sandbox saw, classed as send, status or other.

Benchmarks count requests per kind (how many polls a fax cost), so recording must stay cheap:
a bounded deque of tuples, appended without a lock (``deque.append`` is atomic).
"""

from __future__ import annotations

import re
from collections import deque
from typing import Any, NamedTuple

from dispatcher.sandbox.providers import sandbox

__all__ = ["ID", "MAX_REQUESTS", "RequestEntry", "RequestLog", "RequestRule", "classify"]

MAX_REQUESTS = 200_000
#: One path segment (an id), for the providers' ``REQUEST_KINDS`` patterns.
ID = r"[^/]+"


class RequestRule(NamedTuple):
    """A provider request of this method whose path (below the provider's ``PREFIX``) fully
    matches ``pattern`` is of this ``kind`` ("send" or "status")."""

    method: str
    pattern: re.Pattern[str]
    kind: str


def classify(provider: str, method: str, path: str) -> str:
    """``send`` for the request that creates a fax, ``status`` for one that reads status."""
    module = sandbox(provider)
    route = path.removeprefix(module.PREFIX).rstrip("/")
    for rule in module.REQUEST_KINDS:
        if method == rule.method and rule.pattern.fullmatch(route):
            return rule.kind
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
