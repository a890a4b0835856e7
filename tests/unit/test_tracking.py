"""Tracking on an in-memory provider twin: polls, stale readings, a fax the provider no
longer knows, and Optum's manual retry, claimed before it is asked for."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from dispatcher import sending, tracking
from dispatcher.context import Context
from dispatcher.errors import ProviderError, ProviderRejected, ProviderTimeout, ValidationError
from dispatcher.lifecycle import AttemptKind, EventSource, JobState
from dispatcher.providers.base import ManualRetry, ProviderStatus
from dispatcher.providers.twin import TwinAdapter
from dispatcher.resilience import BreakerState, BreakerStatus
from dispatcher.store.models import Job, StatusEvent
from tests.fixtures.twin import (
    Clock,
    MemoryGuards,
    RecordingPublisher,
    attempts_of,
    job_of,
    submit_job,
)


def events_of(ctx: Context, job_id: str) -> int:
    with ctx.session() as session:
        return (
            session.scalar(
                select(func.count()).select_from(StatusEvent).where(StatusEvent.job_id == job_id)
            )
            or 0
        )


def sent_job(ctx: Context, twin: TwinAdapter, to: str = "+12125550100") -> tuple[str, str]:
    """A job its provider accepted: its id and its fax id."""
    job_id = submit_job(to)
    sending.dispatch([(job_id, 1)], ctx=ctx)
    fax_id = job_of(ctx, job_id).provider_fax_id
    assert fax_id is not None
    return job_id, fax_id


def test_a_success_read_by_a_poll_finishes_the_job_and_frees_its_line(
    twin_ctx: Context, twin: TwinAdapter, guards: MemoryGuards
) -> None:
    job_id, fax_id = sent_job(twin_ctx, twin)
    twin.finish(fax_id, "0")

    changed = tracking.poll("interfax", [job_id], ctx=twin_ctx)

    job = job_of(twin_ctx, job_id)
    assert (changed, job.state, job.last_code) == (1, JobState.SUCCEEDED, "0")
    (attempt,) = attempts_of(twin_ctx, job_id)
    assert (attempt.status_code, attempt.outcome) == ("0", "success")
    assert attempt.finished_at is not None
    assert guards.effects == [("release", job.to_number, job_id)]


def test_attempts_that_never_reached_the_provider_do_not_use_up_a_partial_sends_retries(
    twin_ctx: Context, twin: TwinAdapter, clock: Clock
) -> None:
    # Given a job whose first three attempts never reached InterFAX (partial sends get 4)
    job_id = submit_job()
    for number in (1, 2, 3):
        twin.refuse_next(ProviderError("interfax", "connect", "connection refused"))
        sending.dispatch([(job_id, number)], ctx=twin_ctx)
        clock.advance(3600)
    assert twin.sends(job_id) == []
    # And whose fourth, its first transmission, ends partial
    sending.dispatch([(job_id, 4)], ctx=twin_ctx)
    fax_id = job_of(twin_ctx, job_id).provider_fax_id
    assert fax_id is not None
    twin.finish(fax_id, "3268")

    tracking.poll("interfax", [job_id], ctx=twin_ctx)

    # Then the partial send is retried: one transmission of four has been spent, not four
    job = job_of(twin_ctx, job_id)
    assert (job.state, job.attempt_count) == (JobState.PENDING, 4), job.reason
    assert job.reason is not None and job.reason.startswith("attempt 2 of 4 after a wait")


def test_a_status_that_cannot_be_stored_holds_up_no_other_read_in_its_poll(
    twin_ctx: Context, twin: TwinAdapter, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given three faxes done, read in one poll, one reading of which cannot be stored
    jobs = [sent_job(twin_ctx, twin, to=f"+1212555010{n}") for n in range(3)]
    for _, fax_id in jobs:
        twin.finish(fax_id, "0")
    bad = jobs[1][1]
    read = twin.statuses

    def statuses(fax_ids: list[str]) -> dict[str, ProviderStatus]:
        found = read(fax_ids)
        found[bad] = replace(found[bad], raw={"unstorable": object()})
        return found

    monkeypatch.setattr(twin, "statuses", statuses)

    changed = tracking.poll("interfax", [job_id for job_id, _ in jobs], ctx=twin_ctx)

    # Then the other two are applied; the bad one waits for the next poll, unchanged
    states = [job_of(twin_ctx, job_id).state for job_id, _ in jobs]
    assert (changed, states) == (
        2,
        [JobState.SUCCEEDED, JobState.IN_PROGRESS, JobState.SUCCEEDED],
    )


def test_a_status_read_twice_is_recorded_once(twin_ctx: Context, twin: TwinAdapter) -> None:
    job_id, _ = sent_job(twin_ctx, twin)
    before = events_of(twin_ctx, job_id)

    tracking.poll("interfax", [job_id], ctx=twin_ctx)
    tracking.poll("interfax", [job_id], ctx=twin_ctx)

    assert events_of(twin_ctx, job_id) == before + 1
    assert job_of(twin_ctx, job_id).last_code == "-2"


def test_a_busy_line_retries_later_and_shares_the_busy_signal(
    twin_ctx: Context, twin: TwinAdapter, guards: MemoryGuards
) -> None:
    job_id, fax_id = sent_job(twin_ctx, twin)
    twin.finish(fax_id, "263")

    tracking.poll("interfax", [job_id], ctx=twin_ctx)

    job = job_of(twin_ctx, job_id)
    assert (job.state, job.provider_fax_id) == (JobState.PENDING, None)
    assert job.next_attempt_at is not None
    # The number is blocked before its line is given back: no other fax slips in between
    assert [effect[0] for effect in guards.effects] == ["busy", "release"]


def test_a_reading_older_than_the_attempts_answer_changes_nothing(
    twin_ctx: Context, twin: TwinAdapter
) -> None:
    job_id, fax_id = sent_job(twin_ctx, twin)
    (attempt,) = attempts_of(twin_ctx, job_id)
    assert attempt.submitted_at is not None
    twin.finish(fax_id, "263")

    with twin_ctx.session() as session:
        job = session.get_one(Job, job_id)
        applied = tracking.apply_status(
            twin_ctx,
            session,
            job,
            twin.status(fax_id),
            source=EventSource.POLL,
            read_at=attempt.submitted_at - timedelta(seconds=1),
        )

    assert not applied
    assert job_of(twin_ctx, job_id).state == JobState.IN_PROGRESS


def test_a_reading_of_a_fax_the_job_no_longer_follows_changes_nothing(
    twin_ctx: Context, twin: TwinAdapter, clock: Clock
) -> None:
    job_id, _ = sent_job(twin_ctx, twin)
    other, other_fax = sent_job(twin_ctx, twin, "+12125550101")
    twin.finish(other_fax, "0")

    with twin_ctx.session() as session:
        job = session.get_one(Job, job_id)
        applied = tracking.apply_status(
            twin_ctx, session, job, twin.status(other_fax), source=EventSource.POLL, read_at=clock()
        )

    assert not applied
    assert job_of(twin_ctx, job_id).state == JobState.IN_PROGRESS


def test_a_fax_the_provider_no_longer_knows_is_held_for_an_operator(
    twin_ctx: Context, twin: TwinAdapter, guards: MemoryGuards, publisher: RecordingPublisher
) -> None:
    job_id, fax_id = sent_job(twin_ctx, twin)
    del twin.faxes[fax_id]

    tracking.poll("interfax", [job_id], ctx=twin_ctx)

    job = job_of(twin_ctx, job_id)
    assert job.state == JobState.HELD
    assert job.reason == (
        f"interfax has no fax {fax_id} (404): check it there, then resume the job "
        "to send it again, or cancel it"
    )
    assert guards.effects[-1] == ("release", job.to_number, job_id)
    assert publisher.dispatched == []  # nothing is sent again until an operator says so


def test_an_open_breaker_postpones_the_reading(
    twin_ctx: Context, twin: TwinAdapter, guards: MemoryGuards, clock: Clock
) -> None:
    job_id, fax_id = sent_job(twin_ctx, twin)
    twin.finish(fax_id, "0")
    guards.open_breakers["interfax"] = BreakerStatus(
        "interfax", BreakerState.OPEN, failures=5, opened_at=0.0, retry_in=30.0
    )

    changed = tracking.poll("interfax", [job_id], ctx=twin_ctx)

    job = job_of(twin_ctx, job_id)
    assert (changed, job.state) == (0, JobState.IN_PROGRESS)
    assert job.next_poll_at is not None
    assert job.next_poll_at >= (clock() + timedelta(seconds=30))


def test_a_webhook_hint_makes_the_poll_due_and_publishes_it(
    twin_ctx: Context, twin: TwinAdapter, publisher: RecordingPublisher, clock: Clock
) -> None:
    job_id, fax_id = sent_job(twin_ctx, twin)

    assert tracking.poll_now("interfax", [fax_id, "unknown-fax"], ctx=twin_ctx) == 1

    assert publisher.polled == [("interfax", [job_id])]
    next_poll = job_of(twin_ctx, job_id).next_poll_at
    assert next_poll is not None and next_poll <= clock()


def test_a_signed_event_is_taken_once_and_not_when_too_old(twin_ctx: Context, clock: Clock) -> None:
    max_age = twin_ctx.settings.webhook_max_age

    assert tracking.take_event("optum", "event-1", clock(), ctx=twin_ctx)
    assert not tracking.take_event("optum", "event-1", clock(), ctx=twin_ctx)
    old = clock() - timedelta(seconds=max_age + 1)
    with pytest.raises(ValidationError, match="older than"):
        tracking.take_event("optum", "event-2", old, ctx=twin_ctx)


# --- the provider's manual retry (Optum) ----------------------------------------------


@pytest.fixture
def optum() -> TwinAdapter:
    """A twin that speaks Optum, which resends a failed fax when asked."""
    return TwinAdapter(name="optum", accepted="FaxReceived", has_manual_retry=True)


@pytest.fixture
def optum_ctx(twin_ctx: Context, optum: TwinAdapter) -> Context:
    return replace(twin_ctx, adapter=lambda provider: optum)


def optum_job(ctx: Context) -> tuple[str, str]:
    job_id = submit_job(provider="optum")
    sending.dispatch([(job_id, 1)], ctx=ctx)
    fax_id = job_of(ctx, job_id).provider_fax_id
    assert fax_id is not None
    return job_id, fax_id


def test_the_manual_retry_is_claimed_before_the_provider_is_asked(
    optum_ctx: Context, optum: TwinAdapter
) -> None:
    # Given an Optum fax that failed, and a provider that looks in the database when asked
    job_id, fax_id = optum_job(optum_ctx)
    optum.finish(fax_id, "FaxFailed")
    seen: list[list[tuple[int, str, bool]]] = []

    def look(call: str, argument: object) -> None:
        if call == "retry":
            seen.append([(a.number, a.kind, a.unsettled) for a in attempts_of(optum_ctx, job_id)])

    optum.probe = look

    # When a poll reads the failure
    tracking.poll("optum", [job_id], ctx=optum_ctx)

    # Then the retry attempt was committed, unsettled, before Optum heard of it
    assert seen == [[(1, AttemptKind.SEND, False), (2, AttemptKind.PROVIDER_RETRY, True)]]
    # And once asked, it is settled; the job follows the same fax; nothing new is sent
    job = job_of(optum_ctx, job_id)
    assert (job.state, job.attempt_count, job.provider_fax_id) == (
        JobState.IN_PROGRESS,
        2,
        fax_id,
    )
    assert not attempts_of(optum_ctx, job_id)[1].unsettled
    assert optum.faxes[fax_id].manual_retry is ManualRetry.RUNNING
    assert len(optum.sends(job_id)) == 1


def test_the_same_failure_read_again_asks_for_no_second_retry(
    optum_ctx: Context, optum: TwinAdapter, clock: Clock
) -> None:
    # Given a failure read by one reader, which asked for the manual retry
    job_id, fax_id = optum_job(optum_ctx)
    optum.finish(fax_id, "FaxFailed")
    stale = optum.status(fax_id)
    read_at = clock()
    asked: list[object] = []
    optum.probe = lambda call, argument: asked.append(argument) if call == "retry" else None
    clock.advance(1)
    tracking.poll("optum", [job_id], ctx=optum_ctx)

    # When a second reader applies the same failure, read just before that
    with optum_ctx.session() as session:
        job = session.get_one(Job, job_id)
        applied = tracking.apply_status(
            optum_ctx, session, job, stale, source=EventSource.POLL, read_at=read_at
        )

    # Then it changes nothing: one retry, one send
    assert not applied
    assert asked == [fax_id]
    assert [a.kind for a in attempts_of(optum_ctx, job_id)] == ["send", "provider_retry"]


@pytest.mark.parametrize("made", [True, False])
def test_a_manual_retry_whose_answer_was_lost_is_asked_again_only_if_never_made(
    optum_ctx: Context, optum: TwinAdapter, clock: Clock, made: bool
) -> None:
    # Given a manual retry whose answer was lost, made by Optum or not
    job_id, fax_id = optum_job(optum_ctx)
    optum.finish(fax_id, "FaxFailed")
    optum.fail_next_retry(ProviderTimeout("optum", "timeout", "no answer"), made=made)
    asked: list[object] = []
    optum.probe = lambda call, argument: asked.append(argument) if call == "retry" else None
    tracking.poll("optum", [job_id], ctx=optum_ctx)
    retry = attempts_of(optum_ctx, job_id)[1]
    assert retry.unsettled and retry.lost_at is not None

    # When the next poll reads the fax (failed still, unless the retry restarted it)
    clock.advance(60)
    tracking.poll("optum", [job_id], ctx=optum_ctx)

    # Then the retry is settled; Optum was asked again only if it never made it
    assert not attempts_of(optum_ctx, job_id)[1].unsettled
    assert asked == [fax_id] if made else [fax_id, fax_id]
    assert optum.faxes[fax_id].manual_retry is ManualRetry.RUNNING
    job = job_of(optum_ctx, job_id)
    assert (job.state, job.attempt_count) == (JobState.IN_PROGRESS, 2)
    assert len(optum.sends(job_id)) == 1


def test_a_retry_refused_while_a_second_reader_asks_again_and_is_granted_sends_nothing_new(
    optum_ctx: Context, optum: TwinAdapter, clock: Clock
) -> None:
    # Given a failed Optum fax whose manual retry a poll claims, and Optum refusing it once
    # (the chaos run found this race with a 5xx, before a 5xx counted as maybe retried)
    job_id, fax_id = optum_job(optum_ctx)
    optum.finish(fax_id, "FaxFailed")
    failure = optum.status(fax_id)
    refusal = ProviderRejected("optum", "http_400", "try later", status_code=400)
    optum.fail_next_retry(refusal, made=False)
    raced: list[bool] = []

    def second_reader(call: str, argument: object) -> None:
        # Just after the poll read "no retry made", another reader of the same failure
        # (a redelivered webhook's poll) finds the retry unsettled and asks again
        if call != "manual_retry" or raced:
            return
        raced.append(True)
        clock.advance(1)
        with optum_ctx.session() as session:
            job = session.get_one(Job, job_id)
            tracking.apply_status(
                optum_ctx, session, job, failure, source=EventSource.POLL, read_at=clock()
            )

    optum.probe = second_reader

    # When the poll goes on with what it read
    tracking.poll("optum", [job_id], ctx=optum_ctx)

    # Then Optum retries its fax, the job follows it, and no new fax is ever sent
    assert raced and optum.faxes[fax_id].manual_retry is ManualRetry.RUNNING
    job = job_of(optum_ctx, job_id)
    assert (job.state, job.provider_fax_id) == (JobState.IN_PROGRESS, fax_id)
    sending.dispatch([(job_id, job.attempt_count + 1)], ctx=optum_ctx)
    assert len(optum.sends(job_id)) == 1
