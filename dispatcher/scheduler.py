"""The beat tick: find due work in the database and publish it, in batches.

Dispatches are claimed lane by lane, urgent first, each lower lane keeping a share of the
tick (``dispatcher.lanes``), each onto its own queue.

Each kind of due work is one index-backed SELECT (``state`` plus a time column) and one
UPDATE that pushes the rows' next time out by a guard interval, so the next tick does not
publish them again while their message is queued. On PostgreSQL the SELECT takes
``FOR UPDATE SKIP LOCKED``, so two beats started by mistake split the work instead of
doubling it; on SQLite a duplicate publish is harmless because every task is conditional.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, or_, select, update
from sqlalchemy.orm import Session

from config.settings import get_settings
from dispatcher import pauses
from dispatcher.callbacks import delivery
from dispatcher.clock import utcnow
from dispatcher.lanes import LANES, Priority, lane_rooms
from dispatcher.lifecycle import JobState
from dispatcher.messaging import (
    BATCH,
    publish_deliveries,
    publish_dispatch,
    publish_poll,
    publish_reconcile,
    queue_depths,
    redelivery_guard,
)
from dispatcher.store.db import session_scope
from dispatcher.store.models import Job

__all__ = ["Due", "TickReport", "claim_due", "publish", "tick"]


@dataclass(frozen=True, slots=True)
class TickReport:
    dispatched: int
    polled: int
    poll_batches: int
    reconciled: int
    callbacks: int


def _locked(session: Session, query: Select[Any]) -> Select[Any]:
    if session.get_bind().dialect.name == "postgresql":
        return query.with_for_update(skip_locked=True, of=Job)
    return query


def _full_poll_batches(rows: list[Any], limit: int, size: int) -> list[Any]:
    """With more polls due than one tick takes, leave each provider's last partial batch
    for the next tick, so status reads go ``size`` faxes per provider request."""
    if len(rows) < limit:
        return rows
    by_provider: dict[str, list[Any]] = defaultdict(list)
    for row in rows:
        by_provider[row.provider].append(row)
    return [
        row
        for group in by_provider.values()
        for row in (group[: len(group) - len(group) % size] or group)
    ]


def _claim_due(
    session: Session,
    columns: Sequence[Any],
    due: Sequence[ColumnElement[bool]],
    order: Any,
    limit: int,
    column: Any,
    guard: datetime,
    keep: Callable[[list[Any]], list[Any]] = lambda rows: rows,
) -> list[Any]:
    """Select due rows and push their ``column`` out to ``guard``. The UPDATE repeats
    the due condition: on SQLite, where the SELECT locks nothing, a row a worker moved in
    between (a new backoff) keeps what the worker wrote, and is not published."""
    rows = keep(
        list(
            session.execute(
                _locked(session, select(*columns).where(*due).order_by(order).limit(limit))
            ).all()
        )
    )
    if not rows:
        return []
    claimed = set(
        session.scalars(
            update(Job)
            .where(Job.id.in_([row.id for row in rows]), *due)
            .values({column: guard})
            .returning(Job.id)
            .execution_options(synchronize_session=False)
        )
    )
    return [row for row in rows if row.id in claimed]


@dataclass(frozen=True, slots=True)
class Due:
    """The work one tick claimed: (job id, next attempt) per lane, (job id, provider),
    stuck job ids, callback delivery ids."""

    dispatches: dict[Priority, list[tuple[str, int]]]
    polls: list[tuple[str, str]]
    reconciles: list[str]
    deliveries: list[str]


def tick(now: datetime | None = None) -> TickReport:
    """Publish due dispatches, due polls and reconciles for jobs stuck mid-send."""
    return publish(claim_due(now))


def claim_due(now: datetime | None = None) -> Due:
    """Find the due work and push its next time out by the redelivery guard, so the next
    tick does not publish it again while its message is queued: the database's part."""
    settings = get_settings()
    now = now or utcnow()
    batch = settings.tick_batch_size
    guard = now + redelivery_guard()
    stuck_before = now - timedelta(seconds=settings.dispatch_lease)
    # Back-pressure: while the workers are a batch behind on a queue, more messages would
    # only be duplicates of ones still queued (their guard time ran out in the queue).
    depth = queue_depths()
    poll_room = 0 if depth["poll"] * settings.poll_batch_size >= batch else batch
    rooms = lane_rooms(batch, settings.lane_share)
    with session_scope() as session:
        dispatches: dict[Priority, list[tuple[str, int]]] = {lane: [] for lane in LANES}
        # A paused provider's jobs wait unpublished; a pause for credit sends its probe.
        paused = pauses.current(session)
        not_paused = (Job.provider.not_in(list(paused)),) if paused else ()
        for job_id, number, lane_name in pauses.claim_probes(session, paused, now, guard):
            dispatches[Priority(lane_name)].append((job_id, number))
        taken = 0
        for lane in LANES:
            room = 0 if depth[lane.queue] >= batch else rooms[lane] - taken
            pending = _claim_due(
                session,
                (Job.id, Job.attempt_count),
                (
                    Job.state == JobState.PENDING,
                    Job.priority == lane,
                    or_(Job.next_attempt_at.is_(None), Job.next_attempt_at <= now),
                    *not_paused,
                ),
                Job.next_attempt_at,
                max(room, 0),
                Job.next_attempt_at,
                guard,
            )
            taken += len(pending)
            dispatches[lane] += [(row.id, row.attempt_count + 1) for row in pending]
        polls = _claim_due(
            session,
            (Job.id, Job.provider),
            (Job.state == JobState.IN_PROGRESS, Job.next_poll_at <= now),
            Job.next_poll_at,
            poll_room,
            Job.next_poll_at,
            guard,
            lambda rows: _full_poll_batches(rows, batch, settings.poll_batch_size),
        )
        stuck = _claim_due(
            session,
            (Job.id,),
            (Job.state == JobState.DISPATCHING, Job.updated_at <= stuck_before),
            Job.updated_at,
            batch,
            Job.updated_at,
            now,
        )
    return Due(
        dispatches,
        [(row.id, row.provider) for row in polls],
        [row.id for row in stuck],
        delivery.claim_due(now),
    )


def publish(due: Due) -> TickReport:
    """Publish what a tick claimed: dispatches in batch messages on their lanes' queues,
    polls per provider in batches of FAX_POLL_BATCH_SIZE, one reconcile per stuck job,
    callback deliveries in batches."""
    for lane, attempts in due.dispatches.items():
        if attempts:
            publish_dispatch(attempts, priority=lane)
    by_provider: dict[str, list[str]] = defaultdict(list)
    for job_id, provider in due.polls:
        by_provider[provider].append(job_id)
    batches = 0
    size = get_settings().poll_batch_size
    for provider, ids in by_provider.items():
        for start in range(0, len(ids), size):
            publish_poll(provider, ids[start : start + size])
            batches += 1
    for job_id in due.reconciles:
        publish_reconcile(job_id)
    for start in range(0, len(due.deliveries), BATCH):
        publish_deliveries(due.deliveries[start : start + BATCH])
    dispatched = sum(len(attempts) for attempts in due.dispatches.values())
    return TickReport(dispatched, len(due.polls), batches, len(due.reconciles), len(due.deliveries))
