"""Reading jobs back: the views that the client, ``faxctl`` and the HTTP API show."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from dispatcher.errors import JobNotFound, ValidationError
from dispatcher.lifecycle import FINAL_STATES
from dispatcher.store.db import session_scope
from dispatcher.store.models import Attempt, Job, JobTag, StatusEvent
from dispatcher.tenants import OPERATOR, Caller

__all__ = [
    "Search",
    "attempt_view",
    "attempts",
    "count_final",
    "event_view",
    "events",
    "get_job",
    "job_view",
    "list_jobs",
    "metadata_pairs",
]


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _given_key(job: Job) -> str | None:
    """The idempotency key as its producer gave it (a tenant's is stored scoped)."""
    key = job.idempotency_key
    if key is not None and job.tenant_id is not None:
        return key.removeprefix(f"{job.tenant_id}:")
    return key


def job_view(job: Job) -> dict[str, Any]:
    return {
        "id": job.id,
        "state": job.state,
        "provider": job.provider,
        "to": job.to_number,
        "attempts": job.attempt_count,
        "provider_fax_id": job.provider_fax_id,
        "last_code": job.last_code,
        "outcome": job.last_outcome,
        "remediation": job.last_remediation,
        "reason": job.reason,
        "next_attempt_at": _iso(job.next_attempt_at) if job.state == "pending" else None,
        "next_poll_at": _iso(job.next_poll_at) if job.state == "in_progress" else None,
        "send_at": _iso(job.send_at),
        "pages": job.pages,
        "pages_sent": job.pages_sent,
        "cost": job.cost,
        "metadata": job.meta,
        "batch_id": job.batch_id,
        "priority": job.priority,
        "idempotency_key": _given_key(job),
        "callback_url": job.callback_url,
        "created_at": _iso(job.created_at),
        "updated_at": _iso(job.updated_at),
        "finished_at": _iso(job.finished_at),
        "documents_purged_at": _iso(job.documents_purged_at),
        "recipient_purged_at": _iso(job.recipient_purged_at),
        "payloads_purged_at": _iso(job.payloads_purged_at),
    }


def attempt_view(attempt: Attempt) -> dict[str, Any]:
    return {
        "number": attempt.number,
        "kind": attempt.kind,
        "provider": attempt.provider,
        "provider_fax_id": attempt.provider_fax_id,
        "reference": attempt.reference,
        "code": attempt.status_code,
        "outcome": attempt.outcome,
        "remediation": attempt.remediation,
        "started_at": _iso(attempt.started_at),
        "submitted_at": _iso(attempt.submitted_at),
        "finished_at": _iso(attempt.finished_at),
        "pages_sent": attempt.pages_sent,
        "duration": attempt.duration,
        "cost": attempt.cost,
        "error": attempt.error,
        "unsettled": attempt.unsettled,
    }


def event_view(event: StatusEvent) -> dict[str, Any]:
    return {
        "source": event.source,
        "attempt": event.attempt_number,
        "code": event.code,
        "outcome": event.outcome,
        "remediation": event.remediation,
        "from": event.state_from,
        "to": event.state_to,
        "detail": event.detail,
        "actor": event.actor,
        "observed_at": _iso(event.observed_at),
    }


def _load(session: Session, job_id: str, caller: Caller) -> Job:
    """The job, if the caller may see it; a tenant gets ``JobNotFound`` for any other
    tenant's job, exactly as for one that does not exist."""
    job = session.get(Job, job_id)
    if job is None or not (caller.is_operator or job.tenant_id == caller.tenant_id):
        raise JobNotFound(job_id)
    return job


def get_job(job_id: str, caller: Caller = OPERATOR) -> dict[str, Any]:
    with session_scope() as session:
        return job_view(_load(session, job_id, caller))


def attempts(job_id: str, caller: Caller = OPERATOR) -> list[dict[str, Any]]:
    with session_scope() as session:
        _load(session, job_id, caller)
        rows = session.scalars(
            select(Attempt).where(Attempt.job_id == job_id).order_by(Attempt.number)
        )
        return [attempt_view(a) for a in rows]


def events(job_id: str, caller: Caller = OPERATOR) -> list[dict[str, Any]]:
    with session_scope() as session:
        _load(session, job_id, caller)
        rows = session.scalars(
            select(StatusEvent).where(StatusEvent.job_id == job_id).order_by(StatusEvent.id)
        )
        return [event_view(e) for e in rows]


@dataclass(frozen=True, slots=True)
class Search:
    """What a list of jobs is narrowed to; every field is optional, all must match."""

    state: str | None = None
    provider: str | None = None
    priority: str | None = None
    to: str | None = None
    idempotency_key: str | None = None
    batch_id: str | None = None
    since: datetime | None = None  # created at or after
    until: datetime | None = None  # created before
    metadata: Mapping[str, str] = field(default_factory=dict)


def metadata_pairs(raw: Sequence[str]) -> dict[str, str]:
    """``key=value`` filters of the metadata, as a request or ``faxctl list`` gives them."""
    pairs: dict[str, str] = {}
    for item in raw:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValidationError("metadata", f"{item[:64]!r} is not key=value")
        pairs[key] = value
    return pairs


def _where(search: Search, caller: Caller) -> list[ColumnElement[bool]]:
    """The search's conditions, each backed by an index (``store/models.py``)."""
    conditions: list[ColumnElement[bool]] = []
    if caller.tenant_id is not None:
        conditions.append(Job.tenant_id == caller.tenant_id)
    equal = {
        Job.state: search.state,
        Job.provider: search.provider,
        Job.priority: search.priority,
        Job.to_number: search.to,
        Job.batch_id: search.batch_id,
    }
    conditions.extend(column == value for column, value in equal.items() if value)
    if search.idempotency_key:
        stored = search.idempotency_key
        if caller.tenant_id is not None:
            stored = f"{caller.tenant_id}:{stored}"
        conditions.append(Job.idempotency_key == stored)
    if search.since:
        conditions.append(Job.created_at >= search.since)
    if search.until:
        conditions.append(Job.created_at < search.until)
    for key, value in search.metadata.items():
        tagged = select(JobTag.job_id).where(JobTag.key == key, JobTag.value == value)
        conditions.append(Job.id.in_(tagged))
    return conditions


def list_jobs(
    search: Search = Search(),
    caller: Caller = OPERATOR,
    limit: int = 50,
    before: str | None = None,
) -> list[dict[str, Any]]:
    """The caller's jobs that match, newest first; ``before`` is the last id of the
    previous page (keyset pagination: a page costs the same however deep)."""
    query = (
        select(Job)
        .where(*_where(search, caller))
        .order_by(Job.created_at.desc(), Job.id.desc())
        .limit(limit)
    )
    with session_scope() as session:
        if before:
            anchor = _load(session, before, caller)
            query = query.where(
                (Job.created_at < anchor.created_at)
                | ((Job.created_at == anchor.created_at) & (Job.id < anchor.id))
            )
        return [job_view(j) for j in session.scalars(query)]


def count_final() -> int:
    """How many jobs have reached a final state."""
    with session_scope() as session:
        return (
            session.scalar(
                select(func.count()).where(Job.state.in_([s.value for s in FINAL_STATES]))
            )
            or 0
        )
