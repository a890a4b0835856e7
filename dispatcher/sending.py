"""Sending: claim jobs, write their attempts, call the provider, record the answers.

Rules this module keeps (docs/DESIGN.md, correctness rules):

* The attempt row is committed before the provider is called, with a unique reference
  that travels with the fax.
* A send whose answer was lost (timeout, dropped connection, 5xx, a worker that died)
  may have reached the provider, or may still reach it: a provider can finish accepting
  a request after its client gave up. Such an attempt stays ``unsettled``, and the job
  waits: it is looked up by reference again before anything is sent, and only a lookup
  made FAX_SETTLE_DELAY after the answer was lost may settle it as never sent.
* A provider fax id we receive is never dropped: a late answer, however late, makes the
  job follow that fax (``_follow``).
* A worker renews the dispatch lease of every job it is sending (``dispatcher.leases``),
  so a slow send is never reconciled as lost while its worker still waits for it.
* The database decides: a dispatch message for a job that is not pending, or for an
  attempt number already used, changes nothing.
* One bad job never holds up the others: a job whose documents cannot be read, or whose
  provider cannot be reached with the configured credentials, is held with the reason,
  alone.

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
from functools import partial
from typing import Any, NamedTuple

from sqlalchemy import BindParameter, Connection, Row, bindparam, insert, select, update
from sqlalchemy.orm import Session

from dispatcher import guards, pauses
from dispatcher.catalogue import classify_transport
from dispatcher.context import Context, current
from dispatcher.effects import after_commit_batched
from dispatcher.errors import (
    ConfigurationError,
    DocumentUnavailable,
    ProviderError,
    ProviderRateLimited,
)
from dispatcher.lanes import Priority
from dispatcher.lifecycle import FINAL_STATES, EventSource, JobState, transition, transition_row
from dispatcher.messaging import MAX_COUNTDOWN, redelivery_guard
from dispatcher.outcomes import (
    JobRef,
    apply_decision,
    decide_for,
    event_row,
    record_event,
    record_events,
)
from dispatcher.pages import pages_after
from dispatcher.policy import Step
from dispatcher.providers.base import Document, ProviderStatus, SendRequest
from dispatcher.routing import next_provider
from dispatcher.sendpool import SendPool
from dispatcher.store.models import Attempt, Job, JobDocument
from dispatcher.store.models import Document as StoredDocument

__all__ = ["dispatch", "follow_lost_send", "reconcile", "reference_for"]

log = logging.getLogger(__name__)
WORKER = f"{socket.gethostname()}:{os.getpid()}"

#: Seconds a batch waits for a free send slot before it leaves its remaining jobs to the
#: tick (the threads pool enforces no task time limit: this bound is the batch's own).
SLOT_PATIENCE = 60.0

#: Seconds a job waits when the document store cannot answer, before it is tried again.
STORE_PATIENCE = 60.0

#: Longest a finished send waits for the rest of its wave before it is recorded: an
#: unrecorded send stays ``dispatching``, where the reconcile would look for it.
WAVE_WAIT = 1.0

# The statements of every batch, built once: building one costs more than running it.
_IDS: BindParameter[list[str]] = bindparam("ids", expanding=True)
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
_STATES = select(Job.id, Job.state, Job.to_number).where(Job.id.in_(_IDS))
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
    started_at: datetime


class _Sent(NamedTuple):
    """A send the provider accepted, not yet recorded."""

    job_id: str
    provider: str
    number: int
    fax_id: str


def reference_for(job_id: str, number: int) -> str:
    """The per-attempt reference sent with the fax (unique, at most 60 characters)."""
    return f"fd-{job_id}-{number}"


def _attempt(session: Session, job_id: str, number: int) -> Attempt:
    return session.scalars(
        select(Attempt).where(Attempt.job_id == job_id, Attempt.number == number)
    ).one()


def _last_attempt(session: Session, job: Job) -> Attempt | None:
    return session.scalars(
        select(Attempt).where(Attempt.job_id == job.id).order_by(Attempt.number.desc()).limit(1)
    ).first()


def dispatch(
    attempts: Sequence[tuple[str, int]],
    *,
    task_id: str | None = None,
    ctx: Context | None = None,
) -> dict[str, str]:
    """Make each attempt (job id, attempt number) of a pending job. Returns what happened
    to each job, for logs."""
    ctx = ctx or current()
    outcomes: dict[str, str] = {}
    waiting = list(dict.fromkeys((str(job_id), int(number)) for job_id, number in attempts))
    pool = ctx.pool
    leases = ctx.leases
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
                claims = _claim(ctx, chunk, task_id, outcomes)
            except Exception as exc:  # a broker or database outage: claim nothing more,
                failure, waiting = exc, []  # but record the sends already made
            finally:  # and never keep the slots reserved
                pool.release(room - len(claims))
            leases.hold(claim.job_id for claim in claims)
            in_flight.update((pool.submit(partial(_send, ctx), claim), claim) for claim in claims)
        if in_flight:
            _wait_for_wave(pool, in_flight, len(waiting))
            done = [future for future in in_flight if future.done()]
            finished = [(in_flight.pop(future), future) for future in done]
            try:
                _record_wave(ctx, finished, outcomes)
            finally:  # recorded, or left to the reconcile: no longer this worker's
                leases.release(claim.job_id for claim, _ in finished)
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
    ctx: Context, finished: list[tuple[_Claim, Future[_Sent | str]]], outcomes: dict[str, str]
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
    for sent, followed in zip(
        accepted, _follow(ctx, accepted, source=EventSource.DISPATCH), strict=True
    ):
        outcomes[sent.job_id] = (
            f"sent as {sent.provider} fax {sent.fax_id}" if followed else "sent; moved meanwhile"
        )


def _claim(
    ctx: Context, chunk: Sequence[tuple[str, int]], task_id: str | None, outcomes: dict[str, str]
) -> list[_Claim]:
    """Claim the jobs of ``chunk`` that may be sent now. Every other job gets its outcome:
    skipped, expired, settled, held, or deferred by a guard."""
    now = ctx.now()
    with ctx.engine.connect() as connection:
        rows = {
            row.id: row for row in connection.execute(_CANDIDATES, {"ids": [j for j, _ in chunk]})
        }
        retried = [job_id for job_id, row in rows.items() if row.attempt_count]
        unsettled = set(connection.scalars(_UNSETTLED, {"ids": retried})) if retried else set()
        paused = pauses.current(connection)
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
            outcomes[job_id] = _on_job(ctx, job_id, number, partial(_expire, ctx))
        elif job_id in unsettled:
            outcomes[job_id] = _settle_earlier(ctx, job_id, number)
        elif waiting := pauses.paused_reason(paused, row.provider, job_id):
            outcomes[job_id] = _on_job(
                ctx, job_id, number, partial(_wait_paused, ctx, reason=waiting)
            )
        else:
            ready.append(row)
    ready, documents = _sendable(ctx, ready, outcomes)
    sends = [
        guards.Send(
            row.id, row.to_number, row.provider, next_provider(row.route, row.provider) is not None
        )
        for row in ready
    ]
    allowed: list[Row[Any]] = []
    for row, hold in zip(ready, ctx.guards.check_sends(sends), strict=True):
        if hold is None:
            allowed.append(row)
        else:
            outcomes[row.id] = _on_job(
                ctx, row.id, row.attempt_count + 1, partial(_defer, ctx, hold=hold)
            )
    return _claim_rows(ctx, allowed, documents, task_id, outcomes) if allowed else []


def _sendable(
    ctx: Context, rows: list[Row[Any]], outcomes: dict[str, str]
) -> tuple[list[Row[Any]], dict[str, list[Document]]]:
    """The rows whose provider can be reached and whose documents can be read, with those
    documents, before any takes a line. Each other job is dealt with alone: held with the
    reason when an operator must act (no credentials, a document gone), left pending a
    while when the document store cannot answer now."""
    problems: dict[str, DocumentUnavailable | str] = {}
    for provider in {row.provider for row in rows}:
        try:
            ctx.adapter(provider)
        except ConfigurationError as exc:
            reason = f"{provider} cannot send: {exc}"
            problems.update((row.id, reason) for row in rows if row.provider == provider)
    documents, unreadable = _documents(ctx, [row for row in rows if row.id not in problems])
    problems.update(unreadable)
    for row in rows:
        problem = problems.get(row.id)
        if problem is None:
            continue
        step: Callable[[Session, Job], str]
        if isinstance(problem, DocumentUnavailable) and not problem.permanent:
            reason = f"the document store cannot answer: {problem.reason}"
            step = partial(_defer, ctx, hold=guards.Hold(reason, wait=STORE_PATIENCE))
        else:
            log.warning("job %s: held: cannot be sent: %s", row.id, problem)
            step = partial(_hold, ctx, reason=f"cannot be sent: {problem}")
        outcomes[row.id] = _on_job(ctx, row.id, row.attempt_count + 1, step)
    return [row for row in rows if row.id not in problems], documents


def _claim_rows(
    ctx: Context,
    rows: list[Row[Any]],
    documents: dict[str, list[Document]],
    task_id: str | None,
    outcomes: dict[str, str],
) -> list[_Claim]:
    """Move the jobs to dispatching and write their attempt rows, in one transaction.

    A job whose claim fails keeps the line it took, unless it has ended (a cancel beat
    the claim): a line lease belongs to the job, and another delivery of the same job may
    hold it and be about to dial. Releasing it then would let another fax dial in; it
    expires by itself, or the job renews it."""
    claimed: list[Row[Any]] = []
    missed: list[str] = []
    # In id order, so two workers claiming overlapping batches never deadlock.
    rows = sorted(rows, key=lambda row: row.id)
    started = ctx.now()
    with ctx.engine.begin() as connection:
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
                missed.append(row.id)
        if claimed:
            connection.execute(
                _INSERT_ATTEMPT, [_attempt_row(row, task_id, started) for row in claimed]
            )
    if missed:
        _release_lines_of_ended(ctx, missed)
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
            started,
        )
        for row in claimed
    ]


def _release_lines_of_ended(ctx: Context, job_ids: list[str]) -> None:
    """Give back the lines taken for jobs that ended before their claim: no delivery of
    an ended job can dial, so no other fax is let onto a line in use."""
    with ctx.engine.connect() as connection:
        rows = connection.execute(_STATES, {"ids": job_ids}).all()
    ended = [
        guards.LineChange(number, job_id, keep=False)
        for job_id, state, number in rows
        if JobState(state) in FINAL_STATES
    ]
    ctx.guards.change_lines(ended)


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


def _documents(
    ctx: Context,
    rows: list[Row[Any]],
) -> tuple[dict[str, list[Document]], dict[str, DocumentUnavailable | str]]:
    """Each job's documents (after a partial send, only the pages not yet delivered),
    and why a job's documents cannot be read, for the jobs whose cannot."""
    documents: dict[str, list[Document]] = defaultdict(list)
    unreadable: dict[str, DocumentUnavailable | str] = {}
    if not rows:
        return documents, unreadable
    with ctx.engine.connect() as connection:
        stored = connection.execute(_DOCUMENTS, {"ids": [row.id for row in rows]}).all()
        contents, failures = _load(ctx, connection, {sha for *_, sha in stored})
    for job_id, name, mime_type, sha in stored:
        if sha in failures:
            unreadable[job_id] = failures[sha]
        elif job_id not in unreadable:
            documents[job_id].append(Document(name, mime_type, contents[sha]))
    for row in rows:
        if row.id in unreadable:
            continue
        if not documents[row.id]:
            unreadable[row.id] = "the job has no documents"
        elif row.resend_from_page > 0:
            remaining = pages_after(documents[row.id], row.resend_from_page)
            if remaining is not None:
                documents[row.id] = [remaining]
    return documents, unreadable


