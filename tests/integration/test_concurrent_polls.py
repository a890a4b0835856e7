"""Two polls of the same faxes at once, on PostgreSQL (a poll message delivered twice, or
the tick's guard run out while one waited in the queue): neither waits for the other.

Each poll applies its statuses in one transaction. When both locked their jobs as they
came to them, in their own orders, they deadlocked; a two-host run stalled for minutes."""

from __future__ import annotations

import threading
from dataclasses import replace

import pytest
from sqlalchemy import select

from config.settings import get_settings
from dispatcher import sending, tracking
from dispatcher.context import Context
from dispatcher.lifecycle import JobState
from dispatcher.providers.twin import TwinAdapter
from dispatcher.store.db import engine_for
from dispatcher.store.models import Job
from tests.fixtures.twin import job_of, submit_job


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_a_poll_skips_the_jobs_another_transaction_holds_and_applies_the_others(
    db_url: str, twin_ctx: Context, twin: TwinAdapter, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given two faxes done at the provider, in progress on PostgreSQL
    monkeypatch.setenv("FAX_DATABASE_URL", db_url)
    get_settings.cache_clear()
    ctx = replace(twin_ctx, engine=engine_for(db_url))
    held, free = submit_job("+12125550101"), submit_job("+12125550102")
    sending.dispatch([(held, 1), (free, 1)], ctx=ctx)
    for job_id in (held, free):
        fax_id = job_of(ctx, job_id).provider_fax_id
        assert fax_id is not None
        twin.finish(fax_id, "0")
    polled: list[int] = []
    poll = threading.Thread(
        target=lambda: polled.append(tracking.poll("interfax", [held, free], ctx=ctx)),
        daemon=True,
    )

    # When another transaction holds the first job's row while a poll of both runs
    with ctx.engine.connect() as other:
        other.execute(select(Job.id).where(Job.id == held).with_for_update())
        poll.start()
        poll.join(15)
        waited = poll.is_alive()
        other.rollback()
    poll.join(15)

    # Then the poll did not wait: it applied the free job and left the held one to the next
    assert not waited, "the poll waited for another transaction's lock"
    assert polled == [1]
    assert job_of(ctx, free).state == JobState.SUCCEEDED
    assert job_of(ctx, held).state == JobState.IN_PROGRESS
