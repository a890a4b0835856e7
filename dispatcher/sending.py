"""Sending: claim a job, write the attempt, call the provider, record the answer.

Rules this module keeps (DESIGN.md, correctness rules):

* The attempt row is committed before the provider is called, with a unique reference
  that travels with the fax.
* A send whose answer was lost (timeout, dropped connection, 5xx) may have reached the
  provider. It is settled with ``find_by_reference`` before anything is sent again: at
  once if the provider answers, else the attempt stays ``unsettled`` and the next
  dispatch, or the tick's reconcile, settles it first.
* The database decides: a dispatch message for a job that is not pending, or for an
  attempt number already used, changes nothing.
"""

from __future__ import annotations

import logging
import os
import socket
from datetime import timedelta

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.orm import Session

from dispatcher import guards
from dispatcher.catalogue import classify_transport
from dispatcher.clock import utcnow
from dispatcher.errors import ProviderError, ProviderRateLimited
from dispatcher.lifecycle import JobState, transition, transition_row
from dispatcher.messaging import MAX_COUNTDOWN, publish_dispatch, redelivery_guard
from dispatcher.outcomes import JobRef, apply_decision, decide_for, next_on_route, record_event
from dispatcher.pages import pages_after
from dispatcher.policy import Step
from dispatcher.providers.base import Document, ProviderStatus, SendRequest
from dispatcher.providers.registry import get_adapter
from dispatcher.runtime import document_store, policy
from dispatcher.store.db import session_scope
from dispatcher.store.models import Attempt, Job, JobDocument
from dispatcher.store.models import Document as StoredDocument

__all__ = ["dispatch", "reconcile", "reference_for"]

log = logging.getLogger(__name__)
WORKER = f"{socket.gethostname()}:{os.getpid()}"


# The statements of every attempt, built once: building one costs more than running it.
_INSERT_ATTEMPT = insert(Attempt)
_ATTEMPT_SUBMITTED = (
    update(Attempt)
    .where(Attempt.job_id == bindparam("w_job_id"), Attempt.number == bindparam("w_number"))
    .values(provider_fax_id=bindparam("fax_id"), submitted_at=bindparam("at"), unsettled=False)
)
_DOCUMENTS = (
    select(JobDocument.name, StoredDocument.mime_type, JobDocument.sha256)
    .join(StoredDocument, StoredDocument.sha256 == JobDocument.sha256)
    .where(JobDocument.job_id == bindparam("job_id"))
    .order_by(JobDocument.position)
)


def reference_for(job_id: str, number: int) -> str:
    """The per-attempt reference sent with the fax (unique, at most 60 characters)."""
    return f"fd-{job_id}-{number}"


def _last_attempt(session: Session, job: Job) -> Attempt | None:
    return session.scalars(
        select(Attempt).where(Attempt.job_id == job.id).order_by(Attempt.number.desc()).limit(1)
    ).first()


def dispatch(job_id: str, attempt_number: int, *, task_id: str | None = None) -> str:
    """Make attempt ``attempt_number`` of a pending job. Returns what happened, for logs."""
    with session_scope() as session:
        job = session.get(Job, job_id)
        if job is None:
            return "unknown job"
        if job.state != JobState.PENDING or job.attempt_count + 1 != attempt_number:
            return f"skipped: job is {job.state} at attempt {job.attempt_count}"
        if job.send_at and job.send_at > utcnow():
            return "skipped: not due yet"
        if job.deadline and job.deadline <= utcnow():
            return _expire(session, job)
        last = _last_attempt(session, job) if job.attempt_count else None
        if last is not None and last.unsettled and _settle(session, job, last):
            return "settled an earlier send instead of sending again"
        hold = guards.check_send(job.id, job.to_number, job.provider, bool(next_on_route(job)))
        if hold is not None:
            return _defer(session, job, hold)
        number = job.attempt_count + 1
        if not transition(session, job, JobState.DISPATCHING, attempt_count=number):
            # The line lease belongs to the job, and the winner of the claim (the same
            # job) is about to use it: releasing it here would let another fax dial in.
            return "skipped: claimed by another worker"
        reference = reference_for(job.id, number)
        attempt = {
            "job_id": job.id,
            "number": number,
            "provider": job.provider,
            "reference": reference,
            "task_id": task_id,
            "worker": WORKER,
            "started_at": utcnow(),
        }
        session.connection().execute(_INSERT_ATTEMPT, attempt)
        request = SendRequest(
            job_id=job.id,
            reference=reference,
            to=job.to_number,
            documents=_documents(session, job),
            metadata=job.meta or {},
        )
        provider = job.provider
    # Committed: the attempt exists before the provider hears of it.
    adapter = get_adapter(provider)
    try:
        fax_id = adapter.send(request)
    except ProviderError as exc:
        return _send_failed(job_id, number, exc)
    _record_sent(job_id, provider, number, fax_id, source="dispatch")
    return f"sent as {provider} fax {fax_id}"


