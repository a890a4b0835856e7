"""Reading jobs back: the views that the client, ``faxctl`` and the HTTP API show."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, case, func, or_, select
from sqlalchemy.orm import Session

from dispatcher import pauses
from dispatcher.catalogue import Family, entries, transport
from dispatcher.errors import JobNotFound, ValidationError
from dispatcher.lifecycle import FINAL_STATES, JobState
from dispatcher.providers.registry import PROVIDERS
from dispatcher.store.db import session_scope
from dispatcher.store.models import Attempt, Job, JobTag, StatusEvent
from dispatcher.tenants import OPERATOR, Caller

__all__ = [
    "Search",
    "attempt_view",
    "attempts",
    "conditions",
    "count_final",
    "event_view",
    "events",
    "get_job",
    "job_view",
    "list_jobs",
    "metadata_pairs",
    "new_job_view",
    "oldest_due_at",
    "state_counts",
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


def _shown(job: Job, session: Session | None = None) -> dict[str, Any]:
    """The job's view; a pending one whose provider is paused says so in its reason."""
    view = job_view(job)
    if job.state == JobState.PENDING:
        paused = pauses.paused_reason(pauses.recent(session), job.provider, job.id)
        view["reason"] = paused or view["reason"]
    return view


def get_job(job_id: str, caller: Caller = OPERATOR) -> dict[str, Any]:
    with session_scope() as session:
        return _shown(_load(session, job_id, caller), session)


def new_job_view(row: Mapping[str, Any]) -> dict[str, Any]:
    """The view of a job just written, from the row submission wrote: the intake answers
    with it without reading the job back."""
    return _shown(Job(attempt_count=0, **row))


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
    remediation: str | None = None  # of its last status (with ``state``: indexed by state)
    tenant_id: str | None = None  # an operator narrowing to one tenant's jobs
    family: str | None = None  # the code family of its last status (busy, credit, ...)


def metadata_pairs(raw: Sequence[str]) -> dict[str, str]:
    """``key=value`` filters of the metadata, as a request or ``faxctl list`` gives them."""
    pairs: dict[str, str] = {}
    for item in raw:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValidationError("metadata", f"{item[:64]!r} is not key=value")
        pairs[key] = value
    return pairs


def conditions(search: Search, caller: Caller) -> list[ColumnElement[bool]]:
    """The search's conditions, each backed by an index (``store/models.py``)."""
    conditions: list[ColumnElement[bool]] = []
    tenant_id = caller.tenant_id if caller.tenant_id is not None else search.tenant_id
    if tenant_id is not None:
        conditions.append(Job.tenant_id == tenant_id)
    equal = {
        Job.state: search.state,
        Job.provider: search.provider,
        Job.priority: search.priority,
        Job.to_number: search.to,
        Job.batch_id: search.batch_id,
        Job.last_remediation: search.remediation,
    }
    conditions.extend(column == value for column, value in equal.items() if value)
    if search.idempotency_key:
        stored = search.idempotency_key
        if tenant_id is not None:  # a tenant's keys are stored scoped to it
            stored = f"{tenant_id}:{stored}"
        conditions.append(Job.idempotency_key == stored)
    if search.since:
        conditions.append(Job.created_at >= search.since)
    if search.until:
        conditions.append(Job.created_at < search.until)
    for key, value in search.metadata.items():
        tagged = select(JobTag.job_id).where(JobTag.key == key, JobTag.value == value)
        conditions.append(Job.id.in_(tagged))
    if search.family:
        conditions.append(_in_family(search.family))
    return conditions


def _in_family(name: str) -> ColumnElement[bool]:
    """Jobs whose last code is in the family: each provider's codes of it from the
    catalogue, and the transport failures of it (every ``http_5..`` for ``http_5xx``)."""
    try:
        family = Family(name)
    except ValueError:
        known = ", ".join(f.value for f in Family)
        raise ValidationError("family", f"unknown family {name!r} (one of {known})") from None
    matches: list[ColumnElement[bool]] = [
        and_(
            Job.provider == provider,
            Job.last_code.in_([e.code for e in entries(provider) if e.family is family]),
        )
        for provider in PROVIDERS
    ]
    for kind in transport.kinds_of(family):
        if kind in transport.SPECIFIC_KINDS:
            matches.append(Job.last_code == kind)
        else:  # http_5xx: http_500, http_503, ...
            wide = Job.last_code.like(f"{kind.removesuffix('xx')}%")
            matches.append(and_(wide, Job.last_code.not_in(transport.SPECIFIC_KINDS)))
    return or_(*matches)


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
        .where(*conditions(search, caller))
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


def state_counts(session: Session) -> dict[str, int]:
    """How many jobs are in each state (every state, 0 for none)."""
    counted = dict(session.execute(select(Job.state, func.count()).group_by(Job.state)).all())
    return {state.value: counted.get(state.value, 0) for state in JobState}


def oldest_due_at(session: Session, now: datetime, paused: Collection[str] = ()) -> datetime | None:
    """When the longest-waiting due send or poll became due (None: nothing is due); how
    far behind the workers are. A ``paused`` provider's pending jobs are not due: they
    wait for its resume, not for a worker."""
    sendable = (Job.provider.not_in(paused),) if paused else ()
    due = or_(
        and_(Job.state == JobState.PENDING, Job.next_attempt_at <= now, *sendable),
        and_(Job.state == JobState.IN_PROGRESS, Job.next_poll_at <= now),
    )
    due_at = case((Job.state == JobState.PENDING, Job.next_attempt_at), else_=Job.next_poll_at)
    oldest: datetime | None = session.scalar(select(func.min(due_at)).where(due))
    return oldest
