"""A per-provider circuit breaker whose state lives in Redis, shared by all workers.

One hash per provider holds ``state``, ``failures`` (consecutive), ``opened_at`` and, while a
half-open probe is out, ``probe_until``. All times come from the Redis server's clock, the
one every host shares (``dispatcher.resilience.clock``); tests inject their own ``now``.
The probe claim expires after ``cooldown``: a probe whose worker died does not block forever.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import redis

from dispatcher.resilience.clock import CLOCK_LUA, Clock, clock_arg, read_clock

__all__ = ["ALLOWS_LUA", "BreakerState", "BreakerStatus", "CircuitBreaker"]


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True)
class BreakerStatus:
    """A snapshot; ``retry_in`` is the seconds until a probe may go (0 when closed)."""

    provider: str
    state: BreakerState
    failures: int
    opened_at: float | None
    retry_in: float


#: Lua: 1 when this caller may call the provider (closed, or the one half-open probe after
#: the cooldown), else 0. A function, so a combined check (``guards``) can call it too.
ALLOWS_LUA = (
    CLOCK_LUA
    + """
local function breaker_allows(key, now, cooldown)
  local state = redis.call('HGET', key, 'state')
  if not state or state == 'closed' then return 1 end
  if now < tonumber(redis.call('HGET', key, 'opened_at')) + cooldown then return 0 end
  local probe_until = tonumber(redis.call('HGET', key, 'probe_until'))
  if probe_until and now < probe_until then return 0 end
  redis.call('HSET', key, 'state', 'half_open',
             'probe_until', string.format('%.17g', now + cooldown))
  return 1
end
"""
)

# KEYS[1] breaker hash; ARGV now, cooldown.
_ALLOW = ALLOWS_LUA + "return breaker_allows(KEYS[1], clock(ARGV[1]), tonumber(ARGV[2]))"

# KEYS[1] breaker hash; ARGV now, threshold.
_FAILURE = (
    CLOCK_LUA
    + """
local failures = redis.call('HINCRBY', KEYS[1], 'failures', 1)
local state = redis.call('HGET', KEYS[1], 'state')
if state == 'half_open' or (state ~= 'open' and failures >= tonumber(ARGV[2])) then
  redis.call('HSET', KEYS[1], 'state', 'open', 'opened_at', string.format('%.17g', clock(ARGV[1])))
  redis.call('HDEL', KEYS[1], 'probe_until')
end
"""
)


class CircuitBreaker:
    """Stops calls to a failing provider, then lets exactly one probe through per cooldown.

    Usage: ``if breaker.allow(): send(); breaker.record_success()`` (or ``record_failure``).
    """

    def __init__(
        self,
        client: redis.Redis,
        provider: str,
        *,
        threshold: int = 5,
        cooldown: float = 60.0,
        now: Clock = None,
        prefix: str = "fax:breaker",
    ) -> None:
        if threshold < 1 or cooldown <= 0:
            raise ValueError("threshold must be >= 1 and cooldown > 0")
        self.client = client
        self.provider = provider
        self.threshold = threshold
        self.cooldown = cooldown
        self.now = now
        self.key = f"{prefix}:{provider}"
        self._allow = client.register_script(_ALLOW)
        self._failure = client.register_script(_FAILURE)

    def allow(self) -> bool:
        """True when closed; when open, True for the one half-open probe after the cooldown."""
        return bool(self._allow(keys=[self.key], args=self.allow_args()))

    def allow_args(self) -> list[str]:
        """ARGV of ``ALLOWS_LUA`` for this breaker: now, cooldown."""
        return [clock_arg(self.now), repr(self.cooldown)]

    def record_success(self) -> None:
        """Any success closes the breaker and forgets the failures."""
        self.client.delete(self.key)  # no hash reads as closed with no failures

    def record_failure(self) -> None:
        """Count a consecutive failure; open at the threshold, or re-open a failed probe."""
        self._failure(keys=[self.key], args=[clock_arg(self.now), self.threshold])

    def status(self) -> BreakerStatus:
        """A snapshot for operators and for scheduling the next try (``retry_in``)."""
        raw = {_text(k): _text(v) for k, v in self.client.hgetall(self.key).items()}
        state = BreakerState(raw.get("state", BreakerState.CLOSED))
        opened_at = float(raw["opened_at"]) if "opened_at" in raw else None
        retry_in = 0.0
        if state is not BreakerState.CLOSED and opened_at is not None:
            until = max(opened_at + self.cooldown, float(raw.get("probe_until", 0)))
            retry_in = max(0.0, until - read_clock(self.client, self.now))
        return BreakerStatus(
            provider=self.provider,
            state=state,
            failures=int(raw.get("failures", 0)),
            opened_at=opened_at,
            retry_in=retry_in,
        )

    def reset(self) -> None:
        """Forget everything about this provider (operator action)."""
        self.client.delete(self.key)


def _text(value: bytes | str) -> str:
    """Works whether or not the client was made with ``decode_responses``."""
    return value.decode() if isinstance(value, bytes) else value
