"""Tracking: read each fax's status from its provider and apply it to its job.

Polls read statuses in batches per provider and hand each to ``apply_status``, which
ignores statuses for faxes the job no longer follows or read before its current attempt
began, records each distinct status once, and hands the classified code to the policy.

A provider webhook is only a hint (``poll_now``): FAX.PLUS and InterFAX do not sign
theirs, so whoever learns the URL could post any status, and even a signed event may
arrive twice or out of order. The fax's status is therefore always read from the
provider, by the same poll as any other, before anything changes.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from dispatcher.catalogue import Outcome, StatusEntry, classify
from dispatcher.context import Context, current
from dispatcher.effects import after_commit_batched
from dispatcher.errors import ProviderError, ValidationError
from dispatcher.guards import LineChange
from dispatcher.lifecycle import AttemptKind, EventSource, JobState, transition
from dispatcher.outcomes import apply_decision, decide_for, record_event
from dispatcher.policy import Step
from dispatcher.providers.base import ManualRetry, ProviderAdapter, ProviderStatus
from dispatcher.sending import reference_for
from dispatcher.store.models import Attempt, Job, WebhookEvent

__all__ = ["apply_status", "poll", "poll_now", "take_event"]

log = logging.getLogger(__name__)


def poll(provider: str, job_ids: Sequence[str], *, ctx: Context | None = None) -> int:
    """Read the status of many jobs' faxes in one provider call; returns how many changed."""
    ctx = ctx or current()
    with ctx.session() as session:
        rows = session.execute(
            select(Job.id, Job.provider_fax_id).where(
                Job.id.in_(job_ids),
                Job.provider == provider,
                Job.state == JobState.IN_PROGRESS,
                Job.provider_fax_id.is_not(None),
            )
        ).all()
    by_fax = {str(fax_id): job_id for job_id, fax_id in rows}
    if not by_fax:
        return 0
    circuit = ctx.guards.breaker(provider)
    if circuit is not None:
        _poll_later(ctx, provider, list(by_fax.values()), "circuit open", circuit.retry_in)
        return 0
    wait = ctx.guards.status_read_wait(provider)
    if wait > 0:
        _poll_later(ctx, provider, list(by_fax.values()), "status read rate limit", wait)
        return 0
    read_at = ctx.now()
    try:
        statuses = ctx.adapter(provider).statuses(list(by_fax))
    except ProviderError as exc:
        _poll_later(
            ctx, provider, list(by_fax.values()), str(exc), getattr(exc, "retry_after", None) or 0.0
        )
        return 0
    try:
        with ctx.session() as session:
            return _apply_all(ctx, session, by_fax, statuses, read_at)
    except Exception as exc:
        if _database_down(exc):
            raise  # nothing can be applied now: the next tick polls them all again
        log.exception("%s: applying %d statuses together failed; one by one", provider, len(by_fax))
    # One bad reading must not hold up the others: each in its own transaction.
    changed = 0
    for fax_id, job_id in by_fax.items():
        try:
            with ctx.session() as session:
                changed += _apply_all(ctx, session, {fax_id: job_id}, statuses, read_at)
        except Exception as exc:
            if _database_down(exc):
                raise
            log.exception(
                "job %s: applying its status failed; the next poll reads it again", job_id
            )
    return changed


def _database_down(exc: Exception) -> bool:
    """The database cannot be used now, as opposed to a conflict between transactions
    (SQLSTATE class 40: a deadlock, a serialization failure), which a retry may not meet."""
    if not isinstance(exc, OperationalError):
        return False
    return not str(getattr(exc.orig, "sqlstate", None) or "").startswith("40")


def _apply_all(
    ctx: Context,
    session: Session,
    by_fax: dict[str, str],
    statuses: dict[str, ProviderStatus],
    read_at: datetime,
) -> int:
    """Apply the statuses read at ``read_at`` to the jobs following those faxes, in one
    transaction: the jobs and their current attempts are loaded in two statements.

    On PostgreSQL the jobs are locked as they are loaded (``FOR NO KEY UPDATE``, the lock
    their UPDATEs take anyway), skipping any another transaction holds: two polls of the
    same faxes (a poll message delivered twice) then apply disjoint sets and never wait
    for each other in opposite orders (a deadlock). A job skipped keeps its next poll."""
    ids = list(by_fax.values())
    mine = select(Job).where(Job.id.in_(ids)).with_for_update(skip_locked=True, key_share=True)
    jobs = {job.id: job for job in session.scalars(mine)}
    attempts = {
        attempt.job_id: attempt
        for attempt in session.scalars(
            select(Attempt)
            .join(Job, (Attempt.job_id == Job.id) & (Attempt.number == Job.attempt_count))
            .where(Job.id.in_(ids))
        )
    }
    changed = 0
    for fax_id, job_id in by_fax.items():
        job = jobs.get(job_id)
        if job is None:
            continue
        status = statuses.get(fax_id)
        if status is None:
            changed += _unknown_fax(ctx, session, job, fax_id)
        else:
            changed += _apply(
                ctx, session, job, attempts.get(job_id), status, EventSource.POLL, read_at
            )
    return changed


