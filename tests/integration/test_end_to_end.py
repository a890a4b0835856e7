"""End to end on the real stack: embedded broker, a Celery worker process, the sandbox
over HTTP, and the database (SQLite and PostgreSQL). Time runs at FAX_TIME_SCALE=0.005.

Each test checks the job's final state, its attempts row by row, and the sandbox's send
log (nothing sent twice, nothing sent that should not have been).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from dispatcher import operations, queries, sending
from dispatcher.clock import utcnow
from dispatcher.lifecycle import JobState, transition
from dispatcher.providers.base import Document, SendRequest
from dispatcher.runtime import get_adapter
from dispatcher.sending import reference_for
from dispatcher.store.db import session_scope
from dispatcher.store.models import Attempt, Job
from dispatcher.submission import FaxRequest, submit, submit_many
from tests.fixtures.documents import make_pdf
from tests.fixtures.stack import TIME_SCALE, Stack

pytestmark = pytest.mark.e2e

SUCCESS = "+12025550100"
BUSY_BUSY_SUCCESS = "+12025550101"
NO_ANSWER = "+12025550102"
UNALLOCATED = "+12025550103"
TEMPORARY = "+12025550105"
PARTIAL = "+12025550107"
SLOW = "+12025550109"
FINAL = {"succeeded", "failed", "cancelled"}


def send(to: str, provider: str, **options: Any) -> str:
    request = FaxRequest(
        to=to, documents=[("letter.pdf", make_pdf(3))], provider=provider, options=options
    )
    return submit(request).job_id


def state_in(stack: Stack, job_id: str, states: set[str], timeout: float = 60.0) -> dict[str, Any]:
    return stack.wait_for(
        lambda: (job := queries.get_job(job_id))["state"] in states and job, timeout
    )


def times(rows: list[dict[str, Any]], key: str) -> list[datetime]:
    return [datetime.fromisoformat(row[key]) for row in rows]


@pytest.mark.parametrize(
    ("provider", "code"), [("interfax", "0"), ("faxplus", "success"), ("optum", "FaxSent")]
)
def test_success_on_the_first_try(stack: Stack, provider: str, code: str) -> None:
    job_id = send(SUCCESS, provider)
    job = state_in(stack, job_id, FINAL)
    assert job["state"] == "succeeded"
    [attempt] = queries.attempts(job_id)
    assert (attempt["code"], attempt["outcome"], attempt["remediation"]) == (
        code,
        "success",
        "success",
    )
    assert attempt["provider_fax_id"] == job["provider_fax_id"]
    assert len(stack.sends(job_id)) == 1


def test_busy_busy_then_success_waits_per_policy(stack: Stack) -> None:
    job_id = send(BUSY_BUSY_SUCCESS, "interfax")
    assert state_in(stack, job_id, FINAL)["state"] == "succeeded"
    rows = queries.attempts(job_id)
    assert [(r["code"], r["remediation"]) for r in rows] == [
        ("3931", "wait_and_retry"),
        ("3931", "wait_and_retry"),
        ("0", "success"),
    ]
    # The busy family waits base 180 s (x1.5 after the second busy), +/-10 % jitter.
    started, finished = times(rows, "started_at"), times(rows, "finished_at")
    first_wait = (started[1] - finished[0]).total_seconds()
    second_wait = (started[2] - finished[1]).total_seconds()
    assert first_wait >= 180 * TIME_SCALE * 0.9
    assert second_wait >= 180 * 1.5 * TIME_SCALE * 0.9
    assert [s["attempt"] for s in stack.sends(job_id)] == [1, 2, 3]


def test_no_answer_until_the_attempt_limit_fails_with_the_reason(stack: Stack) -> None:
    job_id = send(NO_ANSWER, "faxplus", max_attempts=3)
    job = state_in(stack, job_id, FINAL)
    assert job["state"] == "failed"
    assert "gave up after 3 attempts" in job["reason"]
    assert "failed_no_answer" in job["reason"]
    rows = queries.attempts(job_id)
    assert [r["code"] for r in rows] == ["failed_no_answer"] * 3
    assert len(stack.sends(job_id)) == 3


def test_an_unallocated_number_is_tried_once(stack: Stack) -> None:
    job_id = send(UNALLOCATED, "faxplus")
    job = state_in(stack, job_id, FINAL)
    assert job["state"] == "failed"
    assert job["remediation"] == "no_retry"
    assert "Check the number" in job["reason"]
    [attempt] = queries.attempts(job_id)
    assert attempt["code"] == "failed_unallocated_number"
    assert len(stack.sends(job_id)) == 1


def test_a_temporary_failure_is_retried_at_once(stack: Stack) -> None:
    job_id = send(TEMPORARY, "faxplus")
    assert state_in(stack, job_id, FINAL)["state"] == "succeeded"
    first, second = queries.attempts(job_id)
    assert (first["code"], first["remediation"]) == (
        "failed_normal_temporary_failure",
        "retry_immediately",
    )
    gap = (
        datetime.fromisoformat(second["started_at"]) - datetime.fromisoformat(first["finished_at"])
    ).total_seconds()
    assert gap < 120 * TIME_SCALE  # far sooner than any wait_and_retry backoff
    assert len(stack.sends(job_id)) == 2


def test_interfax_in_progress_codes_are_polled_to_the_final_code(stack: Stack) -> None:
    job_id = send(SUCCESS, "interfax")
    assert state_in(stack, job_id, FINAL)["state"] == "succeeded"
    seen = [e["code"] for e in queries.events(job_id) if e["source"] == "poll"]
    assert seen[-1] == "0"
    assert any(code.startswith("-") for code in seen[:-1]), seen


def test_optum_failure_uses_its_manual_retry_before_sending_anew(stack: Stack) -> None:
    job_id = send(TEMPORARY, "optum")
    assert state_in(stack, job_id, FINAL)["state"] == "succeeded"
    first, second = queries.attempts(job_id)
    assert (first["kind"], first["code"]) == ("send", "FaxFailed/TransmissionError")
    assert (second["kind"], second["code"]) == ("provider_retry", "FaxSent")
    assert second["provider_fax_id"] == first["provider_fax_id"]
    # One fax was posted; Optum resent its own copy.
    assert [s for s in stack.sends(job_id) if s.get("kind", "send") == "send"].__len__() == 1


def test_a_partial_send_records_the_pages_sent(stack: Stack) -> None:
    job_id = send(PARTIAL, "interfax")
    assert state_in(stack, job_id, FINAL)["state"] == "succeeded"
    first, second = queries.attempts(job_id)
    assert (first["code"], first["outcome"], first["pages_sent"]) == ("3268", "partial", 2)
    assert second["code"] == "0"


@pytest.mark.parametrize("provider", ["interfax", "faxplus", "optum"])
def test_cancel_while_in_progress(stack: Stack, provider: str) -> None:
    job_id = send(SLOW, provider)
    state_in(stack, job_id, {"in_progress"})
    operations.cancel(job_id)
    assert queries.get_job(job_id)["state"] == "cancelled"
    events = queries.events(job_id)
    assert events[-1]["source"] == "operator" and events[-1]["to"] == "cancelled"
    assert len(stack.sends(job_id)) == 1


def test_no_attempt_starts_after_the_deadline(stack: Stack) -> None:
    request = FaxRequest(
        to=BUSY_BUSY_SUCCESS,
        documents=[("letter.pdf", make_pdf())],
        provider="interfax",
        deadline=utcnow() + timedelta(seconds=2),
    )
    job_id = submit(request).job_id
    job = state_in(stack, job_id, FINAL)
    assert job["state"] == "failed" and "deadline" in job["reason"]
    assert 1 <= len(stack.sends(job_id)) <= 2


def _claim_as_a_worker_that_died(job_id: str, provider: str) -> str:
    """What a worker killed mid-send leaves: the job dispatching, attempt 1 written."""
    with session_scope() as session:
        job = session.get_one(Job, job_id)
        assert transition(session, job, JobState.DISPATCHING, attempt_count=1)
        reference = reference_for(job_id, 1)
        session.add(Attempt(job_id=job_id, number=1, provider=provider, reference=reference))
    return reference


@pytest.mark.parametrize("reached_the_provider", [True, False])
def test_a_job_left_mid_send_is_reconciled_and_sent_once(
    stack: Stack, reached_the_provider: bool
) -> None:
    # Given a job claimed by a worker that died mid-send (its own send is not due yet)
    job_id = submit(
        FaxRequest(
            to=SUCCESS,
            documents=[("letter.pdf", make_pdf())],
            provider="interfax",
            send_at=utcnow() + timedelta(seconds=3),
        )
    ).job_id
    reference = _claim_as_a_worker_that_died(job_id, "interfax")
    fax_id = None
    if reached_the_provider:  # the send went out, only its answer was lost
        document = Document("a.pdf", "application/pdf", make_pdf())
        request = SendRequest(job_id, reference, SUCCESS, [document])
        fax_id = get_adapter("interfax").send(request)

    # When it is reconciled
    said = sending.reconcile(job_id)

    # Then a send the provider has is followed; one it does not show is looked up again
    # after the settle delay, then sent anew. Either way the fax goes out exactly once
    if reached_the_provider:
        assert said == f"found the send at the provider as fax {fax_id}"
        assert queries.get_job(job_id)["state"] == "in_progress"
    else:
        assert said.startswith("the answer to attempt 1 was lost")
        assert queries.get_job(job_id)["state"] == "pending"
        assert queries.attempts(job_id)[0]["unsettled"] is True
    assert state_in(stack, job_id, FINAL)["state"] == "succeeded"
    assert len(stack.sends(job_id)) == 1
    assert len(queries.attempts(job_id)) == (1 if reached_the_provider else 2)


def test_a_batch_sends_together_and_holds_a_second_fax_for_a_busy_line(stack: Stack) -> None:
    # Given three faxes found due together (as the tick finds them), two to one number
    line, other = "+12025551001", "+12025551002"
    pdf = make_pdf()
    requests = [
        FaxRequest(to=number, documents=[("a.pdf", pdf)], provider="interfax")
        for number in (line, line, other)
    ]
    first, second, third = [s.job_id for s in submit_many(requests, publish=False)]

    # When one batch dispatches them (with a duplicate of the first in it)
    said = sending.dispatch([(first, 1), (second, 1), (third, 1), (first, 1)])

    # Then the first and the third go out once each, and the second waits for the line
    assert said[first].startswith("sent as interfax fax")
    assert said[third].startswith("sent as interfax fax")
    assert said[second] == "deferred: +1202555**** is on a call with another fax"  # masked
    assert [len(stack.sends(job_id)) for job_id in (first, second, third)] == [1, 0, 1]
    assert queries.get_job(second)["state"] == "pending"
    # A late copy of the batch changes nothing
    again = sending.dispatch([(first, 1), (third, 1)])
    assert set(again.values()) == {"skipped: job is in_progress at attempt 1"}
    # And once the line is free the second goes out too, and all three succeed, each once
    for job_id in (first, second, third):
        assert state_in(stack, job_id, FINAL)["state"] == "succeeded"
    assert [len(stack.sends(job_id)) for job_id in (first, second, third)] == [1, 1, 1]
