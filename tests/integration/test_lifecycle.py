"""The lifecycle's conditional transitions, on SQLite and on a real PostgreSQL."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import Engine, select

from dispatcher.errors import IllegalTransition
from dispatcher.lifecycle import TRANSITIONS, JobState, check, transition, transition_row
from dispatcher.store.db import session_scope
from dispatcher.store.models import Job


def make_job(engine: Engine, state: JobState = JobState.PENDING) -> str:
    job_id = uuid.uuid4().hex
    with session_scope(engine) as session:
        session.add(
            Job(
                id=job_id,
                to_number="+12025550100",
                provider="interfax",
                state=state.value,
                request_hash="0" * 64,
            )
        )
    return job_id


def load(engine: Engine, job_id: str) -> Job:
    with session_scope(engine) as session:
        return session.get_one(Job, job_id)


def test_a_transition_moves_the_job_and_bumps_its_version(engine: Engine) -> None:
    job_id = make_job(engine)
    with session_scope(engine) as session:
        job = session.get_one(Job, job_id)
        assert transition(session, job, JobState.DISPATCHING)
        assert job.state == "dispatching" and job.version == 2
    stored = load(engine, job_id)
    assert (stored.state, stored.version) == ("dispatching", 2)


def test_a_stale_copy_changes_nothing(engine: Engine) -> None:
    # Given two readers of the same job (a task delivered twice)
    job_id = make_job(engine)
    with session_scope(engine) as session:
        first = session.get_one(Job, job_id)
        session.expunge(first)
    with session_scope(engine) as session:
        second = session.get_one(Job, job_id)
        session.expunge(second)
    # When both try to claim it
    with session_scope(engine) as session:
        won = transition(session, session.merge(first, load=False), JobState.DISPATCHING)
    with session_scope(engine) as session:
        lost = transition(session, session.merge(second, load=False), JobState.DISPATCHING)
    # Then only one wins and the row moved once
    assert (won, lost) == (True, False)
    assert load(engine, job_id).version == 2


def test_many_concurrent_claims_let_exactly_one_through(engine: Engine) -> None:
    job_id = make_job(engine)

    def claim() -> bool:
        with session_scope(engine) as session:
            job = session.get_one(Job, job_id)
            try:
                return transition(session, job, JobState.DISPATCHING)
            except IllegalTransition:  # read after the winner committed
                return False

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda _: claim(), range(8)))
    assert results.count(True) == 1


def test_an_illegal_transition_raises_and_changes_nothing(engine: Engine) -> None:
    job_id = make_job(engine, JobState.SUCCEEDED)
    with session_scope(engine) as session:
        job = session.get_one(Job, job_id)
        with pytest.raises(IllegalTransition, match="cannot go from succeeded to pending"):
            transition(session, job, JobState.PENDING)
    assert load(engine, job_id).state == "succeeded"


def test_final_states_stamp_finished_at_and_a_retry_clears_it(engine: Engine) -> None:
    job_id = make_job(engine, JobState.IN_PROGRESS)
    with session_scope(engine) as session:
        job = session.get_one(Job, job_id)
        assert transition(session, job, JobState.FAILED, reason="no answer")
    assert load(engine, job_id).finished_at is not None
    with session_scope(engine) as session:
        job = session.get_one(Job, job_id)
        assert transition(session, job, JobState.PENDING)
    assert load(engine, job_id).finished_at is None


def test_the_table_has_no_way_out_of_succeeded_or_cancelled() -> None:
    for final in (JobState.SUCCEEDED, JobState.CANCELLED):
        assert TRANSITIONS[final] == frozenset()
        for target in JobState:
            with pytest.raises(IllegalTransition):
                check("j", final, target)


def test_every_active_state_but_mid_send_can_be_cancelled() -> None:
    for state in (JobState.PENDING, JobState.IN_PROGRESS, JobState.HELD):
        check("j", state, JobState.CANCELLED)
    with pytest.raises(IllegalTransition):
        check("j", JobState.DISPATCHING, JobState.CANCELLED)


def test_scheduler_indexes_exist(engine: Engine) -> None:
    from sqlalchemy import inspect

    names = {ix["name"] for ix in inspect(engine).get_indexes("jobs")}
    assert {"ix_jobs_state_next_attempt_at", "ix_jobs_state_next_poll_at"} <= names
    with session_scope(engine) as session:
        assert session.scalars(select(Job)).all() == []


def test_a_move_by_id_only_applies_to_the_claim_it_names(engine: Engine) -> None:
    # Given a job claimed for attempt 2 (attempt 1 was lost and the job claimed again)
    job_id = make_job(engine)
    with session_scope(engine) as session:
        job = session.get_one(Job, job_id)
        assert transition(session, job, JobState.DISPATCHING, attempt_count=2)

    # When a late answer for attempt 1 arrives, then the answer for attempt 2
    def answer(attempt: int, fax_id: str) -> bool:
        with engine.begin() as connection:
            return transition_row(
                connection,
                job_id,
                JobState.DISPATCHING,
                JobState.IN_PROGRESS,
                expect={"attempt_count": attempt},
                provider_fax_id=fax_id,
            )

    late, current = answer(1, "old"), answer(2, "new")
    # Then only the second moves the job, and it bumps the version like any move
    assert (late, current) == (False, True)
    stored = load(engine, job_id)
    assert (stored.state, stored.provider_fax_id, stored.version) == ("in_progress", "new", 3)


def test_a_move_by_id_checks_the_transition_table(engine: Engine) -> None:
    job_id = make_job(engine, JobState.SUCCEEDED)
    with engine.begin() as connection, pytest.raises(IllegalTransition):
        transition_row(connection, job_id, JobState.SUCCEEDED, JobState.PENDING)
    assert load(engine, job_id).state == "succeeded"
