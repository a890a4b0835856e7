"""The Redis resilience primitives against a real embedded valkey (db 15), clocks driven."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from multiprocessing import get_context

import pytest
import redis

from dispatcher.processes import wait_for
from dispatcher.resilience import (
    BreakerState,
    CircuitBreaker,
    LineChange,
    LineLeases,
    TokenBucket,
)

DB = 15


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.value = start

    def __call__(self) -> float:
        return self.value

    def advance(self, seconds: float) -> None:
        self.value += seconds


@pytest.fixture
def db_url(broker_url: str) -> str:
    return f"{broker_url.rsplit('/', 1)[0]}/{DB}"


@pytest.fixture
def client(db_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(db_url)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def _concurrent_allows(breaker: CircuitBreaker, callers: int) -> int:
    """How many of ``callers`` threads, released together, were let through."""
    barrier = threading.Barrier(callers)

    def call() -> bool:
        barrier.wait()
        return breaker.allow()

    with ThreadPoolExecutor(callers) as pool:
        return sum(pool.map(lambda _: call(), range(callers)))


def _allows_in_process(url: str, at: float, callers: int) -> int:
    """Runs in a child process: its own client and breaker, the same Redis hash."""
    client = redis.Redis.from_url(url)
    breaker = CircuitBreaker(client, "faxplus", threshold=3, cooldown=60, now=lambda: at)
    return _concurrent_allows(breaker, callers)


# Circuit breaker --------------------------------------------------------------------------


def test_breaker_opens_at_the_threshold_and_stays_open(client: redis.Redis, clock: FakeClock):
    breaker = CircuitBreaker(client, "faxplus", threshold=3, cooldown=60, now=clock)
    for _ in range(2):
        breaker.record_failure()
    assert breaker.allow()
    assert breaker.status().state is BreakerState.CLOSED

    breaker.record_failure()
    status = breaker.status()
    assert (status.state, status.failures, status.opened_at) == (BreakerState.OPEN, 3, clock())
    assert status.retry_in == 60
    clock.advance(59.9)
    assert not breaker.allow()
    assert breaker.status().retry_in == pytest.approx(0.1)


def test_failures_must_be_consecutive(client: redis.Redis, clock: FakeClock):
    breaker = CircuitBreaker(client, "interfax", threshold=3, now=clock)
    for _ in range(2):
        breaker.record_failure()
    breaker.record_success()
    assert breaker.status().failures == 0
    for _ in range(2):
        breaker.record_failure()
    assert breaker.status().state is BreakerState.CLOSED


def test_exactly_one_thread_gets_the_half_open_probe(client: redis.Redis, clock: FakeClock):
    breaker = CircuitBreaker(client, "faxplus", threshold=3, cooldown=60, now=clock)
    for _ in range(3):
        breaker.record_failure()
    clock.advance(60)
    assert _concurrent_allows(breaker, 32) == 1
    status = breaker.status()
    assert (status.state, status.retry_in) == (BreakerState.HALF_OPEN, 60)


def test_exactly_one_process_gets_the_half_open_probe(
    client: redis.Redis, clock: FakeClock, db_url: str
):
    breaker = CircuitBreaker(client, "faxplus", threshold=3, cooldown=60, now=clock)
    for _ in range(3):
        breaker.record_failure()
    clock.advance(60)
    with ProcessPoolExecutor(2, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(_allows_in_process, db_url, clock(), 8) for _ in range(2)]
        assert sum(f.result() for f in futures) == 1


def test_probe_success_closes_the_breaker(client: redis.Redis, clock: FakeClock):
    breaker = CircuitBreaker(client, "optum", threshold=1, cooldown=10, now=clock)
    breaker.record_failure()
    clock.advance(10)
    assert breaker.allow()
    breaker.record_success()
    status = breaker.status()
    assert (status.state, status.failures, status.opened_at, status.retry_in) == (
        BreakerState.CLOSED,
        0,
        None,
        0,
    )
    assert breaker.allow()


def test_probe_failure_reopens_with_a_fresh_cooldown(client: redis.Redis, clock: FakeClock):
    breaker = CircuitBreaker(client, "optum", threshold=1, cooldown=10, now=clock)
    breaker.record_failure()
    clock.advance(15)
    assert breaker.allow()
    breaker.record_failure()
    status = breaker.status()
    assert (status.state, status.opened_at, status.retry_in) == (BreakerState.OPEN, clock(), 10)
    clock.advance(9)
    assert not breaker.allow()
    clock.advance(1)
    assert breaker.allow()


def test_a_lost_probe_frees_the_next_one_after_the_cooldown(client: redis.Redis, clock: FakeClock):
    breaker = CircuitBreaker(client, "optum", threshold=1, cooldown=10, now=clock)
    breaker.record_failure()
    clock.advance(10)
    assert breaker.allow()  # this probe's worker dies: no success, no failure
    clock.advance(9)
    assert not breaker.allow()
    clock.advance(1)
    assert breaker.allow()


def test_breakers_are_per_provider_and_reset_forgets(client: redis.Redis, clock: FakeClock):
    faxplus = CircuitBreaker(client, "faxplus", threshold=1, now=clock)
    interfax = CircuitBreaker(client, "interfax", threshold=1, now=clock)
    faxplus.record_failure()
    assert (faxplus.allow(), interfax.allow()) == (False, True)
    faxplus.reset()
    assert faxplus.allow()


# Token bucket -----------------------------------------------------------------------------


def test_bucket_allows_the_burst_then_the_rate(client: redis.Redis, clock: FakeClock):
    bucket = TokenBucket(client, "fax:rate:faxplus", rate=2, burst=5, now=clock)
    assert [bucket.acquire() for _ in range(5)] == [0.0] * 5
    assert bucket.acquire() == pytest.approx(0.5)

    granted = 0
    for _ in range(80):  # 10 s in 1/8 s steps (exact in binary) at 2/s: 20 more tokens
        clock.advance(0.125)
        while bucket.acquire() == 0.0:
            granted += 1
    assert granted == 20


def test_bucket_refills_no_further_than_the_burst(client: redis.Redis, clock: FakeClock):
    bucket = TokenBucket(client, "fax:rate:optum", rate=10, burst=3, now=clock)
    clock.advance(3600)
    assert sum(bucket.acquire() == 0.0 for _ in range(10)) == 3


def test_two_clients_share_one_bucket(client: redis.Redis, clock: FakeClock, db_url: str):
    other_client = redis.Redis.from_url(db_url)
    first = TokenBucket(client, "fax:rate:interfax", rate=1, burst=4, now=clock)
    second = TokenBucket(other_client, "fax:rate:interfax", rate=1, burst=4, now=clock)
    assert [first.acquire(), second.acquire(), first.acquire(2)] == [0.0, 0.0, 0.0]
    assert second.acquire() == pytest.approx(1.0)
    other_client.close()


def test_a_refused_acquire_takes_nothing(client: redis.Redis, clock: FakeClock):
    bucket = TokenBucket(client, "fax:rate:faxplus", rate=1, burst=4, now=clock)
    assert bucket.acquire(3) == 0.0
    assert bucket.acquire(3) == pytest.approx(2.0)
    assert bucket.acquire(3) == pytest.approx(2.0)  # still 1 token: the refusal took none
    assert bucket.acquire(1) == 0.0
    with pytest.raises(ValueError):
        bucket.acquire(5)


# Line leases ------------------------------------------------------------------------------


def test_a_held_line_refuses_a_second_job(client: redis.Redis):
    lines = LineLeases(client, ttl=30)
    assert lines.acquire("+12025550100", "job-a")
    assert not lines.acquire("+12025550100", "job-b")
    assert lines.acquire("+12025550100", "job-a")  # re-entrant for the holder
    assert lines.holder("+12025550100") == "job-a"
    assert lines.acquire("+12025550101", "job-b")  # other numbers are other lines


def test_only_the_holder_refreshes_or_releases(client: redis.Redis):
    lines = LineLeases(client, ttl=30)
    lines.acquire("+12025550100", "job-a")
    number = "+12025550100"
    by_b = [LineChange(number, "job-b", keep=True), LineChange(number, "job-b", keep=False)]
    assert lines.change(by_b) == [False, False]
    by_a = [LineChange(number, "job-a", keep=True), LineChange(number, "job-a", keep=False)]
    assert lines.change(by_a) == [True, True]
    assert lines.holder(number) is None
    assert lines.change([LineChange(number, "job-a", keep=True)]) == [False]
    assert lines.acquire(number, "job-b")


def test_an_expired_lease_frees_the_line(client: redis.Redis):
    lines = LineLeases(client, ttl=0.2)
    assert lines.acquire("+12025550100", "job-a")
    assert not lines.acquire("+12025550100", "job-b")
    wait_for(lambda: lines.acquire("+12025550100", "job-b"), 3, what="the lease expiring")
    assert lines.holder("+12025550100") == "job-b"


def test_refresh_keeps_a_long_call_leased(client: redis.Redis):
    lines = LineLeases(client, ttl=0.3)
    lines.acquire("+12025550100", "job-a")
    started = time.monotonic()
    while time.monotonic() - started < 0.6:  # twice the ttl, refreshed along the way
        assert lines.change([LineChange("+12025550100", "job-a", keep=True)]) == [True]
        time.sleep(0.05)
    assert lines.holder("+12025550100") == "job-a"


def test_block_keeps_the_later_expiry(client: redis.Redis):
    lines = LineLeases(client, ttl=30)
    assert lines.blocked_for("+12025550100") == 0.0
    lines.block("+12025550100", 180)
    lines.block("+12025550100", 60)
    assert 179 < lines.blocked_for("+12025550100") <= 180
    lines.block("+12025550100", 300)
    assert 299 < lines.blocked_for("+12025550100") <= 300
    lines.block("+12025550101", 0.1)
    wait_for(lambda: lines.blocked_for("+12025550101") == 0.0, 3, what="the block ending")


def test_a_blocked_number_is_not_taken_and_says_for_how_long(client: redis.Redis):
    lines = LineLeases(client, ttl=30)
    assert lines.acquire("+12025550100", "job-a")
    lines.block("+12025550100", 120)
    for job in ("job-a", "job-b"):  # not even the holder dials into a busy block
        line = lines.acquire("+12025550100", job)
        assert not line and 119 < line.blocked <= 120
    held = lines.acquire("+12025550101", "job-c")
    assert held and held.blocked == 0.0
    other = lines.acquire("+12025550101", "job-d")
    assert not other and other.blocked == 0.0  # held, not blocked
    lines.block("+12025550102", 0.1)
    wait_for(lambda: bool(lines.acquire("+12025550102", "job-e")), 3, what="the line free again")


def test_without_a_clock_of_their_own_breakers_and_buckets_keep_the_servers_time(
    client: redis.Redis,
) -> None:
    # Given a breaker and a bucket as the workers build them: no clock injected
    breaker = CircuitBreaker(client, "faxplus", threshold=1, cooldown=60)
    bucket = TokenBucket(client, "fax:rate:test", rate=1.0, burst=1.0)

    # When the breaker opens and the bucket is used
    breaker.record_failure()
    bucket.acquire()

    # Then the times they keep are the Redis server's, the clock every host shares
    seconds, micros = client.time()
    server_now = seconds + micros / 1e6
    opened_at = float(client.hget(breaker.key, "opened_at") or 0)
    refilled_at = float(client.hget(bucket.key, "at") or 0)
    assert abs(opened_at - server_now) < 1 and abs(refilled_at - server_now) < 1
    assert 59 < breaker.status().retry_in <= 60
    assert not breaker.allow()
