"""One clock for every host: the Redis server's.

Hosts' clocks drift apart; a breaker opened by one host and read by another, or a rate
limit refilled by both, must not depend on which host asks. The scripts therefore read
``TIME`` on the server, unless a test injects its own clock (then its reading is passed
as the script argument, and an empty argument means "the server's").
"""

from __future__ import annotations

from collections.abc import Callable

import redis

__all__ = ["CLOCK_LUA", "Clock", "clock_arg", "read_clock"]

#: An injectable clock: seconds since the epoch. None: the Redis server's.
Clock = Callable[[], float] | None

#: Lua: ``clock(arg)`` is the injected time in ``arg``, or the server's when it is empty.
CLOCK_LUA = """
local function clock(given)
  if given ~= '' then return tonumber(given) end
  local now = redis.call('TIME')
  return tonumber(now[1]) + tonumber(now[2]) / 1000000
end
"""


def clock_arg(clock: Clock) -> str:
    """The script argument for ``clock``: its reading, or empty for the server's."""
    return "" if clock is None else repr(clock())


def read_clock(client: redis.Redis, clock: Clock) -> float:
    """Now, by ``clock`` or by the server."""
    if clock is not None:
        return clock()
    seconds, micros = client.time()
    return float(seconds) + micros / 1_000_000
