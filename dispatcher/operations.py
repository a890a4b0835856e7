"""Operator actions: cancel, hold, resume, retry, push, alter. Each is recorded as a status event
that names who acted (``Caller.actor``); a tenant acts on its own jobs only."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from dispatcher import guards
from dispatcher.clock import utcnow
from dispatcher.effects import after_commit_batched
from dispatcher.errors import (
    IllegalTransition,
    JobNotFound,
    ProviderError,
    ProviderRejected,
    ValidationError,
)
from dispatcher.lanes import Priority
from dispatcher.lifecycle import EventSource, JobState, check_operator, transition
from dispatcher.messaging import publish_dispatch
from dispatcher.outcomes import record_event
from dispatcher.privacy import mask_number
from dispatcher.runtime import document_store, get_adapter
from dispatcher.sending import follow_lost_send
from dispatcher.store.db import session_scope
from dispatcher.store.models import Job, JobDocument
from dispatcher.tenants import OPERATOR, Caller
from dispatcher.validation import validate_fax

__all__ = ["Alteration", "alter", "cancel", "hold", "push", "resume", "retry"]


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
            line = guards.LineChange(job.to_number, job_id, keep=False)
            after_commit_batched(session, guards.change_lines, line)
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


def push(job_id: str, why: str = "pushed by an operator", caller: Caller = OPERATOR) -> Job:
    """Send a pending job now: its send time and any wait before its next attempt go."""
    return _requeue(_act(job_id, "push", why, caller, next_attempt_at=utcnow(), send_at=None))


@dataclass(frozen=True, slots=True)
class Alteration:
    """What ``alter`` changes; a field left None stays as it is."""

    to: str | None = None
    send_at: datetime | None = None
    deadline: datetime | None = None
    priority: str | None = None
    provider: str | None = None

    def given(self) -> dict[str, Any]:
        return {name: value for name, value in asdict(self).items() if value is not None}


_ALTERABLE = frozenset({JobState.PENDING, JobState.HELD})


def alter(job_id: str, changes: Alteration, caller: Caller = OPERATOR) -> Job:
    """Change a pending or held job's destination, send time, deadline, priority or
    provider, each checked as at submit (with the job's own documents), and record who
    changed what from what in the job's events. A job being sent or in progress cannot
    be altered: ``IllegalTransition`` says why."""
    with session_scope() as session:
        job = _load(session, job_id, caller)
        if not changes.given():
            raise ValidationError(
                "changes", "name at least one of to, send_at, deadline, priority, provider"
            )
        if job.state not in _ALTERABLE:
            raise IllegalTransition(
                job_id, f"{job.state} (only a pending or held fax can be altered)", "altered"
            )
        if job.documents_purged_at is not None or job.recipient_purged_at is not None:
            raise IllegalTransition(
                job_id, f"{job.state}, and its documents or number were purged", "altered"
            )
        valid = validate_fax(
            changes.to or job.to_number,
            _documents_of(session, job_id),
            changes.provider or job.provider,
            changes.send_at or job.send_at,
            job.meta,
            job.options,
            deadline=changes.deadline or job.deadline,
            priority=changes.priority or job.priority,
        )
        after = {
            "to": valid.to,
            "send_at": valid.send_at,
            "deadline": valid.deadline,
            "priority": valid.priority.value,
            "provider": valid.provider,
        }
        before = {name: getattr(job, _COLUMNS.get(name, name)) for name in after}
        changed = {
            name: (before[name], after[name])
            for name in changes.given()
            if before[name] != after[name]
        }
        if not changed:
            return job
        values: dict[str, Any] = {
            _COLUMNS.get(name, name): new for name, (_, new) in changed.items()
        }
        if "provider" in changed:
            values["route"] = [valid.provider]
            values["resend_from_page"] = 0  # the new provider has none of the pages
        state = JobState(job.state)
        if not transition(session, job, state, reason=job.reason, **values):
            raise IllegalTransition(job_id, "a state that just changed", "altered")
        shown = {
            name: [_shown(name, old), _shown(name, new)] for name, (old, new) in changed.items()
        }
        record_event(
            session,
            job,
            source=EventSource.OPERATOR,
            state_from=state,
            detail="altered: "
            + "; ".join(f"{name} {old} -> {new}" for name, (old, new) in shown.items()),
            payload={"changed": shown},
            actor=caller.actor,
        )
    if state is JobState.PENDING and ("send_at" in changed or "priority" in changed):
        _requeue(job)  # due now, or on its new lane; a send before send_at is refused
    return job


#: Alteration fields stored under another column name.
_COLUMNS = {"to": "to_number"}


def _shown(name: str, value: object) -> str | None:
    """A changed value as the job's events keep it: numbers masked, times in ISO 8601."""
    if value is None:
        return None
    if name == "to":
        return mask_number(str(value))
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def _documents_of(session: Session, job_id: str) -> list[tuple[str, bytes]]:
    rows = session.execute(
        select(JobDocument.name, JobDocument.sha256)
        .where(JobDocument.job_id == job_id)
        .order_by(JobDocument.position)
    ).all()
    contents = document_store().load(session.connection(), {sha for _, sha in rows})
    return [(name, contents[sha]) for name, sha in rows]
