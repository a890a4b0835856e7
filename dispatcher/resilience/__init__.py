"""Provider resilience shared by every worker process through Redis.

A circuit breaker per provider, token-bucket rate limits and one-call-per-number line
leases. Each takes an explicit ``redis.Redis`` client; the read-modify-write steps are Lua
scripts, so they stay atomic across processes and hosts.
"""

from dispatcher.resilience.breaker import BreakerState, BreakerStatus, CircuitBreaker
from dispatcher.resilience.lines import LineChange, LineLeases
from dispatcher.resilience.ratelimit import TokenBucket

__all__ = [
    "BreakerState",
    "BreakerStatus",
    "CircuitBreaker",
    "LineChange",
    "LineLeases",
    "TokenBucket",
]
