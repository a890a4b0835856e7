"""Send latency per provider, kept in Redis: workers on every host add to one histogram,
and the API reads it at scrape time (``fax_send_latency_seconds``).

Not from the attempts table: ``started_at`` is the claim (before the documents are
read) and ``submitted_at`` is when the whole wave of sends is recorded, so their gap is
not the provider's; a lost answer has none; and a scrape would read every attempt.
Each provider has one hash, ``fax:metrics:send_latency:<provider>``: a field per bucket
counts the sends answered within its bound (above the one before), and ``sum`` adds
their seconds, both in one MULTI so a scrape never sees one without the other. The
reader cumulates the buckets as Prometheus expects. The fields only grow (no TTL), so
``rate()`` works on them as on any counter.

A worker adds up its sends in memory and writes them once a second, from a thread of
its own: a Redis round trip per send cost a tenth of the dispatch rate. A process that
dies loses at most its last second of observations, never a send."""

from __future__ import annotations

import bisect
import logging
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import redis

from dispatcher.broker import redis_client

__all__ = ["BUCKETS", "FLUSH_SECONDS", "Latency", "flush", "read", "record_call"]

log = logging.getLogger(__name__)

#: Upper bounds in seconds; a send waits at most FAX_PROVIDER_TIMEOUT (30 s by default).
BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_INF = "+Inf"
_FIELDS = (*(str(bound) for bound in BUCKETS), _INF)


def _key(provider: str) -> str:
    return f"fax:metrics:send_latency:{provider}"


#: Seconds between two writes of a process's observations.
FLUSH_SECONDS = 1.0

_lock = threading.Lock()
_counts: Counter[tuple[str, str]] = Counter()
_sums: defaultdict[str, float] = defaultdict(float)
_flusher: threading.Thread | None = None


def record_call(provider: str, call: str, seconds: float) -> None:
    """Adapter timer: a send's seconds join its provider's histogram (written within
    ``FLUSH_SECONDS``). Never fails the send it measured."""
    global _flusher
    if call != "send":
        return
    field = _FIELDS[bisect.bisect_left(BUCKETS, seconds)]
    with _lock:
        _counts[(provider, field)] += 1
        _sums[provider] += seconds
        if _flusher is None:
            _flusher = threading.Thread(target=_flush_forever, name="latency", daemon=True)
            _flusher.start()


def _flush_forever() -> None:
    while True:
        time.sleep(FLUSH_SECONDS)
        flush()


def flush() -> None:
    """Write the observations gathered since the last write, in one MULTI. A Redis
    failure keeps them for the next try (and is logged)."""
    with _lock:
        counts, sums = Counter(_counts), dict(_sums)
        _counts.clear()
        _sums.clear()
    if not counts:
        return
    try:
        pipe = redis_client().pipeline(transaction=True)
        for (provider, field), count in counts.items():
            pipe.hincrby(_key(provider), field, count)
        for provider, seconds in sums.items():
            pipe.hincrbyfloat(_key(provider), "sum", seconds)
        pipe.execute()
    except redis.RedisError as exc:
        log.warning("send latencies not recorded yet: %s", type(exc).__name__)
        with _lock:
            _counts.update(counts)
            for provider, seconds in sums.items():
                _sums[provider] += seconds


@dataclass(frozen=True, slots=True)
class Latency:
    """One provider's histogram: cumulative (upper bound, count) pairs, ``+Inf`` last
    (its count is every send's), and the seconds of them all."""

    buckets: list[tuple[str, int]]
    sum: float


def read(providers: Sequence[str]) -> dict[str, Latency]:
    """Each provider's histogram, in one round trip (zeros for one never timed)."""
    pipe = redis_client().pipeline(transaction=False)
    for provider in providers:
        pipe.hgetall(_key(provider))
    found: dict[str, Latency] = {}
    for provider, fields in zip(providers, pipe.execute(), strict=True):
        counts = {key.decode(): value for key, value in fields.items()}
        total, buckets = 0, []
        for field in _FIELDS:
            total += int(counts.get(field, 0))
            buckets.append((field, total))
        found[provider] = Latency(buckets, float(counts.get("sum", 0.0)))
    return found