def _poll_later(ctx: Context, provider: str, job_ids: list[str], why: str, wait: float) -> None:
    """A status read that cannot happen now is not a failed fax: read again later."""
    log.info("%s: %d status reads postponed: %s", provider, len(job_ids), why)
    delay = max(wait, ctx.policy.poll_timing(provider).interval)
    with ctx.session() as session:
        session.execute(
            update(Job)
            .where(Job.id.in_(job_ids), Job.state == JobState.IN_PROGRESS)
            .values(next_poll_at=ctx.now() + timedelta(seconds=delay))
        )


def _unknown_fax(ctx: Context, session: Session, job: Job, fax_id: str) -> bool:
    """The provider answers 404 for the fax the job follows: nothing more will be learnt
    by polling, and sending again might send twice. An operator decides."""
    reason = (
        f"{job.provider} has no fax {fax_id} (404): check it there, then resume the job "
        "to send it again, or cancel it"
    )
    if job.state != JobState.IN_PROGRESS or job.provider_fax_id != fax_id:
        return False
    if not transition(session, job, JobState.HELD, reason=reason, next_poll_at=None):
        return False
    log.warning("job %s: held: %s", job.id, reason)
    record_event(
        session, job, source=EventSource.POLL, state_from=JobState.IN_PROGRESS, detail=reason
    )
    line = LineChange(job.to_number, job.id, keep=False)
    after_commit_batched(session, ctx.guards.change_lines, line)
    return True


def _current_attempt(session: Session, job: Job) -> Attempt | None:
    return session.scalars(
        select(Attempt).where(Attempt.job_id == job.id, Attempt.number == job.attempt_count)
    ).first()


def apply_status(
    ctx: Context,
    session: Session,
    job: Job,
    status: ProviderStatus,
    *,
    source: EventSource,
    read_at: datetime,
) -> bool:
    """Apply one status reading, taken at ``read_at``, to its job. False when it changes
    nothing: the job no longer follows that fax, or the reading may be older than the
    provider's taking of the job's current attempt (the same fax id, resent by the
    provider meanwhile): a reading counts only once the attempt's answer is known and
    after it came."""
    return _apply(ctx, session, job, _current_attempt(session, job), status, source, read_at)


def _apply(
    ctx: Context,
    session: Session,
    job: Job,
    attempt: Attempt | None,
    status: ProviderStatus,
    source: EventSource,
    read_at: datetime,
) -> bool:
    if job.state != JobState.IN_PROGRESS or job.provider_fax_id != status.fax_id:
        return False
    if attempt is not None and read_at < (attempt.submitted_at or attempt.started_at):
        return False
    entry = classify(job.provider, status.code)
    if not entry.known:
        log.warning(
            "job %s: unlisted %s code %r, using the safe default", job.id, job.provider, status.code
        )
    if attempt is not None and attempt.kind == AttemptKind.PROVIDER_RETRY and attempt.unsettled:
        settled = _settle_provider_retry(ctx, session, job, attempt, entry)
        if settled is not None:
            return settled
    decision = decide_for(ctx, job, entry)
    if (
        decision.step is Step.RETRY
        and entry.outcome is Outcome.FAILURE
        and attempt is not None
        and attempt.kind == AttemptKind.SEND
        and ctx.adapter(job.provider).has_manual_retry
    ):
        return _claim_provider_retry(ctx, session, job, attempt, status, entry)
    return apply_decision(ctx, session, job, attempt, entry, decision, source=source, status=status)


def _claim_provider_retry(
    ctx: Context,
    session: Session,
    job: Job,
    attempt: Attempt,
    status: ProviderStatus,
    entry: StatusEntry,
) -> bool:
    """The provider's own retries are spent: use its manual retry before sending anew.

    The retry resends the provider's copy of the fax, so it is a new attempt of kind
    ``provider_retry`` that follows the same fax id. It is claimed and committed before
    the provider is asked, like a send: a second reader of the same failure finds the
    job moved, and an answer lost on the way leaves the attempt unsettled, never a
    second fax sent while the provider retries."""
    number = job.attempt_count + 1
    now = ctx.now()
    reason = f"{job.provider} {entry.code}: asking {job.provider} for its manual retry"
    if not transition(
        session,
        job,
        JobState.IN_PROGRESS,
        attempt_count=number,
        last_code=entry.code,
        last_outcome=entry.outcome.value,
        last_remediation=entry.remediation.value,
        reason=reason,
        next_poll_at=now + timedelta(seconds=ctx.policy.poll_timing(job.provider).first),
    ):
        return False
    attempt.finished_at = now
    attempt.status_code = entry.code
    attempt.outcome = entry.outcome.value
    attempt.remediation = entry.remediation.value
    session.add(
        Attempt(
            job_id=job.id,
            number=number,
            kind=AttemptKind.PROVIDER_RETRY,
            provider=job.provider,
            reference=reference_for(job.id, number),
            provider_fax_id=job.provider_fax_id,
            unsettled=True,
            started_at=now,
        )
    )
    record_event(
        session,
        job,
        source=EventSource.POLL,
        state_from=JobState.IN_PROGRESS,
        detail=reason,
        entry=entry,
        attempt_number=attempt.number,
        payload=dict(status.raw),
    )
    session.commit()
    return _ask_provider_retry(ctx, session, job, number, entry)