def _load(
    ctx: Context, connection: Connection, shas: set[str]
) -> tuple[dict[str, bytes], dict[str, DocumentUnavailable]]:
    """The documents' bytes in one read; if one cannot be read, each alone, so only
    the jobs that send it are held back."""
    store = ctx.documents
    try:
        return store.load(connection, shas), {}
    except DocumentUnavailable:
        pass
    contents: dict[str, bytes] = {}
    failures: dict[str, DocumentUnavailable] = {}
    for sha in shas:
        try:
            contents.update(store.load(connection, [sha]))
        except DocumentUnavailable as exc:
            failures[sha] = exc
    return contents, failures


def _send(ctx: Context, claim: _Claim) -> _Sent | str:
    """Call the provider (on a send slot). A failure is dealt with here, in parallel with
    the batch's other sends; an accepted fax goes back to be recorded with its wave."""
    try:
        fax_id = ctx.adapter(claim.provider).send(claim.request)
    except ProviderError as exc:
        return _send_failed(ctx, claim, exc)
    return _Sent(claim.job_id, claim.provider, claim.number, fax_id)


def _on_job(ctx: Context, job_id: str, number: int, step: Callable[[Session, Job], str]) -> str:
    """Run a step that needs the whole job (the uncommon paths), if the job is still
    pending for attempt ``number``."""
    with ctx.session() as session:
        job = session.get(Job, job_id)
        if job is None or job.state != JobState.PENDING or job.attempt_count + 1 != number:
            return "skipped: moved meanwhile"
        return step(session, job)