def _documents(session: Session, job: Job) -> list[Document]:
    """The job's documents; after a partial send, only the pages not yet delivered."""
    store = document_store()
    rows = session.connection().execute(_DOCUMENTS, {"job_id": job.id})
    documents = [Document(name, mime_type, store.get(sha)) for name, mime_type, sha in rows]
    if job.resend_from_page <= 0:
        return documents
    remaining = pages_after(documents, job.resend_from_page)
    return documents if remaining is None else [remaining]


def _expire(session: Session, job: Job) -> str:
    """The job's deadline passed before it could be attempted again: stop it."""
    state_from = job.state
    reason = f"the deadline {job.deadline:%Y-%m-%d %H:%M:%S} UTC passed before attempt " + str(
        job.attempt_count + 1
    )
    if not transition(session, job, JobState.FAILED, reason=reason, next_attempt_at=None):
        return "skipped: moved meanwhile"
    record_event(session, job, source="dispatch", state_from=state_from, detail=reason)
    return reason


def _defer(session: Session, job: Job, hold: guards.Hold) -> str:
    """Leave the job pending until the hold passes; no worker waits for it."""
    number = job.attempt_count + 1
    values: dict[str, object] = {}
    if hold.failover:
        values["provider"] = next_on_route(job)
        reason, delay = f"{hold.reason}: failing over to {values['provider']}", 0.0
    else:
        until = hold.until
        reason = hold.reason
        delay = hold.wait if until is None else (until - utcnow()).total_seconds()
    delay = max(delay, 0.0)
    short = delay <= MAX_COUNTDOWN
    # A short wait rides on a countdown; the database time then only covers a lost message.
    due = utcnow() + timedelta(seconds=delay) + (redelivery_guard() if short else timedelta())
    state_from = job.state
    if not transition(session, job, JobState.PENDING, reason=reason, next_attempt_at=due, **values):
        return "skipped: moved meanwhile"
    record_event(session, job, source="dispatch", state_from=state_from, detail=reason)
    if short:
        session.commit()
        publish_dispatch([(job.id, number)], countdown=delay or None)
    return f"deferred: {reason}"


def _record_sent(job_id: str, provider: str, number: int, fax_id: str, *, source: str) -> bool:
    """Record the provider's fax id and start polling. False if the job moved meanwhile."""
    with session_scope() as session:
        return _mark_in_progress(session, job_id, provider, number, fax_id, source=source)


def _mark_in_progress(
    session: Session, job_id: str, provider: str, number: int, fax_id: str, *, source: str
) -> bool:
    """Move the job claimed for attempt ``number`` to in progress, by ids: nothing is read."""
    now = utcnow()
    reason = f"accepted by {provider} as fax {fax_id}"
    if not transition_row(
        session,
        job_id,
        JobState.DISPATCHING,
        JobState.IN_PROGRESS,
        expect={"attempt_count": number},
        provider_fax_id=fax_id,
        next_poll_at=now + timedelta(seconds=policy().poll_timing(provider).first),
        last_code=None,
        reason=reason,
    ):
        return False
    session.connection().execute(
        _ATTEMPT_SUBMITTED, {"w_job_id": job_id, "w_number": number, "fax_id": fax_id, "at": now}
    )
    record_event(
        session,
        JobRef(job_id, JobState.IN_PROGRESS),
        source=source,
        state_from=JobState.DISPATCHING,
        detail=reason,
        attempt_number=number,
    )
    return True


