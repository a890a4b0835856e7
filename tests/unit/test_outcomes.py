"""Outcomes: the one place a classified status becomes a job transition, on a real
database with an in-memory provider twin. Redis effects are checked to follow the commit."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import func, select, update

from dispatcher import pauses, sending
from dispatcher.catalogue import classify
from dispatcher.context import Context
from dispatcher.lifecycle import EventSource, JobState
from dispatcher.outcomes import apply_decision, decide_for
from dispatcher.policy import Step
from dispatcher.providers.base import ProviderStatus
from dispatcher.providers.twin import TwinAdapter
from dispatcher.store.models import Attempt, Job, StatusEvent
from tests.fixtures.documents import make_pdf
from tests.fixtures.twin import Clock, MemoryGuards, job_of, submit_job


def in_progress(ctx: Context, **fields: Any) -> tuple[str, str]:
    """A job (routed as its number says, unless it names a provider) that its provider
    accepted: its id and its fax id."""
    job_id = submit_job(**fields)
    sending.dispatch([(job_id, 1)], ctx=ctx)
    with ctx.session() as session:
        fax_id = session.get_one(Job, job_id).provider_fax_id
    assert fax_id is not None
    return job_id, fax_id


def apply(ctx: Context, job_id: str, status: ProviderStatus) -> bool:
    """Classify ``status`` and apply the policy's decision, as a poll does."""
    with ctx.session() as session:
        job = session.get_one(Job, job_id)
        attempt = session.scalars(select(Attempt).where(Attempt.job_id == job_id)).one()
        entry = classify(job.provider, status.code)
        decision = decide_for(ctx, job, entry)
        return apply_decision(
            ctx, session, job, attempt, entry, decision, source=EventSource.POLL, status=status
        )


def events(ctx: Context, job_id: str) -> int:
    with ctx.session() as session:
        count = session.scalar(
            select(func.count()).select_from(StatusEvent).where(StatusEvent.job_id == job_id)
        )
    return count or 0


def test_an_in_progress_reading_keeps_the_line_once_committed(
    twin_ctx: Context, guards: MemoryGuards
) -> None:
    job_id, fax_id = in_progress(twin_ctx, provider="interfax")
    guards.effects.clear()
    seen: list[str] = []
    guards.on_effect = lambda effect: seen.append(job_of(twin_ctx, job_id).last_code or "")

    assert apply(twin_ctx, job_id, ProviderStatus(fax_id, "-11"))

    job = job_of(twin_ctx, job_id)
    assert (job.state, job.last_code) == (JobState.IN_PROGRESS, "-11")
    assert job.next_poll_at is not None
    assert guards.effects == [("keep", job.to_number, job_id)]
    assert seen == ["-11"]  # the effect ran after the reading was committed


def test_a_reroutable_failure_moves_the_job_to_the_next_provider_of_its_route(
    twin_ctx: Context, guards: MemoryGuards
) -> None:
    # Given a US job, routed interfax, faxplus, optum, whose InterFAX fax found no route
    job_id, fax_id = in_progress(twin_ctx, provider=None)
    assert job_of(twin_ctx, job_id).route == ["interfax", "faxplus", "optum"]

    assert apply(twin_ctx, job_id, ProviderStatus(fax_id, "6002"))

    job = job_of(twin_ctx, job_id)
    assert (job.state, job.provider, job.provider_fax_id) == (JobState.PENDING, "faxplus", None)
    assert job.reason is not None and job.reason.startswith("rerouted to faxplus")
    assert guards.effects[-1] == ("release", job.to_number, job_id)


def test_a_partial_send_resends_only_the_pages_not_delivered_when_asked(
    twin_ctx: Context, twin: TwinAdapter
) -> None:
    job_id, fax_id = in_progress(
        twin_ctx,
        provider="interfax",
        documents=[("a.pdf", make_pdf(5))],
        options={"partial": "resend_remaining"},
    )

    assert apply(twin_ctx, job_id, ProviderStatus(fax_id, "3268", pages_sent=2))

    job = job_of(twin_ctx, job_id)
    assert (job.state, job.pages_sent, job.resend_from_page) == (JobState.PENDING, 2, 2)


