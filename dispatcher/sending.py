"""Sending: claim jobs, write their attempts, call the provider, record the answers.

Rules this module keeps (DESIGN.md, correctness rules):

* The attempt row is committed before the provider is called, with a unique reference
  that travels with the fax.
* A send whose answer was lost (timeout, dropped connection, 5xx) may have reached the
  provider. It is settled with ``find_by_reference`` before anything is sent again: at
  once if the provider answers, else the attempt stays ``unsettled`` and the next
  dispatch, or the tick's reconcile, settles it first.
* The database decides: a dispatch message for a job that is not pending, or for an
  attempt number already used, changes nothing.

Attempts come in batches: a tick or a bulk submit publishes fifty per message, a single
retry is a batch of one. A batch is read in one query, checked against the guards in one
Redis round trip, claimed in one transaction, and its answers are recorded in one
transaction per wave of finished sends: per fax, that bookkeeping costs more than the
provider call. The sends run on the process's send pool (``dispatcher.sendpool``), and a
job is only claimed once a send slot is reserved for it.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import Connection, Row, bindparam, insert, select, update
from sqlalchemy.orm import Session

from dispatcher import guards
from dispatcher.catalogue import classify_transport
from dispatcher.clock import utcnow
from dispatcher.errors import ProviderError, ProviderRateLimited
from dispatcher.lifecycle import JobState, transition, transition_row
from dispatcher.messaging import MAX_COUNTDOWN, publish_dispatch, redelivery_guard
from dispatcher.outcomes import (
    JobRef,
    apply_decision,
    decide_for,
    event_row,
    next_on_route,
    record_event,
    record_events,
)
from dispatcher.pages import pages_after
from dispatcher.policy import Step
from dispatcher.providers.base import Document, ProviderStatus, SendRequest
from dispatcher.providers.registry import get_adapter
from dispatcher.runtime import document_store, policy
from dispatcher.sendpool import SendPool, send_pool
from dispatcher.store.db import get_engine, session_scope
from dispatcher.store.models import Attempt, Job, JobDocument
from dispatcher.store.models import Document as StoredDocument

__all__ = ["dispatch", "reconcile", "reference_for"]

log = logging.getLogger(__name__)
WORKER = f"{socket.gethostname()}:{os.getpid()}"

#: Seconds a batch waits for a free send slot before it leaves its remaining jobs to the
#: tick (the threads pool enforces no task time limit: this bound is the batch's own).
SLOT_PATIENCE = 60.0

#: Longest a finished send waits for the rest of its wave before it is recorded: an
#: unrecorded send stays ``dispatching``, where the reconcile would look for it.
WAVE_WAIT = 1.0

# The statements of every batch, built once: building one costs more than running it.
_IDS = bindparam("ids", expanding=True)
_CANDIDATES = select(
    Job.id,
    Job.state,
    Job.version,
    Job.attempt_count,
    Job.send_at,
    Job.deadline,
    Job.provider,
    Job.route,
    Job.to_number,
    Job.meta.label("meta"),
    Job.resend_from_page,
).where(Job.id.in_(_IDS))
_UNSETTLED = select(Attempt.job_id).where(Attempt.job_id.in_(_IDS), Attempt.unsettled.is_(True))
_DOCUMENTS = (
    select(JobDocument.job_id, JobDocument.name, StoredDocument.mime_type, JobDocument.sha256)
    .join(StoredDocument, StoredDocument.sha256 == JobDocument.sha256)
    .where(JobDocument.job_id.in_(_IDS))
    .order_by(JobDocument.job_id, JobDocument.position)
)
_INSERT_ATTEMPT = insert(Attempt)
_ATTEMPT_SUBMITTED = (
    update(Attempt)
    .where(Attempt.job_id == bindparam("w_job_id"), Attempt.number == bindparam("w_number"))
    .values(provider_fax_id=bindparam("fax_id"), submitted_at=bindparam("at"), unsettled=False)
)


class _Claim(NamedTuple):
    """A claimed attempt whose row is committed: ready for the provider."""

    job_id: str
    number: int
    provider: str
    request: SendRequest


class _Sent(NamedTuple):
    """A send the provider accepted, not yet recorded."""

    job_id: str
    provider: str
    number: int
    fax_id: str


def reference_for(job_id: str, number: int) -> str:
    """The per-attempt reference sent with the fax (unique, at most 60 characters)."""
    return f"fd-{job_id}-{number}"


def _last_attempt(session: Session, job: Job) -> Attempt | None:
    return session.scalars(
        select(Attempt).where(Attempt.job_id == job.id).order_by(Attempt.number.desc()).limit(1)
    ).first()


def dispatch(attempts: Sequence[tuple[str, int]], *, task_id: str | None = None) -> dict[str, str]:
    """Make each attempt (job id, attempt number) of a pending job. Returns what happened
    to each job, for logs."""
    outcomes: dict[str, str] = {}
    waiting = list(dict.fromkeys((str(job_id), int(number)) for job_id, number in attempts))
    pool = send_pool()
    in_flight: dict[Future[_Sent | str], _Claim] = {}
    failure: Exception | None = None
    give_up = time.monotonic() + SLOT_PATIENCE
    while waiting or in_flight:
        patience = 0.0 if in_flight else give_up - time.monotonic()
        room = pool.reserve(len(waiting), wait=patience) if waiting else 0
        if waiting and not room and not in_flight:
            # Busy with other batches for too long: the jobs stay pending, and the tick
            # offers them again (their next_attempt_at is the redelivery guard).
            outcomes.update((job_id, "skipped: no free send slot") for job_id, _ in waiting)
            break
        if room:
            chunk, waiting = waiting[:room], waiting[room:]
            claims: list[_Claim] = []
            try:
                claims = _claim(chunk, task_id, outcomes)
            except Exception as exc:  # a broker or database outage: claim nothing more,
                failure, waiting = exc, []  # but record the sends already made
            finally:  # and never keep the slots reserved
                pool.release(room - len(claims))
            in_flight.update((pool.submit(_send, claim), claim) for claim in claims)
        if in_flight:
            _wait_for_wave(pool, in_flight, len(waiting))
            done = [future for future in in_flight if future.done()]
            _record_wave([(in_flight.pop(future), future) for future in done], outcomes)
    if failure is not None:
        raise failure
    return outcomes


def _wait_for_wave(pool: SendPool, in_flight: dict[Future[Any], _Claim], waiting: int) -> None:
    """Wait until half the batch's sends in flight are done, or, while it has jobs left
    to claim, until enough send slots are free to claim some, but never more than
    ``WAVE_WAIT``: answers are recorded and jobs claimed in batches rather than one fax
    at a time, a finished send is recorded soon whatever the others do, and no slot
    stays idle for long while a batch has work for it."""
    enough = min(waiting, max(1, pool.size // 10))

    def ready() -> bool:
        if enough and pool.free >= enough:
            return True
        return 2 * sum(future.done() for future in in_flight) >= len(in_flight)

    pool.wait_until(ready, timeout=WAVE_WAIT)


def _record_wave(
    finished: list[tuple[_Claim, Future[_Sent | str]]], outcomes: dict[str, str]
) -> None:
    """Record the sends of a wave that the providers accepted, in one transaction."""
    accepted: list[_Sent] = []
    for claim, future in finished:
        try:
            result = future.result()
        except Exception as exc:  # the job stays dispatching: the tick's reconcile settles it
            log.exception("job %s: attempt %s failed unexpectedly", claim.job_id, claim.number)
            outcomes[claim.job_id] = f"error: {exc}"
            continue
        if isinstance(result, _Sent):
            accepted.append(result)
        else:
            outcomes[claim.job_id] = result
    for sent, recorded in zip(accepted, _record_sent(accepted, source="dispatch"), strict=True):
        outcomes[sent.job_id] = (
            f"sent as {sent.provider} fax {sent.fax_id}" if recorded else "sent; moved meanwhile"
        )


def _claim(
    chunk: Sequence[tuple[str, int]], task_id: str | None, outcomes: dict[str, str]
) -> list[_Claim]:
    """Claim the jobs of ``chunk`` that may be sent now. Every other job gets its outcome:
    skipped, expired, settled, or deferred by a guard."""
    now = utcnow()
    with get_engine().connect() as connection:
        rows = {
            row.id: row for row in connection.execute(_CANDIDATES, {"ids": [j for j, _ in chunk]})
        }
        retried = [job_id for job_id, row in rows.items() if row.attempt_count]
        unsettled = set(connection.scalars(_UNSETTLED, {"ids": retried})) if retried else set()
    ready: list[Row[Any]] = []
    for job_id, number in chunk:
        row = rows.get(job_id)
        if row is None:
            outcomes[job_id] = "unknown job"
        elif row.state != JobState.PENDING or row.attempt_count + 1 != number:
            outcomes[job_id] = f"skipped: job is {row.state} at attempt {row.attempt_count}"
        elif row.send_at and row.send_at > now:
            outcomes[job_id] = "skipped: not due yet"
        elif row.deadline and row.deadline <= now:
            outcomes[job_id] = _on_job(job_id, number, _expire)
        elif job_id in unsettled and (settled := _settle_earlier(job_id, number)):
            outcomes[job_id] = settled
        else:
            ready.append(row)
    sends = [
        guards.Send(row.id, row.to_number, row.provider, next_on_route(row) is not None)
        for row in ready
    ]
    allowed: list[Row[Any]] = []
    for row, hold in zip(ready, guards.check_sends(sends), strict=True):
        if hold is None:
            allowed.append(row)
        else:
            outcomes[row.id] = _on_job(
                row.id, row.attempt_count + 1, lambda s, job, h=hold: _defer(s, job, h)
            )
    return _claim_rows(allowed, task_id, outcomes) if allowed else []


def _claim_rows(
    rows: list[Row[Any]], task_id: str | None, outcomes: dict[str, str]
) -> list[_Claim]:
    """Move the jobs to dispatching and write their attempt rows, in one transaction.

    A job whose claim fails keeps the line it took: a line lease belongs to the job, and
    another delivery of the same job may hold it and be about to dial. Releasing it here
    would let another fax dial in; it expires by itself, or the job renews it."""
    claimed: list[Row[Any]] = []
    # In id order, so two workers claiming overlapping batches never deadlock.
    rows = sorted(rows, key=lambda row: row.id)
    # Read first: a document that cannot be read claims nothing (and burns no attempt).
    documents = _documents(rows)
    with get_engine().begin() as connection:
        for row in rows:
            if transition_row(
                connection,
                row.id,
                JobState.PENDING,
                JobState.DISPATCHING,
                expect={"version": row.version},
                attempt_count=row.attempt_count + 1,
            ):
                claimed.append(row)
            else:
                outcomes[row.id] = "skipped: moved meanwhile"
        if claimed:
            started = utcnow()
            connection.execute(
                _INSERT_ATTEMPT, [_attempt_row(row, task_id, started) for row in claimed]
            )
    # Committed: the attempts exist before any provider hears of them.
    return [
        _Claim(
            row.id,
            row.attempt_count + 1,
            row.provider,
            SendRequest(
                job_id=row.id,
                reference=reference_for(row.id, row.attempt_count + 1),
                to=row.to_number,
                documents=documents[row.id],
                metadata=row.meta or {},
            ),
        )
        for row in claimed
    ]


def _attempt_row(row: Row[Any], task_id: str | None, started: datetime) -> dict[str, Any]:
    number = row.attempt_count + 1
    return {
        "job_id": row.id,
        "number": number,
        "provider": row.provider,
        "reference": reference_for(row.id, number),
        "task_id": task_id,
        "worker": WORKER,
        "started_at": started,
    }


def _documents(rows: list[Row[Any]]) -> dict[str, list[Document]]:
    """Each job's documents; after a partial send, only the pages not yet delivered."""
    store = document_store()
    documents: dict[str, list[Document]] = defaultdict(list)
    with get_engine().connect() as connection:
        stored = connection.execute(_DOCUMENTS, {"ids": [row.id for row in rows]}).all()
    for job_id, name, mime_type, sha in stored:
        documents[job_id].append(Document(name, mime_type, store.get(sha)))
    for row in rows:
        if row.resend_from_page > 0:
            remaining = pages_after(documents[row.id], row.resend_from_page)
            if remaining is not None:
                documents[row.id] = [remaining]
    return documents


