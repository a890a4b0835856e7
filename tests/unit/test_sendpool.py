"""The send pool's slot accounting: a batch never claims more jobs than can start
sending at once, and no failure keeps a slot reserved."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import replace

import pytest
from sqlalchemy import select

from dispatcher import sending
from dispatcher.context import Context
from dispatcher.guards import Hold, Send
from dispatcher.lifecycle import JobState
from dispatcher.providers.twin import TwinAdapter
from dispatcher.sendpool import SendPool
from dispatcher.store.models import Job
from tests.fixtures.twin import MemoryGuards, submit_job


def test_a_reservation_gets_at_most_the_free_slots() -> None:
    pool = SendPool(4)
    assert pool.reserve(3) == 3
    assert pool.reserve(3) == 1
    assert pool.reserve(3) == 0
    pool.release(2)
    assert (pool.free, pool.reserve(5)) == (2, 2)


def test_a_slot_is_free_again_when_its_send_returns_or_raises() -> None:
    pool = SendPool(2)
    assert pool.reserve(2) == 2
    ok = pool.submit(lambda item: item * 2, 21)
    failed = pool.submit(lambda item: 1 // item, 0)
    assert ok.result(timeout=10) == 42
    with pytest.raises(ZeroDivisionError):
        failed.result(timeout=10)
    assert pool.free == 2


def test_a_waiting_reservation_wakes_when_a_send_finishes() -> None:
    pool = SendPool(1)
    assert pool.reserve(1) == 1
    release = threading.Event()
    pool.submit(lambda _: release.wait(10), None)
    got: list[int] = []
    waiter = threading.Thread(target=lambda: got.append(pool.reserve(5, wait=10)))
    waiter.start()
    assert got == []  # still waiting: the only slot is sending
    release.set()
    waiter.join(10)
    assert got == [1]


def test_a_pool_needs_a_slot() -> None:
    with pytest.raises(ValueError, match="at least one slot"):
        SendPool(0)


class RedisDown(MemoryGuards):
    def check_sends(self, sends: Sequence[Send]) -> list[Hold | None]:
        raise ConnectionError("redis down")


def test_a_failed_claim_gives_its_slots_back(twin_ctx: Context) -> None:
    # Given a batch whose claim fails (Redis is down when the guards are asked)
    pool = SendPool(4)
    jobs = [(submit_job("+12125550101"), 1), (submit_job("+12125550102"), 1)]

    # When it is dispatched, the error surfaces and every reserved slot is free again
    with pytest.raises(ConnectionError):
        sending.dispatch(jobs, ctx=replace(twin_ctx, pool=pool, guards=RedisDown()))
    assert pool.free == 4


def test_a_batch_with_no_free_slot_leaves_its_jobs_to_the_tick(
    twin_ctx: Context, twin: TwinAdapter, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a worker whose every send slot stays busy
    pool = SendPool(1)
    assert pool.reserve(1) == 1
    monkeypatch.setattr(sending, "SLOT_PATIENCE", 0.05)
    jobs = [submit_job("+12125550101"), submit_job("+12125550102")]

    # When a batch arrives, it claims nothing and says why, once its patience runs out
    outcomes = sending.dispatch([(job, 1) for job in jobs], ctx=replace(twin_ctx, pool=pool))
    assert outcomes == dict.fromkeys(jobs, "skipped: no free send slot")
    with twin_ctx.session() as session:
        states = session.scalars(select(Job.state).where(Job.id.in_(jobs))).all()
    assert states == [JobState.PENDING, JobState.PENDING]
    assert twin.sends() == []
    assert pool.free == 0