def _expire(ctx: Context, session: Session, job: Job) -> str:
    """The job's deadline passed before it could be attempted again: stop it."""
    state_from = job.state
    reason = f"the deadline {job.deadline:%Y-%m-%d %H:%M:%S} UTC passed before attempt " + str(
        job.attempt_count + 1
    )
    if not transition(session, job, JobState.FAILED, reason=reason, next_attempt_at=None):
        return "skipped: moved meanwhile"
    record_event(session, job, source=EventSource.DISPATCH, state_from=state_from, detail=reason)
    return reason


def _hold(ctx: Context, session: Session, job: Job, reason: str) -> str:
    """Keep a job that cannot be sent as it is until an operator has fixed the cause."""
    state_from = job.state
    if not transition(session, job, JobState.HELD, reason=reason, next_attempt_at=None):
        return "skipped: moved meanwhile"
    record_event(session, job, source=EventSource.DISPATCH, state_from=state_from, detail=reason)
    return f"held: {reason}"


def _wait_paused(ctx: Context, session: Session, job: Job, reason: str) -> str:
    """Leave the job pending, due: the tick publishes it once its provider is resumed."""
    state_from = job.state
    if not transition(session, job, JobState.PENDING, reason=reason, next_attempt_at=ctx.now()):
        return "skipped: moved meanwhile"
    record_event(session, job, source=EventSource.DISPATCH, state_from=state_from, detail=reason)
    return f"deferred: {reason}"


