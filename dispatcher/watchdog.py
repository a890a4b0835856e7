"""The watchdog: no job waits forever in a state that depends on something else.

Each such state has a maximum age (``FAX_MAX_AGE__*``, counted from when the job
entered it). Past it, the job is moved where an operator sees it, with the reason in
its events and in ``faxctl status``, a warning in the log, and the count in the metrics
(``fax_stalled_jobs``):

* ``dispatching`` too long (its send could not be settled) -> ``held``;
* ``in_progress`` too long (the provider never gave a final status: a fax cancelled at
  the provider, one the provider lost) -> ``held``;
* ``held`` too long (nobody resumed it) -> ``failed``.

Beat runs it every FAX_WATCHDOG_INTERVAL seconds, a batch at a time; it also forgets
provider event ids too old to be replayed.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import delete, select

from config.settings import get_settings
from dispatcher import guards
from dispatcher.clock import utcnow
from dispatcher.effects import after_commit_batched
from dispatcher.lifecycle import EventSource, JobState, transition
from dispatcher.outcomes import record_event
from dispatcher.store.db import session_scope
from dispatcher.store.models import Job, WebhookEvent

__all__ = ["STALLED", "watch"]

log = logging.getLogger(__name__)

#: How the reason of a job the watchdog held begins.
STALLED = "stalled:"


def _reason(job: Job, since: datetime) -> tuple[JobState, str]:
    waited = f"since {since:%Y-%m-%d %H:%M} UTC"
    if job.state == JobState.DISPATCHING:
        return JobState.HELD, (
            f"{STALLED} dispatching {waited}, and attempt {job.attempt_count} could not be "
            f"settled with {job.provider}; check it there, then resume (sends again) or cancel"
        )
    if job.state == JobState.IN_PROGRESS:
        return JobState.HELD, (
            f"{STALLED} no final status from {job.provider} for fax {job.provider_fax_id} "
            f"{waited}; check it there, then resume (sends again) or cancel"
        )
    return JobState.FAILED, f"held {waited}, and nobody resumed it"


def watch(now: datetime | None = None) -> int:
    """Move every job past its state's maximum age (a batch at most); returns how many."""
    settings = get_settings()
    now = now or utcnow()
    # Held first: a job this run holds has only just entered ``held``.
    ages = {
        JobState.HELD: settings.max_age.held,
        JobState.DISPATCHING: settings.max_age.dispatching,
        JobState.IN_PROGRESS: settings.max_age.in_progress,
    }
    moved = 0
    for state, age in ages.items():
        with session_scope() as session:
            ids = session.scalars(
                select(Job.id)
                .where(Job.state == state, Job.state_changed_at <= now - timedelta(seconds=age))
                .limit(settings.tick_batch_size)
            ).all()
        for job_id in ids:
            moved += _move(job_id, state)
    with session_scope() as session:
        forget_before = now - timedelta(seconds=2 * settings.webhook_max_age)
        session.execute(delete(WebhookEvent).where(WebhookEvent.received_at < forget_before))
    return moved


def _move(job_id: str, state: JobState) -> bool:
    with session_scope() as session:
        job = session.get_one(Job, job_id)
        if job.state != state:
            return False
        target, reason = _reason(job, job.state_changed_at)
        if not transition(
            session, job, target, reason=reason, next_poll_at=None, next_attempt_at=None
        ):
            return False
        record_event(session, job, source=EventSource.WATCHDOG, state_from=state, detail=reason)
        line = guards.LineChange(job.to_number, job_id, keep=False)
        after_commit_batched(session, guards.change_lines, line)
    log.warning("job %s: %s", job_id, reason)
    return True
