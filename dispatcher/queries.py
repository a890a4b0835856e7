"""Reading jobs back: the views that the client, ``faxctl`` and the HTTP API show."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from dispatcher.errors import JobNotFound
from dispatcher.lifecycle import FINAL_STATES
from dispatcher.store.db import session_scope
from dispatcher.store.models import Attempt, Job, StatusEvent

__all__ = [
    "attempt_view",
    "attempts",
    "count_final",
    "event_view",
    "events",
    "get_job",
    "job_view",
    "list_jobs",
]


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


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
        "created_at": _iso(job.created_at),
        "updated_at": _iso(job.updated_at),
        "finished_at": _iso(job.finished_at),
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
        "observed_at": _iso(event.observed_at),
    }


def get_job(job_id: str) -> dict[str, Any]:
    with session_scope() as session:
        job = session.get(Job, job_id)
        if job is None:
            raise JobNotFound(job_id)
        return job_view(job)


def attempts(job_id: str) -> list[dict[str, Any]]:
    with session_scope() as session:
        if session.get(Job, job_id) is None:
            raise JobNotFound(job_id)
        rows = session.scalars(
            select(Attempt).where(Attempt.job_id == job_id).order_by(Attempt.number)
        )
        return [attempt_view(a) for a in rows]


def events(job_id: str) -> list[dict[str, Any]]:
    with session_scope() as session:
        if session.get(Job, job_id) is None:
            raise JobNotFound(job_id)
        rows = session.scalars(
            select(StatusEvent).where(StatusEvent.job_id == job_id).order_by(StatusEvent.id)
        )
        return [event_view(e) for e in rows]


def list_jobs(
    state: str | None = None,
    provider: str | None = None,
    since: datetime | None = None,
    limit: int = 50,
    before: str | None = None,
) -> list[dict[str, Any]]:
    """Newest first; ``before`` is the last id of the previous page (keyset pagination)."""
    query = select(Job).order_by(Job.created_at.desc(), Job.id.desc()).limit(limit)
    if state:
        query = query.where(Job.state == state)
    if provider:
        query = query.where(Job.provider == provider)
    if since:
        query = query.where(Job.created_at >= since)
    with session_scope() as session:
        if before:
            anchor = session.get(Job, before)
            if anchor is None:
                raise JobNotFound(before)
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