def _ask_provider_retry(
    ctx: Context, session: Session, job: Job, number: int, entry: StatusEntry
) -> bool:
    """Ask the provider to retry; record what it said on the claimed attempt."""
    retry = session.scalars(
        select(Attempt).where(Attempt.job_id == job.id, Attempt.number == number)
    ).one()
    fax_id = str(job.provider_fax_id)
    adapter = ctx.adapter(job.provider)
    try:
        adapter.retry(fax_id)
    except ProviderError as exc:
        # Unsettled until known: the next status read settles it (_settle_provider_retry).
        retry.error = exc.message
        if exc.maybe_sent:
            retry.lost_at = ctx.now()
            return True
        state = _provider_retry_state(adapter, fax_id)
        if state is None:
            return True
        if state is ManualRetry.NONE:
            log.warning("job %s: %s refused its manual retry (%s)", job.id, job.provider, exc)
            retry.unsettled = False
            return apply_decision(
                ctx,
                session,
                job,
                retry,
                entry,
                decide_for(ctx, job, entry),
                source=EventSource.POLL,
                error=exc.message,
            )
        # Refused because another reader of the same failure asked first: it is made.
    retry.unsettled = False
    retry.submitted_at = ctx.now()  # readings from before now may predate the retry
    return True


def _provider_retry_state(adapter: ProviderAdapter, fax_id: str) -> ManualRetry | None:
    """Whether the provider made its manual retry of the fax; None if it cannot say now."""
    try:
        return adapter.manual_retry(fax_id)
    except ProviderError as exc:
        log.warning("cannot read the manual retry of fax %s yet: %s", fax_id, exc)
        return None


def _settle_provider_retry(
    ctx: Context, session: Session, job: Job, attempt: Attempt, entry: StatusEntry
) -> bool | None:
    """A status read while a manual retry's answer is unknown. Returns what applying it
    came to, or None to apply it as usual.

    Only a failure is in doubt: any other status shows the provider at work on the fax,
    so the retry was made. For a failure, the provider's list of attempts says whether it
    was: if so, this reading may predate it and is dropped, and the retry counts as taken
    from now on (the next reading tells how it went); if not, it is asked for again."""
    now = ctx.now()
    if entry.outcome is not Outcome.FAILURE:
        attempt.unsettled = False
        attempt.submitted_at = attempt.submitted_at or now
        return None
    fax_id = str(job.provider_fax_id)
    state = _provider_retry_state(ctx.adapter(job.provider), fax_id)
    if state is None:
        return False
    if state is not ManualRetry.NONE:
        attempt.unsettled = False
        attempt.submitted_at = now
        return False
    # Claim the asking again, as the first ask was claimed: a reader that saw the retry
    # refused and is about to send anew finds the job moved, and sends nothing.
    reason = f"{job.provider} {entry.code}: asking {job.provider} again for its manual retry"
    if not transition(session, job, JobState.IN_PROGRESS, reason=reason):
        return False
    session.commit()
    return _ask_provider_retry(ctx, session, job, attempt.number, entry)


def poll_now(provider: str, fax_ids: Sequence[str], *, ctx: Context | None = None) -> int:
    """A provider says these faxes changed: read them from the provider at once (the
    same poll as any other). Returns how many jobs follow them.

    Their next poll is made due in the database first, so a message lost on the way is
    made good by the next tick."""
    ctx = ctx or current()
    with ctx.session() as session:
        job_ids = list(
            session.scalars(
                select(Job.id).where(
                    Job.provider == provider,
                    Job.provider_fax_id.in_(list(fax_ids)),
                    Job.state == JobState.IN_PROGRESS,
                )
            )
        )
        if job_ids:
            session.execute(update(Job).where(Job.id.in_(job_ids)).values(next_poll_at=ctx.now()))
    if job_ids:
        try:
            ctx.publisher.poll(provider, job_ids)
        except Exception as exc:  # the tick finds them due
            log.warning(
                "%s: could not publish %d polls (%s); the tick will", provider, len(job_ids), exc
            )
    return len(job_ids)


def take_event(
    provider: str, event_id: str, sent_at: datetime | None, *, ctx: Context | None = None
) -> bool:
    """Remember a signed provider event; False if it was taken before (a replay).

    Raises ``ValidationError`` for an event made more than FAX_WEBHOOK_MAX_AGE ago: a
    replay the record may have forgotten."""
    ctx = ctx or current()
    now = ctx.now()
    max_age = ctx.settings.webhook_max_age
    if sent_at is not None and sent_at < now - timedelta(seconds=max_age):
        raise ValidationError("time", f"the event is older than {max_age:g} s: a replay")
    try:
        with ctx.session() as session:
            session.add(WebhookEvent(provider=provider, event_id=event_id[:128], received_at=now))
    except IntegrityError:
        return False
    return True