def _send(claim: _Claim) -> _Sent | str:
    """Call the provider (on a send slot). A failure is dealt with here, in parallel with
    the batch's other sends; an accepted fax goes back to be recorded with its wave."""
    try:
        fax_id = get_adapter(claim.provider).send(claim.request)
    except ProviderError as exc:
        return _send_failed(claim.job_id, claim.number, exc)
    return _Sent(claim.job_id, claim.provider, claim.number, fax_id)


def _on_job(job_id: str, number: int, step: Callable[[Session, Job], str]) -> str:
    """Run a step that needs the whole job (the uncommon paths), if the job is still
    pending for attempt ``number``."""
    with session_scope() as session:
        job = session.get(Job, job_id)
        if job is None or job.state != JobState.PENDING or job.attempt_count + 1 != number:
            return "skipped: moved meanwhile"
        return step(session, job)


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
        values["resend_from_page"] = 0  # the next provider has none of the pages
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
        _republish_soon(job.id, number, delay)
    return f"deferred: {reason}"


def _record_sent(sends: Sequence[_Sent], *, source: str) -> list[bool]:
    """Record the providers' fax ids and start polling, in one transaction. For each
    send, False if its job moved meanwhile."""
    if not sends:
        return []
    with get_engine().begin() as connection:
        return _mark_in_progress(connection, sends, source=source)


