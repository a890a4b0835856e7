"""Tracking: apply each status a provider reports (poll or webhook) to its job.

Polls read statuses in batches per provider; webhooks arrive one by one. Both go through
``apply_status``, which ignores statuses for faxes the job no longer follows, records
each distinct status once, and hands the classified code to the policy.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from dispatcher import guards
from dispatcher.catalogue import Provider, classify
from dispatcher.clock import utcnow
from dispatcher.errors import ProviderError
from dispatcher.lifecycle import JobState, transition
from dispatcher.outcomes import apply_decision, decide_for, record_event
from dispatcher.policy import Step
from dispatcher.providers.base import ProviderStatus
from dispatcher.providers.registry import get_adapter
from dispatcher.runtime import policy
from dispatcher.sending import reference_for
from dispatcher.store.db import session_scope
from dispatcher.store.models import Attempt, Job, StatusEvent

__all__ = ["apply_status", "apply_webhook", "poll"]

log = logging.getLogger(__name__)


def poll(provider: str, job_ids: Sequence[str]) -> int:
    """Read the status of many jobs' faxes in one provider call; returns how many changed."""
    with session_scope() as session:
        rows = session.execute(
            select(Job.id, Job.provider_fax_id).where(
                Job.id.in_(job_ids),
                Job.provider == provider,
                Job.state == JobState.IN_PROGRESS,
                Job.provider_fax_id.is_not(None),
            )
        ).all()
    by_fax = {fax_id: job_id for job_id, fax_id in rows}
    if not by_fax:
        return 0
    circuit = guards.breaker(provider)
    if not circuit.allow():
        _poll_later(provider, list(by_fax.values()), "circuit open", circuit.status().retry_in)
        return 0
    wait = guards.status_read_wait(provider)
    if wait > 0:
        _poll_later(provider, list(by_fax.values()), "status read rate limit", wait)
        return 0
    try:
        statuses = get_adapter(provider).statuses(list(by_fax))
    except ProviderError as exc:
        _poll_later(
            provider, list(by_fax.values()), str(exc), getattr(exc, "retry_after", None) or 0.0
        )
        return 0
    changed = 0
    for fax_id, status in statuses.items():
        job_id = by_fax.get(fax_id)
        if job_id is None:
            continue
        with session_scope() as session:
            job = session.get_one(Job, job_id)
            changed += apply_status(session, job, status, source="poll")
    return changed


def _poll_later(provider: str, job_ids: list[str], why: str, wait: float) -> None:
    """A status read that cannot happen now is not a failed fax: read again later."""
    log.info("%s: %d status reads postponed: %s", provider, len(job_ids), why)
    delay = max(wait, policy().poll_timing(provider).interval)
    with session_scope() as session:
        session.execute(
            update(Job)
            .where(Job.id.in_(job_ids), Job.state == JobState.IN_PROGRESS)
            .values(next_poll_at=utcnow() + timedelta(seconds=delay))
        )


def _current_attempt(session: Session, job: Job) -> Attempt | None:
    return session.scalars(
        select(Attempt).where(Attempt.job_id == job.id, Attempt.number == job.attempt_count)
    ).first()


def apply_status(
    session: Session,
    job: Job,
    status: ProviderStatus,
    *,
    source: str,
    dedupe_key: str | None = None,
) -> bool:
    """Apply one status reading to its job. False when it changes nothing."""
    if job.state != JobState.IN_PROGRESS or job.provider_fax_id != status.fax_id:
        return False
    entry = classify(job.provider, status.code)
    if not entry.known:
        log.warning(
            "job %s: unlisted %s code %r, using the safe default", job.id, job.provider, status.code
        )
    decision = decide_for(job, entry)
    attempt = _current_attempt(session, job)
    if (
        decision.step is Step.RETRY
        and job.provider == Provider.OPTUM
        and attempt is not None
        and attempt.kind == "send"
        and entry.code.startswith("FaxFailed")
    ):
        return _optum_manual_retry(session, job, attempt, status, source)
    return apply_decision(
        session,
        job,
        attempt,
        entry,
        decision,
        source=source,
        status=status,
        dedupe_key=dedupe_key,
    )


def _optum_manual_retry(
    session: Session, job: Job, attempt: Attempt, status: ProviderStatus, source: str
) -> bool:
    """Optum's own retries are spent: use its one manual retry before sending anew.

    The retry resends Optum's copy of the fax, so it is recorded as a new attempt of kind
    ``provider_retry`` that follows the same provider fax id.
    """
    entry = classify(job.provider, status.code)
    adapter = get_adapter(job.provider)
    try:
        adapter.retry(job.provider_fax_id)  # type: ignore[attr-defined]
    except ProviderError as exc:
        log.warning("job %s: Optum manual retry refused (%s); sending anew", job.id, exc)
        return apply_decision(
            session, job, attempt, entry, decide_for(job, entry), source=source, status=status
        )
    number = job.attempt_count + 1
    state_from = job.state
    reason = f"optum {entry.code}: asked Optum for its one manual retry"
    if not transition(
        session,
        job,
        JobState.IN_PROGRESS,
        attempt_count=number,
        last_code=entry.code,
        last_outcome=entry.outcome.value,
        last_remediation=entry.remediation.value,
        reason=reason,
        next_poll_at=utcnow() + timedelta(seconds=policy().poll_timing(job.provider).first),
    ):
        return False
    attempt.finished_at = utcnow()
    attempt.status_code = entry.code
    attempt.outcome = entry.outcome.value
    attempt.remediation = entry.remediation.value
    session.add(
        Attempt(
            job_id=job.id,
            number=number,
            kind="provider_retry",
            provider=job.provider,
            reference=reference_for(job.id, number),
            provider_fax_id=job.provider_fax_id,
            started_at=utcnow(),
            submitted_at=utcnow(),
        )
    )
    record_event(
        session,
        job,
        source=source,
        state_from=state_from,
        detail=reason,
        entry=entry,
        attempt_number=attempt.number,
        payload=dict(status.raw),
    )
    return True


def apply_webhook(provider: str, statuses: Iterable[ProviderStatus], event_id: str | None) -> int:
    """Apply statuses from a verified provider callback; a replayed event changes nothing."""
    changed = 0
    for index, status in enumerate(statuses):
        dedupe = f"{provider}:{event_id}:{index}" if event_id else None
        with session_scope() as session:
            if dedupe and session.scalar(
                select(StatusEvent.id).where(StatusEvent.dedupe_key == dedupe)
            ):
                continue
            job = session.scalars(
                select(Job).where(Job.provider == provider, Job.provider_fax_id == status.fax_id)
            ).first()
            if job is not None:
                changed += apply_status(session, job, status, source="webhook", dedupe_key=dedupe)
    return changed
