"""The send pool's slot accounting: a batch never claims more jobs than can start
sending at once, and no failure keeps a slot reserved."""

from __future__ import annotations

import threading

import pytest

from dispatcher import sending
from dispatcher.sendpool import SendPool


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


def test_a_failed_claim_gives_its_slots_back(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a batch whose claim fails (the broker or the database is down)
    pool = SendPool(4)
    monkeypatch.setattr(sending, "send_pool", lambda: pool)

    def claim_fails(*_: object) -> list[object]:
        raise ConnectionError("broker down")

    monkeypatch.setattr(sending, "_claim", claim_fails)
    # When it is dispatched, the error surfaces and every reserved slot is free again
    with pytest.raises(ConnectionError):
        sending.dispatch([("job-1", 1), ("job-2", 1)])
    assert pool.free == 4


def test_a_batch_with_no_free_slot_leaves_its_jobs_to_the_tick(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a worker whose every send slot stays busy
    pool = SendPool(1)
    assert pool.reserve(1) == 1
    monkeypatch.setattr(sending, "send_pool", lambda: pool)
    monkeypatch.setattr(sending, "SLOT_PATIENCE", 0.05)
    claimed: list[object] = []

    def claim(*args: object) -> list[object]:
        claimed.append(args)
        return []

    monkeypatch.setattr(sending, "_claim", claim)
    # When a batch arrives, it claims nothing and says why, once its patience runs out
    outcomes = sending.dispatch([("job-1", 1), ("job-2", 1)])
    assert outcomes == dict.fromkeys(["job-1", "job-2"], "skipped: no free send slot")
    assert claimed == []
    assert pool.free == 0