def _defer(ctx: Context, session: Session, job: Job, hold: guards.Hold) -> str:
    """Leave the job pending until the hold passes; no worker waits for it."""
    number = job.attempt_count + 1
    values: dict[str, object] = {}
    if hold.failover:
        values["provider"] = next_provider(job.route, job.provider)
        values["resend_from_page"] = 0  # the next provider has none of the pages
        reason, delay = f"{hold.reason}: failing over to {values['provider']}", 0.0
    else:
        until = hold.until
        reason = hold.reason
        delay = hold.wait if until is None else (until - ctx.now()).total_seconds()
    delay = max(delay, 0.0)
    short = delay <= MAX_COUNTDOWN
    # A short wait rides on a countdown; the database time then only covers a lost message.
    due = (
        ctx.now()
        + timedelta(seconds=delay)
        + (redelivery_guard(ctx.settings) if short else timedelta())
    )
    state_from = job.state
    if not transition(session, job, JobState.PENDING, reason=reason, next_attempt_at=due, **values):
        return "skipped: moved meanwhile"
    record_event(session, job, source=EventSource.DISPATCH, state_from=state_from, detail=reason)
    if short:
        session.commit()
        _republish_soon(ctx, job.id, number, delay, Priority(job.priority))
    return f"deferred: {reason}"


def _follow(ctx: Context, sends: Sequence[_Sent], *, source: EventSource) -> list[bool]:
    """Make each job follow the fax the provider has for its attempt: in one transaction
    for the jobs still dispatching that attempt, one by one for the rest (a late answer).
    For each send, whether the job now follows that fax."""
    if not sends:
        return []
    with ctx.engine.begin() as connection:
        recorded = _mark_in_progress(ctx, connection, sends, source=source)
    return [ok or _adopt(ctx, sent, source) for sent, ok in zip(sends, recorded, strict=True)]


