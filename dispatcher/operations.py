"""Operator actions: cancel, hold, resume, retry. Each is recorded as a status event
that names who acted (``Caller.actor``); a tenant acts on its own jobs only."""

from __future__ import annotations

from sqlalchemy.orm import Session

from dispatcher import guards
from dispatcher.clock import utcnow
from dispatcher.effects import after_commit
from dispatcher.errors import IllegalTransition, JobNotFound, ProviderError, ProviderRejected
from dispatcher.lanes import Priority
from dispatcher.lifecycle import EventSource, JobState, check_operator, transition
from dispatcher.messaging import publish_dispatch
from dispatcher.outcomes import record_event
from dispatcher.runtime import get_adapter
from dispatcher.sending import follow_lost_send
from dispatcher.store.db import session_scope
from dispatcher.store.models import Job
from dispatcher.tenants import OPERATOR, Caller

__all__ = ["cancel", "hold", "resume", "retry"]


def _act(job_id: str, action: str, detail: str, caller: Caller, **values: object) -> Job:
    """Move a job as an operator's ``action`` does (``lifecycle.OPERATOR_MOVES``), or
    explain why not. Returns the job as it now is."""
    with session_scope() as session:
        job = _load(session, job_id, caller)
        state_from = job.state
        target = check_operator(job_id, action, state_from)
        if job.documents_purged_at is not None or job.recipient_purged_at is not None:
            raise IllegalTransition(
                job_id, f"{state_from}, and its documents or number were purged", target.value
            )
        if not transition(session, job, target, reason=detail, **values):
            raise IllegalTransition(job_id, "a state that just changed", target.value)
        record_event(
            session,
            job,
            source=EventSource.OPERATOR,
            state_from=state_from,
            detail=detail,
            actor=caller.actor,
        )
        if target is not JobState.PENDING:
            number = job.to_number
            after_commit(session, lambda: guards.release_line(number, job_id))
    return job


def _load(session: Session, job_id: str, caller: Caller) -> Job:
    job = session.get(Job, job_id)
    if job is None or not (caller.is_operator or job.tenant_id == caller.tenant_id):
        raise JobNotFound(job_id)
    return job


def cancel(job_id: str, why: str = "cancelled by an operator", caller: Caller = OPERATOR) -> Job:
    """Stop a job. A fax in progress is cancelled at the provider first; one the provider
    has already finished cannot be cancelled (the next poll records how it ended). A job
    waiting after a send whose answer was lost asks the provider for that send first: if
    it went out, it is the fax to cancel."""
    with session_scope() as session:
        state = _load(session, job_id, caller).state
    if state == JobState.DISPATCHING:
        raise IllegalTransition(job_id, "dispatching (being sent right now)", "cancelled")
    if state == JobState.PENDING:
        try:
            follow_lost_send(job_id)
        except ProviderError as exc:
            raise IllegalTransition(
                job_id,
                f"pending after a lost answer that {exc.provider} cannot settle now",
                "cancelled",
            ) from exc
    with session_scope() as session:
        job = _load(session, job_id, caller)
        provider, fax_id, state = job.provider, job.provider_fax_id, job.state
    if state == JobState.IN_PROGRESS and fax_id:
        try:
            get_adapter(provider).cancel(fax_id)
        except ProviderRejected as exc:
            raise IllegalTransition(
                job_id, f"in_progress ({provider} refused: {exc.message})", "cancelled"
            ) from exc
    return _act(job_id, "cancel", why, caller, next_attempt_at=None, next_poll_at=None)


def hold(job_id: str, why: str = "held by an operator", caller: Caller = OPERATOR) -> Job:
    """Keep a pending job from being sent until it is resumed."""
    return _act(job_id, "hold", why, caller, next_attempt_at=None)


def _requeue(job: Job) -> Job:
    publish_dispatch([(job.id, job.attempt_count + 1)], priority=Priority(job.priority))
    return job


def resume(job_id: str, why: str = "resumed by an operator", caller: Caller = OPERATOR) -> Job:
    """Send a held job again (after credit was added, or an operator hold)."""
    return _requeue(_act(job_id, "resume", why, caller, next_attempt_at=utcnow()))


def retry(job_id: str, why: str = "retried by an operator", caller: Caller = OPERATOR) -> Job:
    """Give a failed job a fresh attempt budget and send it again."""
    with session_scope() as session:
        attempts = _load(session, job_id, caller).attempt_count
    return _requeue(
        _act(
            job_id,
            "retry",
            why,
            caller,
            next_attempt_at=utcnow(),
            budget_start=attempts,
            immediate_retries=0,
            unsent_attempts=0,
        )
    )
