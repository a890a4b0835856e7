"""What may hold a send back, checked before a job is claimed, in one place.

A job that may not go now is not made to wait in a worker: ``check_send`` returns how
long to wait (or the provider to fail over to), and the caller puts that time in the
database (or on a short countdown). State shared by every worker lives in Redis (the
broker's server): circuit breakers, rate-limit buckets and destination-line leases.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from functools import cache

import redis
from redis.commands.core import Script

from config.settings import get_settings
from dispatcher.clock import utcnow
from dispatcher.errors import ProviderError, ProviderTransientError
from dispatcher.resilience import CircuitBreaker, LineLeases, TokenBucket
from dispatcher.resilience.breaker import ALLOWS_LUA
from dispatcher.resilience.lines import TAKES_LUA, Line
from dispatcher.routing import current_routing as routing

__all__ = [
    "Hold",
    "breaker",
    "check_send",
    "keep_line",
    "record_provider_call",
    "redis_client",
    "release_line",
    "share_busy",
    "status_read_wait",
]

log = logging.getLogger(__name__)


@cache
def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)


def redis_client() -> redis.Redis:
    from workers.broker import broker_url

    return _client(broker_url())


# The guard objects are built once per client and configuration: every provider call
# asks for one, and building registers their scripts again.
@cache
def _breaker(client: redis.Redis, provider: str, threshold: int, cooldown: float) -> CircuitBreaker:
    return CircuitBreaker(client, provider, threshold=threshold, cooldown=cooldown)


@cache
def _leases(client: redis.Redis, ttl: float) -> LineLeases:
    return LineLeases(client, ttl=ttl)


@cache
def _script(client: redis.Redis, source: str) -> Script:
    return client.register_script(source)


def breaker(provider: str) -> CircuitBreaker:
    config = routing()
    cooldown = get_settings().scaled(config.breaker_cooldown)
    return _breaker(redis_client(), provider, config.breaker_threshold, cooldown)


#: A line lease never lasts less than this many real seconds, even at a small time
#: scale: it must outlive a pause in polling (a database outage), or a second call
#: could start while the first fax is still on the line.
MIN_LINE_LEASE = 60.0


def _lines() -> LineLeases:
    ttl = max(get_settings().scaled(routing().line_lease), MIN_LINE_LEASE)
    return _leases(redis_client(), ttl)


@cache
def _token_bucket(client: redis.Redis, key: str, rate: float) -> TokenBucket:
    return TokenBucket(client, key, rate=rate, burst=max(1.0, rate))


def _bucket(provider: str, kind: str, per_second: float | None) -> TokenBucket | None:
    if not per_second:
        return None
    rate = per_second / get_settings().time_scale
    return _token_bucket(redis_client(), f"fax:rate:{provider}:{kind}", rate)


# KEYS breaker hash, line lease, line block marker; ARGV now, cooldown, job id, ttl ms.
# The breaker's and the line's own rules, in one round trip: the line is only taken when
# the breaker lets the call through. Returns {allowed, line answer}.
_BREAKER_THEN_LINE = (
    ALLOWS_LUA
    + TAKES_LUA
    + """
if breaker_allows(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2])) == 0 then return {0, 0} end
return {1, take_line(KEYS[2], KEYS[3], ARGV[3], ARGV[4])}
"""
)


def _breaker_then_line(
    circuit: CircuitBreaker, lines: LineLeases, number: str, job_id: str
) -> tuple[bool, Line]:
    script = _script(redis_client(), _BREAKER_THEN_LINE)
    keys = [circuit.key, *lines.take_keys(number)]
    allowed, answer = script(keys=keys, args=[*circuit.allow_args(), *lines.take_args(job_id)])
    return bool(allowed), Line.from_answer(int(answer))


@dataclass(frozen=True, slots=True)
class Hold:
    """Why a send may not go now, and until when (or to which provider instead)."""

    reason: str
    until: datetime | None = None
    wait: float = 0.0
    failover: bool = False


def check_send(job_id: str, number: str, provider: str, can_fail_over: bool) -> Hold | None:
    """None if the job may be sent now (and then it holds its destination line)."""
    config = routing()
    opens = config.opens_at(number, utcnow())
    if opens is not None:
        return Hold(f"outside the sending window for {number}", until=opens)
    circuit, lines = breaker(provider), _lines()
    allowed, line = _breaker_then_line(circuit, lines, number, job_id)
    if not allowed:
        status = circuit.status()
        reason = f"{provider} circuit is open after {status.failures} failures"
        return Hold(reason, wait=status.retry_in, failover=can_fail_over)
    if line.blocked:
        return Hold(f"{number} was busy moments ago; waiting for the line", wait=line.blocked)
    if not line:
        line_wait = get_settings().scaled(config.line_wait)
        return Hold(f"{number} is on a call with another fax", wait=line_wait)
    limits = config.limits.get(provider)
    bucket = _bucket(provider, "send", limits.sends_per_second if limits else None)
    wait = bucket.acquire() if bucket else 0.0
    if wait > 0:
        lines.release(number, job_id)
        return Hold(f"{provider} send rate limit", wait=wait)
    return None


def status_read_wait(provider: str) -> float:
    """Seconds before a status read of this provider may go (0 = now)."""
    limits = routing().limits.get(provider)
    per_minute = limits.status_reads_per_minute if limits else None
    bucket = _bucket(provider, "status", per_minute / 60 if per_minute else None)
    return bucket.acquire() if bucket else 0.0


def keep_line(number: str, job_id: str) -> None:
    """Extend a fax's hold on its line while the provider reports it in progress."""
    try:
        _lines().refresh(number, job_id)
    except redis.RedisError as exc:
        log.warning("could not refresh the line of %s: %s", number, exc)


def release_line(number: str, job_id: str) -> None:
    try:
        _lines().release(number, job_id)
    except redis.RedisError as exc:  # the lease expires by itself
        log.warning("could not release the line of %s: %s", number, exc)


def share_busy(number: str, seconds: float) -> None:
    """A busy line delays every job queued for it (HylaFAX ShareCallFailures)."""
    if routing().share_busy and seconds > 0:
        _lines().block(number, seconds)


def record_provider_call(provider: str, call: str, error: ProviderError | None) -> None:
    """Adapter hook: transport failures and 5xx count against the provider's breaker;
    any answer from the provider (even a refusal) shows it is up."""
    circuit = breaker(provider)
    if isinstance(error, ProviderTransientError):
        circuit.record_failure()
    else:
        circuit.record_success()