def _mark_in_progress(connection: Connection, sends: Sequence[_Sent], *, source: str) -> list[bool]:
    """Move each job claimed for the send's attempt to in progress, by ids: nothing is read."""
    now = utcnow()
    moved: list[bool] = []
    for sent in sends:
        moved.append(
            transition_row(
                connection,
                sent.job_id,
                JobState.DISPATCHING,
                JobState.IN_PROGRESS,
                expect={"attempt_count": sent.number},
                provider_fax_id=sent.fax_id,
                next_poll_at=now + timedelta(seconds=policy().poll_timing(sent.provider).first),
                last_code=None,
                reason=_accepted(sent),
            )
        )
    recorded = [sent for sent, ok in zip(sends, moved, strict=True) if ok]
    if recorded:
        connection.execute(
            _ATTEMPT_SUBMITTED,
            [
                {"w_job_id": s.job_id, "w_number": s.number, "fax_id": s.fax_id, "at": now}
                for s in recorded
            ],
        )
        record_events(
            connection,
            [
                event_row(
                    JobRef(sent.job_id, JobState.IN_PROGRESS),
                    source=source,
                    state_from=JobState.DISPATCHING,
                    detail=_accepted(sent),
                    attempt_number=sent.number,
                )
                for sent in recorded
            ],
        )
    return moved