def _send_failed(job_id: str, number: int, exc: ProviderError) -> str:
    reference = reference_for(job_id, number)
    found: ProviderStatus | None = None
    unsettled = False
    if exc.maybe_sent:
        found, unsettled = _lookup(job_id, reference)
    if found is not None:
        _record_sent(job_id, exc.provider, number, found.fax_id, source="reconcile")
        return f"answer lost, but the provider has it as fax {found.fax_id}"
    entry = classify_transport(exc.provider, exc.kind)
    retry_after = exc.retry_after if isinstance(exc, ProviderRateLimited) else None
    with session_scope() as session:
        job = session.get_one(Job, job_id)
        attempt = session.scalars(
            select(Attempt).where(Attempt.job_id == job_id, Attempt.number == number)
        ).one()
        attempt.unsettled = unsettled
        decision = decide_for(job, entry, retry_after)
        apply_decision(session, job, attempt, entry, decision, source="dispatch", error=exc.message)
        step, delay, next_number = decision.step, decision.delay, job.attempt_count + 1
    _republish_soon(job_id, next_number, step, delay)
    return f"send failed ({exc.kind}): {decision.reason}"


def _lookup(job_id: str, reference: str) -> tuple[ProviderStatus | None, bool]:
    """Ask the provider for a send by reference: (what it has, whether we still don't know)."""
    with session_scope() as session:
        provider = session.get_one(Job, job_id).provider
    try:
        return get_adapter(provider).find_by_reference(reference), False
    except ProviderError as lookup_error:
        log.warning("job %s: cannot settle %s yet: %s", job_id, reference, lookup_error)
        return None, True


def _republish_soon(job_id: str, next_number: int, step: Step, delay: float | None) -> None:
    """Short waits ride on a countdown; longer ones wait in the database for the tick."""
    if step is Step.RETRY and delay is not None and delay <= MAX_COUNTDOWN:
        try:
            publish_dispatch([(job_id, next_number)], countdown=delay)
        except Exception:  # the tick publishes it anyway once next_attempt_at is due
            log.warning("job %s: could not publish the retry; the tick will", job_id)


def _settle(session: Session, job: Job, attempt: Attempt) -> bool:
    """Settle an unsettled attempt before a new send. True if the provider had it.

    A provider that cannot answer raises ``ProviderError``: nothing is sent, and the tick
    offers the job again later.
    """
    found = get_adapter(job.provider).find_by_reference(attempt.reference)
    attempt.unsettled = False
    if found is None:
        attempt.error = f"{attempt.error or 'no answer'} (the provider has no such send)"
        return False
    # The earlier send did reach the provider: follow that fax instead of sending again.
    return transition(session, job, JobState.DISPATCHING) and _mark_in_progress(
        session, job.id, job.provider, attempt.number, found.fax_id, source="reconcile"
    )


def reconcile(job_id: str) -> str:
    """Settle a job left in ``dispatching`` (its worker died mid-send): follow the fax if
    the provider has it, else treat the attempt as lost and let the policy retry it."""
    with session_scope() as session:
        job = session.get(Job, job_id)
        if job is None or job.state != JobState.DISPATCHING:
            return "nothing to reconcile"
        provider, number = job.provider, job.attempt_count
    found = get_adapter(provider).find_by_reference(reference_for(job_id, number))
    if found is not None:
        if _record_sent(job_id, provider, number, found.fax_id, source="reconcile"):
            return f"found the send at the provider as fax {found.fax_id}"
        return "moved meanwhile"
    with session_scope() as session:
        job = session.get_one(Job, job_id)
        if job.state != JobState.DISPATCHING or job.attempt_count != number:
            return "moved meanwhile"
        attempt = session.scalars(
            select(Attempt).where(Attempt.job_id == job_id, Attempt.number == number)
        ).one()
        entry = classify_transport(provider, "lost")
        decision = decide_for(job, entry)
        apply_decision(
            session,
            job,
            attempt,
            entry,
            decision,
            source="reconcile",
            error="the worker stopped before the provider accepted the fax",
        )
        step, delay, next_number = decision.step, decision.delay, job.attempt_count + 1
    _republish_soon(job_id, next_number, step, delay)
    return f"not at the provider: {decision.reason}"
