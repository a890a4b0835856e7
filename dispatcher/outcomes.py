"""Applying a decision: the one place a classified status becomes a job transition.

Sends, polls, webhooks and reconciliation all end here, so the same status changes a
job the same way whichever way it arrived, and a status seen twice changes nothing twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any, NamedTuple

from sqlalchemy import Connection, insert
from sqlalchemy.orm import Session

from dispatcher import pauses
from dispatcher.catalogue import Family, Outcome, Remediation, StatusEntry
from dispatcher.clock import utcnow
from dispatcher.context import Context
from dispatcher.effects import after_commit, after_commit_batched
from dispatcher.guards import LineChange
from dispatcher.lifecycle import EventSource, JobState, transition
from dispatcher.policy import Decision, History, JobOverrides, PartialSend, Step, decide
from dispatcher.providers.base import ProviderStatus
from dispatcher.routing import next_provider
from dispatcher.store.models import Attempt, Job, StatusEvent

__all__ = [
    "JobRef",
    "apply_decision",
    "decide_for",
    "event_row",
    "history_of",
    "record_event",
    "record_events",
]

_TARGET = {
    Step.POLL: JobState.IN_PROGRESS,
    Step.SUCCEED: JobState.SUCCEEDED,
    Step.RETRY: JobState.PENDING,
    Step.REROUTE: JobState.PENDING,
    Step.FAIL: JobState.FAILED,
}


class JobRef(NamedTuple):
    """A job known by id and state only: what an event needs, without loading the row."""

    id: str
    state: str


#: Built once (building a statement costs more than running it); rows go in as params.
_INSERT_EVENT = insert(StatusEvent)


def history_of(job: Job) -> History:
    """The job's attempts within its current budget (an operator retry starts a new one)."""
    return History(job.attempt_count - job.budget_start, job.immediate_retries, job.unsent_attempts)


def decide_for(
    ctx: Context, job: Job, entry: StatusEntry, retry_after: float | None = None
) -> Decision:
    """The policy's decision for ``job`` on ``entry``, with the job's own overrides."""
    overrides = JobOverrides.from_options(job.options or {}, ctx.settings.time_scale)
    time_left = (job.deadline - ctx.now()).total_seconds() if job.deadline else None
    return decide(
        entry,
        history_of(job),
        ctx.policy,
        overrides,
        rng=ctx.rng,
        retry_after=retry_after,
        next_provider=next_provider(job.route, job.provider),
        time_left=time_left,
    )


def event_row(
    job: Job | JobRef,
    *,
    source: EventSource,
    state_from: str | None,
    detail: str | None = None,
    entry: StatusEntry | None = None,
    attempt_number: int | None = None,
    payload: dict[str, Any] | None = None,
    actor: str | None = None,
) -> dict[str, Any]:
    """The ``status_events`` row for what just happened to ``job`` (now in ``job.state``);
    ``actor`` names who acted, for an operator's action."""
    return {
        "job_id": job.id,
        "attempt_number": attempt_number,
        "source": source,
        "code": entry.code if entry else None,
        "outcome": entry.outcome.value if entry else None,
        "remediation": entry.remediation.value if entry else None,
        "state_from": state_from,
        "state_to": job.state,
        "detail": detail,
        "payload": payload,
        "actor": actor,
        "observed_at": utcnow(),
    }


def record_events(connection: Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Insert ``event_row`` rows, all in one statement."""
    if rows:
        connection.execute(_INSERT_EVENT, list(rows))


def record_event(session: Session, job: Job | JobRef, **fields: Any) -> None:
    """Record one event (``event_row``'s fields) in the session's transaction."""
    record_events(session.connection(), [event_row(job, **fields)])


def apply_decision(
    ctx: Context,
    session: Session,
    job: Job,
    attempt: Attempt | None,
    entry: StatusEntry,
    decision: Decision,
    *,
    source: EventSource,
    status: ProviderStatus | None = None,
    error: str | None = None,
) -> bool:
    """Move the job as ``decision`` says and record why. False if the job moved meanwhile."""
    now = ctx.now()
    state_from = job.state
    code_changed = entry.code != job.last_code or state_from != JobState.IN_PROGRESS
    target = _TARGET[decision.step]
    values: dict[str, Any] = {
        "last_code": entry.code,
        "last_outcome": entry.outcome.value,
        "last_remediation": entry.remediation.value,
        "reason": decision.reason,
    }
    if status is not None:
        if status.pages_sent is not None:
            values["pages_sent"] = status.pages_sent
        if status.cost is not None:
            values["cost"] = status.cost
    if attempt is not None and entry.is_call_failure:
        values["unsent_attempts"] = job.unsent_attempts + 1
    if decision.step is Step.POLL:
        values["next_poll_at"] = now + timedelta(seconds=decision.delay or 0)
    elif target is JobState.PENDING:
        values["next_attempt_at"] = now + timedelta(seconds=decision.delay or 0)
        values["immediate_retries"] = job.immediate_retries + 1 if decision.immediate else 0
        values["provider_fax_id"] = None
        values["next_poll_at"] = None
        if decision.step is Step.REROUTE:
            values["provider"] = next_provider(job.route, job.provider)
            values["resend_from_page"] = 0
        elif status is not None and _resends_remaining(job, entry, status):
            values["resend_from_page"] = job.resend_from_page + (status.pages_sent or 0)
    else:
        values["next_poll_at"] = None
    number, job_id = job.to_number, job.id
    if not transition(session, job, target, **values):
        return False
    if entry.remediation is Remediation.WAIT_FOR_CREDIT:
        probe_in = ctx.settings.scaled(ctx.settings.pause_probe_interval)
        reason = f"out of credit: {entry.label}"
        pauses.pause_for_credit(session, entry.provider, reason, now, probe_in)
    elif entry.outcome in (Outcome.SUCCESS, Outcome.PARTIAL):
        pauses.resume_after_credit(session, entry.provider)
    line = LineChange(number, job_id, keep=target is JobState.IN_PROGRESS)
    after_commit_batched(session, ctx.guards.change_lines, line)
    if entry.family is Family.BUSY and decision.step is Step.RETRY:
        delay = decision.delay or 0.0
        after_commit(session, lambda: ctx.guards.share_busy(number, delay))
    if attempt is not None and (decision.step is not Step.POLL or entry.is_final):
        _finish_attempt(attempt, entry, status, error)
    if code_changed or decision.step is not Step.POLL:
        record_event(
            session,
            job,
            source=source,
            state_from=state_from,
            detail=decision.reason if error is None else f"{decision.reason}: {error}",
            entry=entry,
            attempt_number=attempt.number if attempt else None,
            payload=dict(status.raw) if status is not None else None,
        )
    return True


def _resends_remaining(job: Job, entry: StatusEntry, status: ProviderStatus) -> bool:
    partial = JobOverrides.from_options(job.options or {}).partial
    return (
        entry.outcome is Outcome.PARTIAL
        and partial is PartialSend.RESEND_REMAINING
        and bool(status.pages_sent)
    )


def _finish_attempt(
    attempt: Attempt, entry: StatusEntry, status: ProviderStatus | None, error: str | None
) -> None:
    attempt.finished_at = utcnow()
    attempt.status_code = entry.code
    attempt.outcome = entry.outcome.value
    attempt.remediation = entry.remediation.value
    attempt.error = error
    if status is not None:
        attempt.pages_sent = status.pages_sent
        attempt.cost = status.cost
        attempt.duration = status.duration
