"""What may hold a send back, checked before a job is claimed, in one place.

A job that may not go now is not made to wait in a worker: ``check_sends`` returns how
long to wait (or the provider to fail over to), and the caller puts that time in the
database (or on a short countdown). State shared by every worker lives in Redis (the
broker's server): circuit breakers, rate-limit buckets and destination-line leases.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import NamedTuple

import redis
from redis.commands.core import Script

from config.settings import get_settings
from dispatcher.broker import redis_client
from dispatcher.clock import utcnow
from dispatcher.errors import ProviderError, ProviderTransientError
from dispatcher.privacy import mask_number
from dispatcher.resilience import CircuitBreaker, LineChange, LineLeases, TokenBucket
from dispatcher.resilience.breaker import ALLOWS_LUA
from dispatcher.resilience.lines import TAKES_LUA, Line
from dispatcher.routing import current_routing as routing

__all__ = [
    "Hold",
    "LineChange",
    "Send",
    "breaker",
    "check_sends",
    "change_lines",
    "record_provider_call",
    "share_busy",
    "status_read_wait",
]

log = logging.getLogger(__name__)


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


# For each send, KEYS its breaker hash, line lease, line block marker and ARGV now,
# cooldown, job id, lease ttl ms. The breaker's and the line's own rules, for a whole
# batch in one round trip: a line is only taken when the breaker lets the call through.
# Returns, per send, {allowed, line answer}.
_BREAKER_THEN_LINE = (
    ALLOWS_LUA
    + TAKES_LUA
    + """
local answers = {}
for i = 0, #KEYS / 3 - 1 do
  local k, a = 3 * i, 4 * i
  local allowed = breaker_allows(KEYS[k + 1], clock(ARGV[a + 1]), tonumber(ARGV[a + 2]))
  answers[2 * i + 1] = allowed
  answers[2 * i + 2] = 0
  if allowed == 1 then
    answers[2 * i + 2] = take_line(KEYS[k + 2], KEYS[k + 3], ARGV[a + 3], ARGV[a + 4])
  end
end
return answers
"""
)


class Send(NamedTuple):
    """A send about to be claimed: which job, to which number, through which provider."""

    job_id: str
    to: str
    provider: str
    can_fail_over: bool


@dataclass(frozen=True, slots=True)
class Hold:
    """Why a send may not go now, and until when (or to which provider instead)."""

    reason: str
    until: datetime | None = None
    wait: float = 0.0
    failover: bool = False


def check_sends(sends: Sequence[Send]) -> list[Hold | None]:
    """For each send, None if it may go now (and then its job holds the destination
    line), else the hold. The batch's breakers and lines take one Redis round trip; a
    held send's breaker status and a rate-limited provider's bucket take their own."""
    config = routing()
    now = utcnow()
    holds: list[Hold | None] = [None] * len(sends)
    asked: list[int] = []
    for index, send in enumerate(sends):
        opens = config.opens_at(send.to, now)
        if opens is None:
            asked.append(index)
        else:
            holds[index] = Hold(
                f"outside the sending window for {mask_number(send.to)}", until=opens
            )
    if not asked:
        return holds
    lines = _lines()
    circuits = {provider: breaker(provider) for provider in {send.provider for send in sends}}
    keys: list[str] = []
    args: list[str | int] = []
    for index in asked:
        send = sends[index]
        circuit = circuits[send.provider]
        keys += [circuit.key, *lines.take_keys(send.to)]
        args += [*circuit.allow_args(), *lines.take_args(send.job_id)]
    answers = _script(redis_client(), _BREAKER_THEN_LINE)(keys=keys, args=args)
    for position, index in enumerate(asked):
        allowed, line = answers[2 * position], Line.from_answer(int(answers[2 * position + 1]))
        holds[index] = _hold_for(sends[index], bool(allowed), line, circuits, lines)
    return holds


def _hold_for(
    send: Send,
    allowed: bool,
    line: Line,
    circuits: dict[str, CircuitBreaker],
    lines: LineLeases,
) -> Hold | None:
    """The hold for one send, from what the batch script answered for it."""
    if not allowed:
        status = circuits[send.provider].status()
        reason = f"{send.provider} circuit is open after {status.failures} failures"
        return Hold(reason, wait=status.retry_in, failover=send.can_fail_over)
    if line.blocked:
        busy = f"{mask_number(send.to)} was busy moments ago; waiting for the line"
        return Hold(busy, wait=line.blocked)
    if not line:
        line_wait = get_settings().scaled(routing().line_wait)
        return Hold(f"{mask_number(send.to)} is on a call with another fax", wait=line_wait)
    limits = routing().limits.get(send.provider)
    bucket = _bucket(send.provider, "send", limits.sends_per_second if limits else None)
    wait = bucket.acquire() if bucket else 0.0
    if wait > 0:
        # The line stays the job's until it comes back (its own lease is renewed then):
        # another delivery of the same job may hold the same lease and be about to dial.
        return Hold(f"{send.provider} send rate limit", wait=wait)
    return None


def status_read_wait(provider: str) -> float:
    """Seconds before a status read of this provider may go (0 = now)."""
    limits = routing().limits.get(provider)
    per_minute = limits.status_reads_per_minute if limits else None
    bucket = _bucket(provider, "status", per_minute / 60 if per_minute else None)
    return bucket.acquire() if bucket else 0.0


def change_lines(changes: Sequence[LineChange]) -> None:
    """Keep the lines of faxes still on them, give back the others: one round trip."""
    if not changes:
        return
    try:
        _lines().change(changes)
    except redis.RedisError as exc:  # a lease expires by itself
        log.warning("could not update %d line leases: %s", len(changes), exc)


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