def _accepted(sent: _Sent) -> str:
    return f"accepted by {sent.provider} as fax {sent.fax_id}"


def _send_failed(job_id: str, number: int, exc: ProviderError) -> str:
    reference = reference_for(job_id, number)
    found: ProviderStatus | None = None
    unsettled = False
    if exc.maybe_sent:
        found, unsettled = _lookup(job_id, reference)
    if found is not None:
        _record_sent([_Sent(job_id, exc.provider, number, found.fax_id)], source="reconcile")
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
    _retry_soon(job_id, next_number, step, delay)
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


def _retry_soon(job_id: str, next_number: int, step: Step, delay: float | None) -> None:
    """Short waits ride on a countdown; longer ones wait in the database for the tick."""
    if step is Step.RETRY and delay is not None and delay <= MAX_COUNTDOWN:
        _republish_soon(job_id, next_number, delay)


def _republish_soon(job_id: str, number: int, delay: float) -> None:
    try:
        publish_dispatch([(job_id, number)], countdown=delay or None)
    except Exception:  # the tick publishes it anyway once next_attempt_at is due
        log.warning("job %s: could not publish attempt %s; the tick will", job_id, number)


def _settle_earlier(job_id: str, number: int) -> str | None:
    """Settle the job's unsettled attempt before sending again: what happened, or None
    when the provider never had that send (then the job may go)."""
    try:
        with session_scope() as session:
            job = session.get_one(Job, job_id)
            attempt = _last_attempt(session, job)
            if attempt is not None and attempt.unsettled and _settle(session, job, attempt):
                return "settled an earlier send instead of sending again"
    except ProviderError as exc:  # nothing is sent; the tick offers the job again later
        return f"skipped: cannot settle attempt {number - 1} yet: {exc}"
    return None


def _settle(session: Session, job: Job, attempt: Attempt) -> bool:
    """Settle an unsettled attempt before a new send. True if the provider had it.

    A provider that cannot answer raises ``ProviderError``.
    """
    found = get_adapter(job.provider).find_by_reference(attempt.reference)
    attempt.unsettled = False
    if found is None:
        attempt.error = f"{attempt.error or 'no answer'} (the provider has no such send)"
        return False
    # The earlier send did reach the provider: follow that fax instead of sending again.
    sent = _Sent(job.id, job.provider, attempt.number, found.fax_id)
    return (
        transition(session, job, JobState.DISPATCHING)
        and _mark_in_progress(session.connection(), [sent], source="reconcile")[0]
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
        if _record_sent([_Sent(job_id, provider, number, found.fax_id)], source="reconcile")[0]:
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
    _retry_soon(job_id, next_number, step, delay)
    return f"not at the provider: {decision.reason}"
