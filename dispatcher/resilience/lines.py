"""Line leases: one destination number is never dialled by two attempts at once.

Like HylaFAX's MaxConcurrentCalls=1 per number, a job holds a lease on the number for the
length of its call; like ShareCallFailures, a busy result blocks the number for every job.
Leases expire (``ttl``) so a worker that dies mid-call frees the line. Expiry uses Redis
server time, the one clock every worker shares.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import redis

from dispatcher.privacy import number_key

__all__ = ["TAKES_LUA", "Line", "LineChange", "LineLeases"]

#: Lua: take the line for a job. 1 when taken (or already the job's: its TTL is renewed),
#: 0 when another job holds it, minus the milliseconds left while the number is blocked.
#: A function, so a combined check (``guards``) can call it too.
TAKES_LUA = """
local function take_line(lease, blocked, job, ttl)
  local left = redis.call('PTTL', blocked)
  if left > 0 then return -left end
  if redis.call('GET', lease) == job then
    redis.call('PEXPIRE', lease, ttl)
    return 1
  end
  if redis.call('SET', lease, job, 'NX', 'PX', ttl) then return 1 end
  return 0
end
"""

# KEYS[1] lease, KEYS[2] block marker; ARGV job id, ttl ms.
_ACQUIRE = TAKES_LUA + "return take_line(KEYS[1], KEYS[2], ARGV[1], ARGV[2])"

# KEYS[1] lease; ARGV job id, ttl ms.
_REFRESH = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
return redis.call('PEXPIRE', KEYS[1], ARGV[2])
"""

# KEYS[1] lease; ARGV job id.
_RELEASE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
return redis.call('DEL', KEYS[1])
"""

# KEYS[1] block marker; ARGV ms. Only ever lengthens the block.
_BLOCK = """
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
end
"""


class Line(NamedTuple):
    """What ``acquire`` found: true when the line is the job's; else it is held by
    another job, or blocked for ``blocked`` more seconds after a busy signal."""

    taken: bool
    blocked: float = 0.0

    def __bool__(self) -> bool:
        return self.taken

    @classmethod
    def from_answer(cls, answer: int) -> Line:
        """Read what ``TAKES_LUA`` returned."""
        return cls(answer == 1, -answer / 1000 if answer < 0 else 0.0)


class LineChange(NamedTuple):
    """What a job's state asks of its line: kept while the provider has its fax on the
    line (the lease is extended), else given back."""

    number: str
    job_id: str
    keep: bool


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


class LineLeases:
    """Per-number leases held by job id, and per-number busy blocks."""

    def __init__(self, client: redis.Redis, *, ttl: float, prefix: str = "fax:line") -> None:
        if ttl <= 0:
            raise ValueError("ttl must be > 0")
        self.client = client
        self.ttl = ttl
        self.prefix = prefix
        self._acquire = client.register_script(_ACQUIRE)
        self._refresh = client.register_script(_REFRESH)
        self._release = client.register_script(_RELEASE)
        self._block = client.register_script(_BLOCK)

    def _lease(self, number: str) -> str:
        return f"{self.prefix}:{number_key(number)}"

    def _blocked(self, number: str) -> str:
        return f"{self.prefix}:{number_key(number)}:blocked"

    def take_keys(self, number: str) -> list[str]:
        """KEYS of ``TAKES_LUA`` for a number: its lease, its block marker."""
        return [self._lease(number), self._blocked(number)]

    def take_args(self, job_id: str) -> list[str | int]:
        """ARGV of ``TAKES_LUA`` for a job: its id, the lease TTL in ms."""
        return [job_id, _ms(self.ttl)]

    def acquire(self, number: str, job_id: str) -> Line:
        """Take the line unless the number is blocked or another job holds it; taken also
        when ``job_id`` already holds it (its TTL is renewed). One round trip."""
        answer = self._acquire(keys=self.take_keys(number), args=self.take_args(job_id))
        return Line.from_answer(int(answer))

    def change(self, changes: Sequence[LineChange]) -> list[bool]:
        """Keep or give back many lines in one round trip; for each, False when its job no
        longer held it (a late release frees no one else's line)."""
        pipe = self.client.pipeline(transaction=False)
        for change in changes:
            keys = [self._lease(change.number)]
            if change.keep:
                self._refresh(keys=keys, args=[change.job_id, _ms(self.ttl)], client=pipe)
            else:
                self._release(keys=keys, args=[change.job_id], client=pipe)
        return [bool(answer) for answer in pipe.execute()]

    def holder(self, number: str) -> str | None:
        value = self.client.get(self._lease(number))
        return value.decode() if isinstance(value, bytes) else value

    def block(self, number: str, seconds: float) -> None:
        """After a busy line, hold every job to this number back; never shortens a block."""
        self._block(keys=[self._blocked(number)], args=[_ms(seconds)])

    def blocked_for(self, number: str) -> float:
        """Seconds the number stays blocked (0.0 if it is not)."""
        ms = self.client.pttl(self._blocked(number))
        return ms / 1000 if ms > 0 else 0.0
