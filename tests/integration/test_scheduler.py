"""The tick on a real database and a real broker: what it publishes, and at what cost."""

from __future__ import annotations

import base64
import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
import redis
from sqlalchemy import Engine, event, insert

from config.settings import get_settings
from dispatcher.clock import utcnow
from dispatcher.lifecycle import JobState
from dispatcher.scheduler import tick
from dispatcher.store.models import Job


def add_jobs(engine: Engine, count: int, state: JobState, **values: object) -> None:
    now = utcnow()
    rows = [
        {
            "id": uuid.uuid4().hex,
            "to_number": "+12025550100",
            "provider": ["interfax", "faxplus", "optum"][i % 3],
            "state": state.value,
            "version": 1,
            "request_hash": "0" * 64,
            "attempt_count": 0,
            "immediate_retries": 0,
            "budget_start": 0,
            "pages": 1,
            "metadata": {},
            "options": {},
            "created_at": now,
            "updated_at": now,
            **values,
        }
        for i in range(count)
    ]
    with engine.begin() as conn:
        conn.execute(insert(Job), rows)


def messages(client: redis.Redis, queue_name: str) -> list[dict[str, Any]]:
    return [json.loads(raw) for raw in client.lrange(queue_name, 0, -1)]


def dispatched_pairs(published: list[dict[str, Any]]) -> list[tuple[str, int]]:
    """Every (job id, attempt) the batch messages carry."""
    return [
        (job_id, number)
        for m in published
        for job_id, number in json.loads(base64.b64decode(m["body"]))[0][0]
    ]


def test_due_pending_jobs_are_published_once_with_their_next_attempt_number(
    engine: Engine, broker_queue: redis.Redis
) -> None:
    add_jobs(engine, 30, JobState.PENDING, next_attempt_at=utcnow() - timedelta(seconds=1))
    add_jobs(engine, 5, JobState.PENDING, next_attempt_at=utcnow() + timedelta(hours=1))
    first = tick()
    second = tick()
    assert (first.dispatched, second.dispatched) == (30, 0)
    # Thirty jobs go out as one batch message of thirty (job id, attempt 1) pairs.
    published = messages(broker_queue, "dispatch")
    assert [m["headers"]["task"] for m in published] == ["fax.dispatch_many"]
    pairs = dispatched_pairs(published)
    assert len(pairs) == 30 and {number for _, number in pairs} == {1}


def test_due_polls_are_batched_per_provider(engine: Engine, broker_queue: redis.Redis) -> None:
    add_jobs(
        engine,
        120,
        JobState.IN_PROGRESS,
        next_poll_at=utcnow() - timedelta(seconds=1),
        provider_fax_id="x",
    )
    report = tick()
    assert report.polled == 120
    assert report.poll_batches == 3  # 40 per provider, batch size 50
    assert len(messages(broker_queue, "poll")) == 3


def test_statements_grow_with_batches_not_with_jobs(
    engine: Engine, broker_queue: redis.Redis
) -> None:
    add_jobs(
        engine,
        400,
        JobState.IN_PROGRESS,
        next_poll_at=utcnow() - timedelta(seconds=1),
        provider_fax_id="x",
    )
    add_jobs(engine, 400, JobState.PENDING)
    statements: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    report = tick()
    assert (report.dispatched, report.polled) == (400, 400)
    # per lane and kind, a claim and its UPDATE; the provider pauses; callbacks due
    assert len(statements) <= 9, statements


@pytest.mark.postgres
def test_two_beats_at_once_split_the_work(
    postgres_url: str, broker_queue: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dispatcher.store.db import engine_for
    from tests.fixtures.database import _truncate

    engine = engine_for(postgres_url)
    _truncate(engine)
    monkeypatch.setenv("FAX_DATABASE_URL", postgres_url)
    get_settings.cache_clear()
    add_jobs(engine, 600, JobState.PENDING)
    with ThreadPoolExecutor(2) as pool:
        reports = list(pool.map(lambda _: tick(), range(2)))
    assert sum(r.dispatched for r in reports) == 600
    pairs = dispatched_pairs(messages(broker_queue, "dispatch"))
    assert len(pairs) == len({job_id for job_id, _ in pairs}) == 600


def test_each_lane_goes_out_on_its_own_queue_urgent_first(
    engine: Engine, broker_queue: redis.Redis
) -> None:
    # Given more bulk work due than a tick takes, and a little urgent and normal work
    due = utcnow() - timedelta(seconds=1)
    add_jobs(engine, 700, JobState.PENDING, priority="bulk", next_attempt_at=due)
    add_jobs(engine, 5, JobState.PENDING, priority="normal", next_attempt_at=due)
    add_jobs(engine, 5, JobState.PENDING, priority="urgent", next_attempt_at=due)

    report = tick()

    # Then the urgent and normal work goes out whole, each lane on its queue, and bulk
    # fills the rest of the tick
    sizes = {
        queue: len(dispatched_pairs(messages(broker_queue, queue)))
        for queue in ("dispatch-urgent", "dispatch", "dispatch-bulk")
    }
    assert sizes == {"dispatch-urgent": 5, "dispatch": 5, "dispatch-bulk": 490}
    assert report.dispatched == 500


def test_urgent_work_never_takes_a_whole_tick_from_bulk(
    engine: Engine, broker_queue: redis.Redis
) -> None:
    due = utcnow() - timedelta(seconds=1)
    add_jobs(engine, 1000, JobState.PENDING, priority="urgent", next_attempt_at=due)
    add_jobs(engine, 100, JobState.PENDING, priority="bulk", next_attempt_at=due)

    tick()

    urgent = len(dispatched_pairs(messages(broker_queue, "dispatch-urgent")))
    bulk = len(dispatched_pairs(messages(broker_queue, "dispatch-bulk")))
    share = get_settings().lane_share
    assert bulk >= 500 * share and urgent + bulk == 500