def _mark_in_progress(
    ctx: Context, connection: Connection, sends: Sequence[_Sent], *, source: EventSource
) -> list[bool]:
    """Move each job claimed for the send's attempt to in progress, by ids: nothing is read."""
    now = ctx.now()
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
                next_poll_at=now + timedelta(seconds=ctx.policy.poll_timing(sent.provider).first),
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


#: States from which a job follows a late-found fax of its latest attempt.
_ADOPTABLE = frozenset({JobState.PENDING, JobState.HELD, JobState.FAILED})


def _adopt(ctx: Context, sent: _Sent, source: EventSource) -> bool:
    """A fax id that arrived after the job moved on (its answer was judged lost, or the
    job was held or failed meanwhile): record it on its attempt, and if no later attempt
    was made, follow it. True if the job now follows that fax."""
    now = ctx.now()
    follows = cancel = False
    with ctx.session() as session:
        session.execute(
            _ATTEMPT_SUBMITTED,
            {"w_job_id": sent.job_id, "w_number": sent.number, "fax_id": sent.fax_id, "at": now},
        )
        job = session.get_one(Job, sent.job_id)
        state_from = job.state
        if job.attempt_count == sent.number and job.state in _ADOPTABLE:
            detail = f"late answer: attempt {sent.number} was {_accepted(sent)}; following it"
            follows = transition(
                session,
                job,
                JobState.IN_PROGRESS,
                provider=sent.provider,
                provider_fax_id=sent.fax_id,
                next_attempt_at=None,
                next_poll_at=now + timedelta(seconds=ctx.policy.poll_timing(sent.provider).first),
                last_code=None,
                reason=detail,
            )
        elif job.state == JobState.IN_PROGRESS and job.provider_fax_id == sent.fax_id:
            return True
        elif job.state == JobState.CANCELLED:
            cancel = True
            detail = f"attempt {sent.number} reached {sent.provider} as fax {sent.fax_id} after "
            detail += "the job was cancelled; cancelling it there"
        else:
            detail = (
                f"attempt {sent.number} reached {sent.provider} as fax {sent.fax_id} after the job "
                f"moved on to {job.state} at attempt {job.attempt_count}"
            )
            log.error("job %s: %s", sent.job_id, detail)
        record_event(
            session,
            job,
            source=source,
            state_from=state_from,
            detail=detail,
            attempt_number=sent.number,
        )
        if follows:
            line = guards.LineChange(job.to_number, sent.job_id, keep=True)
            after_commit_batched(session, ctx.guards.change_lines, line)
    if cancel:
        try:
            ctx.adapter(sent.provider).cancel(sent.fax_id)
        except ProviderError as exc:
            log.warning(
                "job %s: could not cancel %s fax %s: %s",
                sent.job_id,
                sent.provider,
                sent.fax_id,
                exc,
            )
    return follows


def _send_failed(ctx: Context, claim: _Claim, exc: ProviderError) -> str:
    """A send that failed. One the provider may have accepted is looked up at once; if
    it is not found yet, the job waits for it to settle instead of being decided now."""
    if exc.maybe_sent:
        found = _lookup(ctx, claim.provider, claim.request.reference, claim.started_at)
        if found is not None:
            _follow(
                ctx,
                [_Sent(claim.job_id, claim.provider, claim.number, found.fax_id)],
                source=EventSource.RECONCILE,
            )
            return f"answer lost, but the provider has it as fax {found.fax_id}"
        return _answer_lost(
            ctx, claim.job_id, claim.number, exc.kind, exc.message, source=EventSource.DISPATCH
        )
    entry = classify_transport(exc.provider, exc.kind)
    retry_after = exc.retry_after if isinstance(exc, ProviderRateLimited) else None
    with ctx.session() as session:
        job = session.get_one(Job, claim.job_id)
        attempt = _attempt(session, claim.job_id, claim.number)
        if job.state != JobState.DISPATCHING or job.attempt_count != claim.number:
            attempt.error = exc.message
            return f"send failed ({exc.kind}); the job moved meanwhile"
        decision = decide_for(ctx, job, entry, retry_after)
        apply_decision(
            ctx,
            session,
            job,
            attempt,
            entry,
            decision,
            source=EventSource.DISPATCH,
            error=exc.message,
        )
    _retry_soon(ctx, job, decision.step, decision.delay)
    return f"send failed ({exc.kind}): {decision.reason}"


