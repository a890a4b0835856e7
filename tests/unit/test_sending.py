"""Sending on an in-memory provider twin: claim, record, settle, reconcile, and the races
between a worker's send and the tick's reconcile. Each test counts the twin's accepted
sends per job, as the chaos run counts the sandbox's."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy import select

from dispatcher import sending
from dispatcher.context import Context
from dispatcher.errors import ConfigurationError, ProviderRateLimited, ProviderRejected
from dispatcher.leases import renew
from dispatcher.lifecycle import JobState
from dispatcher.providers.base import ProviderAdapter, SendRequest
from dispatcher.providers.twin import TwinAdapter
from dispatcher.store.models import StatusEvent
from tests.fixtures.twin import (
    Clock,
    MemoryGuards,
    RecordingPublisher,
    attempts_of,
    job_of,
    submit_job,
)

SETTLE = 60.0  # the twin context's FAX_SETTLE_DELAY


def test_the_attempt_is_committed_before_the_provider_hears_of_it(
    twin_ctx: Context, twin: TwinAdapter
) -> None:
    # Given a pending job, and a provider that looks in the database as each send arrives
    job_id = submit_job()
    seen: list[tuple[str, list[str]]] = []

    def look(call: str, request: object) -> None:
        assert isinstance(request, SendRequest)
        seen.append(
            (job_of(twin_ctx, job_id).state, [a.reference for a in attempts_of(twin_ctx, job_id)])
        )

    twin.probe = look

    # When it is dispatched
    outcome = sending.dispatch([(job_id, 1)], ctx=twin_ctx)

    # Then the send found its job claimed and its attempt written, with the reference it carries
    assert seen == [(JobState.DISPATCHING, [sending.reference_for(job_id, 1)])]
    assert twin.sends(job_id)[0].reference == sending.reference_for(job_id, 1)
    # And the answer is recorded: the job follows the fax
    job = job_of(twin_ctx, job_id)
    assert (job.state, job.provider_fax_id) == (JobState.IN_PROGRESS, "interfax-1")
    assert outcome[job_id] == "sent as interfax fax interfax-1"
    (attempt,) = attempts_of(twin_ctx, job_id)
    assert attempt.provider_fax_id == "interfax-1" and attempt.submitted_at is not None


def test_a_delivery_repeated_or_for_a_used_attempt_number_sends_nothing(
    twin_ctx: Context, twin: TwinAdapter
) -> None:
    job_id = submit_job()
    sending.dispatch([(job_id, 1), (job_id, 1)], ctx=twin_ctx)

    outcome = sending.dispatch([(job_id, 1)], ctx=twin_ctx)

    assert len(twin.sends(job_id)) == 1
    assert outcome[job_id] == "skipped: job is in_progress at attempt 1"
    assert len(attempts_of(twin_ctx, job_id)) == 1


def test_a_refusal_fails_the_job_and_frees_its_line(
    twin_ctx: Context, twin: TwinAdapter, guards: MemoryGuards
) -> None:
    job_id = submit_job()
    twin.refuse_next(ProviderRejected("interfax", "http_400", "bad number", status_code=400))

    sending.dispatch([(job_id, 1)], ctx=twin_ctx)

    job = job_of(twin_ctx, job_id)
    assert (job.state, job.last_code) == (JobState.FAILED, "http_400")
    (attempt,) = attempts_of(twin_ctx, job_id)
    assert (attempt.error, attempt.unsettled) == ("bad number", False)
    assert guards.effects == [("release", job.to_number, job_id)]
    assert twin.sends() == []


def test_a_failure_worth_retrying_publishes_the_next_attempt_after_commit(
    twin_ctx: Context, twin: TwinAdapter, publisher: RecordingPublisher
) -> None:
    job_id = submit_job()
    twin.refuse_next(ProviderRateLimited("interfax", retry_after=0.01))

    sending.dispatch([(job_id, 1)], ctx=twin_ctx)

    job = job_of(twin_ctx, job_id)
    assert (job.state, job.attempt_count) == (JobState.PENDING, 1)
    assert publisher.dispatched == [(job_id, 2)]
    sending.dispatch(publisher.dispatched, ctx=twin_ctx)
    assert len(twin.sends(job_id)) == 1
    assert [a.number for a in attempts_of(twin_ctx, job_id)] == [1, 2]


def test_a_lost_answer_whose_fax_the_provider_has_is_followed_at_once(
    twin_ctx: Context, twin: TwinAdapter
) -> None:
    job_id = submit_job()
    twin.lose_next_answer()

    outcome = sending.dispatch([(job_id, 1)], ctx=twin_ctx)

    assert outcome[job_id] == "answer lost, but the provider has it as fax interfax-1"
    job = job_of(twin_ctx, job_id)
    assert (job.state, job.provider_fax_id) == (JobState.IN_PROGRESS, "interfax-1")
    assert len(twin.sends(job_id)) == 1


def test_a_send_that_lands_late_is_followed_and_never_sent_again(
    twin_ctx: Context, twin: TwinAdapter, clock: Clock, guards: MemoryGuards
) -> None:
    # Given a send that times out before the provider accepts it
    job_id = submit_job()
    twin.land_next_late()
    sending.dispatch([(job_id, 1)], ctx=twin_ctx)

    # Then the attempt is unsettled and the job waits, keeping its line
    job = job_of(twin_ctx, job_id)
    (attempt,) = attempts_of(twin_ctx, job_id)
    assert job.state == JobState.PENDING and attempt.unsettled
    assert attempt.lost_at is not None
    assert job.next_attempt_at == attempt.lost_at + timedelta(seconds=SETTLE)
    assert guards.effects[-1] == ("keep", job.to_number, job_id)

    # When the next attempt is offered before the settle delay: nothing is sent
    clock.advance(SETTLE / 2)
    outcome = sending.dispatch([(job_id, 2)], ctx=twin_ctx)
    assert outcome[job_id].startswith("deferred: attempt 1 may still be reaching interfax")
    assert twin.sends(job_id) == []

    # When the provider finally accepts the first send, and the job is offered again
    twin.land_late()
    outcome = sending.dispatch([(job_id, 2)], ctx=twin_ctx)

    # Then the job follows that fax; one send in all
    assert outcome[job_id] == "settled: attempt 1 reached interfax as fax interfax-1"
    job = job_of(twin_ctx, job_id)
    assert (job.state, job.provider_fax_id, job.attempt_count) == (
        JobState.IN_PROGRESS,
        "interfax-1",
        1,
    )
    assert len(twin.sends(job_id)) == 1


def test_a_lost_send_still_absent_after_the_settle_delay_is_settled_and_sent_again(
    twin_ctx: Context, twin: TwinAdapter, clock: Clock
) -> None:
    job_id = submit_job()
    twin.land_next_late()  # and it never lands
    sending.dispatch([(job_id, 1)], ctx=twin_ctx)

    clock.advance(SETTLE + 1)
    outcome = sending.dispatch([(job_id, 2)], ctx=twin_ctx)

    # The offer settles attempt 1 as never sent, and sends nothing itself
    assert outcome[job_id].startswith("attempt 1 never reached the provider")
    assert twin.sends(job_id) == []
    (attempt,) = attempts_of(twin_ctx, job_id)
    assert not attempt.unsettled and "never had this send" in (attempt.error or "")
    # The policy's retry sends it once
    job = job_of(twin_ctx, job_id)
    assert (job.state, job.attempt_count) == (JobState.PENDING, 1)
    clock.advance(3600)
    sending.dispatch([(job_id, 2)], ctx=twin_ctx)
    assert len(twin.sends(job_id)) == 1
    assert job_of(twin_ctx, job_id).state == JobState.IN_PROGRESS


@pytest.mark.parametrize("accepted", [True, False])
def test_reconcile_follows_the_fax_of_a_worker_that_died_or_waits_for_it_to_settle(
    twin_ctx: Context, twin: TwinAdapter, accepted: bool
) -> None:
    # Given a worker that stopped mid-send, the job left dispatching
    job_id = submit_job()
    twin.crash_next(accepted=accepted)
    outcome = sending.dispatch([(job_id, 1)], ctx=twin_ctx)
    assert outcome[job_id].startswith("error:")
    assert job_of(twin_ctx, job_id).state == JobState.DISPATCHING

    # When the tick reconciles it
    sending.reconcile(job_id, ctx=twin_ctx)

    # Then it follows the fax the provider has, or waits, unsettled, for it to settle
    job = job_of(twin_ctx, job_id)
    (attempt,) = attempts_of(twin_ctx, job_id)
    if accepted:
        assert (job.state, job.provider_fax_id) == (JobState.IN_PROGRESS, "interfax-1")
    else:
        assert job.state == JobState.PENDING and attempt.unsettled
        assert attempt.status_code == "lost"
    assert len(twin.sends(job_id)) == int(accepted)


def test_a_reconcile_during_a_slow_send_whose_worker_renews_its_lease_changes_nothing(
    twin_ctx: Context, twin: TwinAdapter
) -> None:
    # Given a slow send: while it waits for the provider, its worker renews its lease and
    # the tick, which read the job before the renewal, reconciles it
    job_id = submit_job()
    outcomes: list[str] = []

    def slow(call: str, argument: object) -> None:
        if call == "send":
            twin.probe = renew_first
            outcomes.append(sending.reconcile(job_id, ctx=twin_ctx))

    def renew_first(call: str, argument: object) -> None:
        if call == "lookup":  # the reconcile has read the job; now the worker renews
            renew(twin_ctx.engine, [job_id])

    twin.probe = slow
    sending.dispatch([(job_id, 1)], ctx=twin_ctx)

    # Then the reconcile stood back, and the send was recorded as usual
    assert outcomes == ["still being sent, or moved meanwhile"]
    job = job_of(twin_ctx, job_id)
    assert (job.state, job.provider_fax_id) == (JobState.IN_PROGRESS, "interfax-1")
    (attempt,) = attempts_of(twin_ctx, job_id)
    assert not attempt.unsettled


def test_an_answer_arriving_after_a_reconcile_judged_it_lost_is_adopted(
    twin_ctx: Context, twin: TwinAdapter, guards: MemoryGuards
) -> None:
    # Given a send so slow that the tick reconciles it (no lease renewal) before the
    # provider has it: the answer is judged lost and the job waits to settle
    job_id = submit_job()
    reconciled: list[str] = []

    def slow(call: str, argument: object) -> None:
        if call == "send":
            twin.probe = None
            reconciled.append(sending.reconcile(job_id, ctx=twin_ctx))

    twin.probe = slow

    # When the provider then accepts the send and the worker records its answer
    outcome = sending.dispatch([(job_id, 1)], ctx=twin_ctx)

    # Then the job, pending meanwhile, follows that fax: the fax id is never dropped
    assert reconciled[0].startswith("the answer to attempt 1 was lost")
    assert outcome[job_id] == "sent as interfax fax interfax-1"
    job = job_of(twin_ctx, job_id)
    assert (job.state, job.provider_fax_id) == (JobState.IN_PROGRESS, "interfax-1")
    (attempt,) = attempts_of(twin_ctx, job_id)
    assert not attempt.unsettled and attempt.provider_fax_id == "interfax-1"
    assert guards.effects[-1] == ("keep", job.to_number, job_id)
    with twin_ctx.session() as session:
        details = session.scalars(select(StatusEvent.detail).where(StatusEvent.job_id == job_id))
        assert any(d and d.startswith("late answer: attempt 1") for d in details)
    assert len(twin.sends(job_id)) == 1


def test_follow_lost_send_makes_the_job_follow_a_send_that_landed(
    twin_ctx: Context, twin: TwinAdapter
) -> None:
    job_id = submit_job()
    twin.land_next_late()
    sending.dispatch([(job_id, 1)], ctx=twin_ctx)
    assert not sending.follow_lost_send(job_id, ctx=twin_ctx)

    twin.land_late()

    assert sending.follow_lost_send(job_id, ctx=twin_ctx)
    assert job_of(twin_ctx, job_id).provider_fax_id == "interfax-1"


def test_a_job_whose_provider_cannot_be_reached_is_held_alone(
    twin_ctx: Context, twin: TwinAdapter
) -> None:
    # Given two jobs in one batch, one for a provider whose credentials are missing
    def adapter(provider: str) -> ProviderAdapter:
        if provider == "optum":
            raise ConfigurationError("FAX_OPTUM__CLIENT_ID is not set")
        return twin

    ctx = replace(twin_ctx, adapter=adapter)
    stuck = submit_job("+12125550101", provider="optum")
    fine = submit_job("+12125550102")

    outcome = sending.dispatch([(stuck, 1), (fine, 1)], ctx=ctx)

    # Then that one is held with the reason, and the other is sent
    held = job_of(ctx, stuck)
    assert held.state == JobState.HELD
    assert held.reason == "cannot be sent: optum cannot send: FAX_OPTUM__CLIENT_ID is not set"
    assert outcome[fine] == "sent as interfax fax interfax-1"
    assert attempts_of(ctx, stuck) == []


def test_a_job_past_its_deadline_fails_without_a_send(
    twin_ctx: Context, twin: TwinAdapter, clock: Clock
) -> None:
    job_id = submit_job(deadline=clock() + timedelta(minutes=30))
    clock.advance(3600)

    sending.dispatch([(job_id, 1)], ctx=twin_ctx)

    job = job_of(twin_ctx, job_id)
    assert job.state == JobState.FAILED and "deadline" in (job.reason or "")
    assert twin.sends() == []


def test_a_line_on_a_call_defers_the_job_and_publishes_it_again(
    twin_ctx: Context, twin: TwinAdapter, guards: MemoryGuards, publisher: RecordingPublisher
) -> None:
    job_id = submit_job("+12125550100")
    guards.held["+12125550100"] = "another-job"

    outcome = sending.dispatch([(job_id, 1)], ctx=twin_ctx)

    assert outcome[job_id] == "deferred: +12125550100 is on a call with another fax"
    assert job_of(twin_ctx, job_id).state == JobState.PENDING
    assert publisher.dispatched == [(job_id, 1)]
    assert twin.sends() == []


def test_line_effects_happen_only_after_the_commit(
    twin_ctx: Context, twin: TwinAdapter, guards: MemoryGuards, clock: Clock
) -> None:
    # Given a probe that reads the job, from another connection, at each Redis effect
    job_id = submit_job()
    states: list[tuple[str, str]] = []
    guards.on_effect = lambda effect: states.append((effect[0], job_of(twin_ctx, job_id).state))

    # When a lost answer makes the job keep its line, and a later refusal frees it
    twin.land_next_late()
    sending.dispatch([(job_id, 1)], ctx=twin_ctx)
    clock.advance(SETTLE + 1)
    sending.dispatch([(job_id, 2)], ctx=twin_ctx)  # settles attempt 1 as never sent
    clock.advance(3600)
    twin.refuse_next(ProviderRejected("interfax", "http_400", "bad number", status_code=400))
    sending.dispatch([(job_id, 2)], ctx=twin_ctx)

    # Then each effect saw the state its transaction committed
    assert states == [
        ("keep", JobState.PENDING),
        ("release", JobState.PENDING),
        ("release", JobState.FAILED),
    ]