def test_a_retry_that_would_start_after_the_deadline_fails_the_job(
    twin_ctx: Context, clock: Clock
) -> None:
    # Given a job whose deadline is a minute away, on the twin's clock
    job_id, fax_id = in_progress(
        twin_ctx, provider="interfax", deadline=clock() + timedelta(minutes=30)
    )
    clock.advance(29 * 60)

    # When its line is busy (the next try waits longer than the time left)
    with twin_ctx.session() as session:
        job = session.get_one(Job, job_id)
        decision = decide_for(twin_ctx, job, classify("interfax", "263"), retry_after=120.0)

    # Then the job fails now rather than wait past its deadline
    assert decision.step is Step.FAIL
    assert decision.reason.startswith("the deadline passes before the next attempt")


def test_a_job_moved_meanwhile_is_left_alone_and_nothing_follows(
    twin_ctx: Context, guards: MemoryGuards
) -> None:
    # Given a poll that read the job, then an operator who held it before the poll wrote
    job_id, fax_id = in_progress(twin_ctx, provider="interfax")
    guards.effects.clear()
    before = events(twin_ctx, job_id)
    with twin_ctx.session() as session:
        job = session.get_one(Job, job_id)
        attempt = session.scalars(select(Attempt).where(Attempt.job_id == job_id)).one()
        session.commit()  # the poll's read is over; its objects keep what it read
        with twin_ctx.engine.begin() as operator:
            operator.execute(
                update(Job)
                .where(Job.id == job_id)
                .values(state=JobState.HELD, version=Job.version + 1)
            )
        entry = classify("interfax", "0")

        # When the poll applies its success
        applied = apply_decision(
            twin_ctx,
            session,
            job,
            attempt,
            entry,
            decide_for(twin_ctx, job, entry),
            source=EventSource.POLL,
            status=ProviderStatus(fax_id, "0"),
        )

    # Then nothing changed: no transition, no event, no line effect, attempt unfinished
    assert not applied
    assert job_of(twin_ctx, job_id).state == JobState.HELD
    assert events(twin_ctx, job_id) == before
    assert guards.effects == []
    with twin_ctx.session() as session:
        assert session.scalars(select(Attempt.finished_at)).one() is None


def test_no_credit_pauses_the_provider_and_the_job_waits_pending_with_the_others(
    twin_ctx: Context, twin: TwinAdapter, guards: MemoryGuards, clock: Clock
) -> None:
    job_id, fax_id = in_progress(twin_ctx, provider="interfax")
    other_id, other_fax = in_progress(twin_ctx, to="+12125550111", provider="interfax")
    queued = submit_job("+12125550112", provider="interfax")

    assert apply(twin_ctx, job_id, ProviderStatus(fax_id, "205000"))

    # The job waits, pending, and InterFAX is paused for credit, its first probe later
    job = job_of(twin_ctx, job_id)
    assert job.state == JobState.PENDING
    assert job.reason is not None and job.reason.startswith("waiting for credit")
    assert guards.effects[-1] == ("release", job.to_number, job_id)
    pause = pauses.current()["interfax"]
    assert pause.automatic and pause.reason == "out of credit: Quota exceeded"
    assert pause.next_probe_at is not None and pause.next_probe_at > clock()
    # A job already queued for InterFAX is not sent: it waits, pending, with the reason
    sending.dispatch([(queued, 1)], ctx=twin_ctx)
    assert twin.sends(queued) == []
    waiting = job_of(twin_ctx, queued)
    assert (waiting.state, waiting.reason) == (JobState.PENDING, pause.waiting_reason)
    # A fax through InterFAX that goes through ends the pause by itself
    assert apply(twin_ctx, other_id, ProviderStatus(other_fax, "0"))
    assert pauses.current() == {}
    with twin_ctx.session() as session:
        attempt = session.scalars(select(Attempt).where(Attempt.job_id == job_id)).one()
    assert (attempt.status_code, attempt.outcome) == ("205000", "failure")
