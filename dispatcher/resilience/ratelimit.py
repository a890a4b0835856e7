"""A token bucket in Redis: one shared rate limit per key across every worker process."""

from __future__ import annotations

import math

import redis

from dispatcher.resilience.clock import CLOCK_LUA, Clock, clock_arg

__all__ = ["TokenBucket"]

# KEYS[1] bucket hash; ARGV rate, burst, now, tokens wanted, ttl ms. Returns the wait as text
# (Lua numbers would be truncated to integers on the way back).
_ACQUIRE = (
    CLOCK_LUA
    + """
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local now, want = clock(ARGV[3]), tonumber(ARGV[4])
local saved = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(saved[1]) or burst
local at = tonumber(saved[2]) or now
if now > at then
  tokens = math.min(burst, tokens + (now - at) * rate)
  at = now
end
local wait = 0
if tokens >= want then tokens = tokens - want else wait = (want - tokens) / rate end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens),
           'at', string.format('%.17g', at))
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return string.format('%.17g', wait)
"""
)


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up; all clients of a key share it.

    Time is the Redis server's (tests inject ``now``), and the refill time only moves
    forward, so no two hosts refill the same interval twice. An idle bucket expires once it
    would be full anyway.
    """

    def __init__(
        self,
        client: redis.Redis,
        key: str,
        *,
        rate: float,
        burst: float,
        now: Clock = None,
    ) -> None:
        if rate <= 0 or burst <= 0:
            raise ValueError("rate and burst must be > 0")
        self.key = key
        self.rate = rate
        self.burst = burst
        self.now = now
        self._ttl_ms = math.ceil(burst / rate * 1000) + 1000
        self._acquire = client.register_script(_ACQUIRE)

    def acquire(self, tokens: float = 1.0) -> float:
        """Take ``tokens`` and return 0.0, or take nothing and return the seconds to wait."""
        if not 0 < tokens <= self.burst:
            raise ValueError(f"tokens must be in (0, burst={self.burst}]")
        args: list[str | int] = [
            repr(self.rate),
            repr(self.burst),
            clock_arg(self.now),
            repr(tokens),
            self._ttl_ms,
        ]
        return float(self._acquire(keys=[self.key], args=args))