def _lookup(ctx: Context, provider: str, reference: str, since: datetime) -> ProviderStatus | None:
    """The provider's fax for this reference; None when it has none or cannot say now."""
    try:
        return ctx.adapter(provider).find_by_reference(reference, since)
    except ProviderError as lookup_error:
        log.warning("cannot look up %s at %s yet: %s", reference, provider, lookup_error)
        return None


def _answer_lost(
    ctx: Context,
    job_id: str,
    number: int,
    kind: str,
    error: str,
    *,
    source: EventSource,
    version: int | None = None,
) -> str:
    """The answer to attempt ``number`` was lost and the provider does not show the send
    yet: the attempt stays unsettled and the job waits, pending, for FAX_SETTLE_DELAY;
    the next dispatch looks it up again before sending (``_settle_earlier``).

    ``version`` fences a reconcile: a worker that renewed its lease since the reconcile
    read the job is still sending it, and nothing changes."""
    now = ctx.now()
    with ctx.session() as session:
        job = session.get_one(Job, job_id)
        if version is not None and (job.version != version or job.attempt_count != number):
            return "still being sent, or moved meanwhile"
        attempt = _attempt(session, job_id, number)
        if attempt.submitted_at is not None:  # its answer was recorded after all
            return "answer recorded meanwhile"
        # The provider may finish accepting until FAX_SETTLE_DELAY after the last of us
        # stopped waiting for it.
        attempt.unsettled = True
        attempt.lost_at = max(attempt.lost_at or now, now)
        attempt.status_code = kind
        attempt.error = error
        if job.state != JobState.DISPATCHING or job.attempt_count != number:
            return "answer lost; the job moved meanwhile"
        reason = (
            f"the answer to attempt {number} was lost ({kind}); {job.provider} is asked for "
            "it again before anything is sent"
        )
        if not transition(
            session,
            job,
            JobState.PENDING,
            reason=reason,
            last_code=kind,
            next_attempt_at=attempt.lost_at + timedelta(seconds=ctx.settings.settle_delay),
        ):
            return "answer lost; the job moved meanwhile"
        record_event(
            session,
            job,
            source=source,
            state_from=JobState.DISPATCHING,
            detail=f"{reason}: {error}",
            attempt_number=number,
        )
        # The fax may be on the line: keep it the job's.
        line = guards.LineChange(job.to_number, job_id, keep=True)
        after_commit_batched(session, ctx.guards.change_lines, line)
    return reason


def _retry_soon(ctx: Context, job: Job, step: Step, delay: float | None) -> None:
    """Short waits ride on a countdown; longer ones wait in the database for the tick."""
    if step is Step.RETRY and delay is not None and delay <= MAX_COUNTDOWN:
        _republish_soon(ctx, job.id, job.attempt_count + 1, delay, Priority(job.priority))


def _republish_soon(ctx: Context, job_id: str, number: int, delay: float, lane: Priority) -> None:
    try:
        ctx.publisher.dispatch([(job_id, number)], countdown=delay or None, priority=lane)
    except Exception:  # the tick publishes it anyway once next_attempt_at is due
        log.warning("job %s: could not publish attempt %s; the tick will", job_id, number)


def _settle_earlier(ctx: Context, job_id: str, number: int) -> str:
    """Settle the job's unsettled attempt before sending again: follow the fax if the
    provider has it, wait while it may still be landing, else settle it as never sent
    and decide as for any failed send. Nothing is sent by this call."""
    with ctx.session() as session:
        job = session.get_one(Job, job_id)
        attempt = _last_attempt(session, job)
        if attempt is None or not attempt.unsettled:
            return "skipped: moved meanwhile"
        earlier = attempt.number
        provider, reference, started = attempt.provider, attempt.reference, attempt.started_at
        lost_at = attempt.lost_at or started
    try:
        found = ctx.adapter(provider).find_by_reference(reference, started)
    except ProviderError as exc:  # nothing is sent; the tick offers the job again later
        return f"skipped: cannot settle attempt {earlier} yet: {exc}"
    if found is not None:
        _follow(ctx, [_Sent(job_id, provider, earlier, found.fax_id)], source=EventSource.RECONCILE)
        return f"settled: attempt {earlier} reached {provider} as fax {found.fax_id}"
    settles_at = lost_at + timedelta(seconds=ctx.settings.settle_delay)
    if ctx.now() < settles_at:
        return _on_job(
            ctx, job_id, number, lambda s, job: _wait_to_settle(ctx, s, job, earlier, settles_at)
        )
    return _settled_unsent(ctx, job_id, number)


def _wait_to_settle(ctx: Context, session: Session, job: Job, earlier: int, until: datetime) -> str:
    reason = f"attempt {earlier} may still be reaching {job.provider}; looking again at {until:%X}"
    if not transition(session, job, JobState.PENDING, reason=reason, next_attempt_at=until):
        return "skipped: moved meanwhile"
    return f"deferred: {reason}"


def _settled_unsent(ctx: Context, job_id: str, number: int) -> str:
    """The provider never had the lost send: settle it, and let the policy decide."""
    with ctx.session() as session:
        job = session.get_one(Job, job_id)
        if job.state != JobState.PENDING or job.attempt_count + 1 != number:
            return "skipped: moved meanwhile"
        attempt = _attempt(session, job_id, job.attempt_count)
        attempt.unsettled = False
        error = f"{attempt.error or 'no answer'} (the provider never had this send)"
        entry = classify_transport(attempt.provider, attempt.status_code or "lost")
        decision = decide_for(ctx, job, entry)
        apply_decision(
            ctx, session, job, attempt, entry, decision, source=EventSource.RECONCILE, error=error
        )
    _retry_soon(ctx, job, decision.step, decision.delay)
    return f"attempt {number - 1} never reached the provider: {decision.reason}"


def reconcile(job_id: str, *, ctx: Context | None = None) -> str:
    """Settle a job left in ``dispatching`` with no sign of life from its worker (it died
    mid-send): follow the fax if the provider has it, else treat the answer as lost."""
    ctx = ctx or current()
    with ctx.session() as session:
        job = session.get(Job, job_id)
        if job is None or job.state != JobState.DISPATCHING:
            return "nothing to reconcile"
        number, version = job.attempt_count, job.version
        attempt = _attempt(session, job_id, number)
        provider, reference, started = attempt.provider, attempt.reference, attempt.started_at
    try:
        found = ctx.adapter(provider).find_by_reference(reference, started)
    except ProviderError as exc:  # still dispatching: the tick reconciles it again later
        return f"cannot settle attempt {number} yet: {exc}"
    if found is not None:
        if _follow(
            ctx, [_Sent(job_id, provider, number, found.fax_id)], source=EventSource.RECONCILE
        )[0]:
            return f"found the send at the provider as fax {found.fax_id}"
        return "moved meanwhile"
    return _answer_lost(
        ctx,
        job_id,
        number,
        "lost",
        "the worker stopped before the provider's answer was recorded",
        source=EventSource.RECONCILE,
        version=version,
    )


def follow_lost_send(job_id: str, *, ctx: Context | None = None) -> bool:
    """If the job's last attempt lost its answer and the provider has that send, make the
    job follow it (an operator's cancel asks this first). True if the job now does.

    Raises ``ProviderError`` when the provider cannot be asked now."""
    ctx = ctx or current()
    with ctx.session() as session:
        job = session.get_one(Job, job_id)
        attempt = _last_attempt(session, job)
        if attempt is None or not attempt.unsettled:
            return False
        provider, reference, number = attempt.provider, attempt.reference, attempt.number
        started = attempt.started_at
    found = ctx.adapter(provider).find_by_reference(reference, started)
    if found is None:
        return False
    return _follow(
        ctx, [_Sent(job_id, provider, number, found.fax_id)], source=EventSource.OPERATOR
    )[0]
