"""One bad job never stalls the others (issue 14, part 3), on the real stack.

A job that cannot be sent or followed is dealt with alone, with a reason an operator
reads in ``faxctl status``; no job waits forever in a state that depends on something
else; an operator's cancel never lets a lost send through, nor keeps a line busy.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import delete, event, select, update

from config.settings import get_settings
from dispatcher import guards, operations, queries, sending, tracking, watchdog
from dispatcher.clock import utcnow
from dispatcher.errors import ValidationError
from dispatcher.lifecycle import JobState, transition
from dispatcher.runtime import clear_adapters, get_adapter
from dispatcher.store.db import get_engine, session_scope
from dispatcher.store.models import DocumentContent, Job, JobDocument
from dispatcher.submission import FaxRequest, submit, submit_many
from dispatcher.validation import MAX_DOCUMENT_BYTES, validate_fax
from tests.fixtures.documents import make_pdf
from tests.fixtures.stack import Stack
from tests.fixtures.webhooks import TestClient

pytestmark = pytest.mark.e2e

#: A send times out after 1 s, and its lost answer may still land for 30 s.
STACK_ENV = {"FAX_PROVIDER_TIMEOUT": "1", "FAX_SETTLE_DELAY": "30"}
SUCCESS = "+12025550100"
SLOW = "+12025550109"
FINAL = {"succeeded", "failed", "cancelled"}


def _due(to: str, provider: str, pages: int = 1) -> str:
    """A job due now with no message published (as the tick finds it)."""
    request = FaxRequest(to=to, documents=[("a.pdf", make_pdf(pages))], provider=provider)
    return submit_many([request], publish=False)[0].job_id


def _state(job_id: str) -> str:
    return str(queries.get_job(job_id)["state"])


def _final(job_id: str) -> Callable[[], bool]:
    """A condition for ``Stack.wait_for``: the job has reached a final state."""
    return lambda: _state(job_id) in FINAL


def test_a_job_whose_document_is_missing_is_held_alone_and_its_batch_goes_on(
    stack: Stack,
) -> None:
    # Given a batch of three due jobs, the document of one gone from the store
    good, bad, other = (
        _due(SUCCESS, "interfax"),
        _due("+12025551001", "interfax", 2),
        _due("+12025551002", "faxplus"),
    )
    with session_scope() as session:
        sha = session.scalars(select(JobDocument.sha256).where(JobDocument.job_id == bad)).one()
        session.execute(delete(DocumentContent).where(DocumentContent.sha256 == sha))

    # When the batch is dispatched
    said = sending.dispatch([(good, 1), (bad, 1), (other, 1)])

    # Then the bad job is held with the reason, and the others are sent
    assert said[bad].startswith("held: cannot be sent: document")
    job = queries.get_job(bad)
    assert (job["state"], job["attempts"]) == ("held", 0)
    assert "missing from the database" in job["reason"]
    for job_id in (good, other):
        assert said[job_id].startswith("sent as")
        assert stack.wait_for(_final(job_id)) and _state(job_id) == "succeeded"
    assert stack.sends(bad) == []


def test_a_job_whose_provider_has_no_credentials_is_held_alone(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given FAX.PLUS without credentials (and no sandbox for it), InterFAX configured
    faxplus_job, interfax_job = _due(SUCCESS, "faxplus"), _due("+12025551003", "interfax")
    monkeypatch.setenv("FAX_SANDBOX_URL", "")
    monkeypatch.setenv("FAX_INTERFAX__BASE_URL", f"{stack.sandbox_url}/interfax")
    monkeypatch.setenv("FAX_INTERFAX__USERNAME", "sandbox")
    monkeypatch.setenv("FAX_INTERFAX__PASSWORD", "sandbox")
    get_settings.cache_clear()
    clear_adapters()

    # When both are dispatched together
    said = sending.dispatch([(faxplus_job, 1), (interfax_job, 1)])

    # Then the FAX.PLUS job is held saying what to configure; the other one is sent
    job = queries.get_job(faxplus_job)
    assert job["state"] == "held"
    assert "faxplus cannot send" in job["reason"] and "FAX_SANDBOX_URL" in job["reason"]
    assert said[interfax_job].startswith("sent as interfax fax")
    assert len(stack.sends(interfax_job)) == 1


def test_a_fax_the_provider_does_not_know_is_held_and_the_others_are_polled(
    stack: Stack,
) -> None:
    # Given two InterFAX faxes in progress, one of them unknown to InterFAX (404)
    known, unknown = _due(SLOW, "interfax"), _due("+12025551004", "interfax")
    sending.dispatch([(known, 1), (unknown, 1)])
    with session_scope() as session:
        session.execute(update(Job).where(Job.id == unknown).values(provider_fax_id="999999999"))

    # When both are polled in one batch
    tracking.poll("interfax", [known, unknown])

    # Then the unknown one is held with the reason; the other's status was read
    job = queries.get_job(unknown)
    assert job["state"] == "held"
    assert "interfax has no fax 999999999 (404)" in job["reason"]
    assert _state(known) == "in_progress"
    assert [e["source"] for e in queries.events(known)].count("poll") >= 1


def test_jobs_past_their_states_maximum_age_go_where_an_operator_sees_them(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a FAX.PLUS fax cancelled at the provider (polled forever, before), a job stuck
    # dispatching, and one held
    cancelled_there, stuck, held = (
        _due(SLOW, "faxplus"),
        _due("+12025551005", "interfax"),
        _due("+12025551006", "interfax"),
    )
    sending.dispatch([(cancelled_there, 1)])
    get_adapter("faxplus").cancel(queries.get_job(cancelled_there)["provider_fax_id"])
    tracking.poll("faxplus", [cancelled_there])
    assert _state(cancelled_there) == "in_progress"
    with session_scope() as session:
        for job_id, state in ((stuck, JobState.DISPATCHING), (held, JobState.HELD)):
            assert transition(session, session.get_one(Job, job_id), state)

    # When the watchdog looks after each state's maximum age
    later = utcnow() + timedelta(days=8)
    assert watchdog.watch(later) == 3

    # Then each is where an operator looks, with the reason, and counted in the metrics
    first = queries.get_job(cancelled_there)
    assert first["state"] == "held"
    assert first["reason"].startswith("stalled: no final status from faxplus")
    assert _state(stuck) == "held"
    assert "stalled: dispatching" in queries.get_job(stuck)["reason"]
    assert _state(held) == "failed"
    assert [e["source"] for e in queries.events(held)][-1] == "watchdog"
    monkeypatch.setenv("FAX_API_TOKENS", json.dumps(["t" * 40]))
    get_settings.cache_clear()
    from dispatcher.api import create_app

    with TestClient(create_app()) as api:
        text = api.get("/metrics", headers={"Authorization": "Bearer " + "t" * 40}).text
    assert "fax_stalled_jobs 2.0" in text


def test_a_cancel_after_a_lost_answer_asks_the_provider_and_cancels_the_fax_there(
    stack: Stack,
) -> None:
    # Given a send accepted only after the worker's call timed out: the job waits, pending,
    # while the lost send settles
    stack.set_faults(numbers={SLOW: "slow_accept"}, slow_accept_seconds=2)
    job_id = submit(
        FaxRequest(to=SLOW, documents=[("a.pdf", make_pdf())], provider="interfax")
    ).job_id
    stack.wait_for(lambda: queries.get_job(job_id)["reason"] or "", drive_ticks=False)
    stack.wait_for(lambda: stack.sends(job_id), drive_ticks=False)
    assert _state(job_id) == "pending"

    # When an operator cancels it
    operations.cancel(job_id)

    # Then the provider was asked first: the fax it had is cancelled there, not left to go
    job = queries.get_job(job_id)
    assert job["state"] == "cancelled"
    [sent] = stack.sends(job_id)
    assert job["provider_fax_id"] == sent["fax_id"]
    record = httpx.get(
        f"{stack.sandbox_url}/interfax/outbound/faxes/{sent['fax_id']}", auth=("sandbox", "sandbox")
    ).json()
    assert record["status"] > 0  # final: cancelled


def test_a_cancel_that_beats_a_claim_gives_the_line_back(stack: Stack) -> None:
    # Given a due job, cancelled by an operator between the guards and its claim
    job_id = _due("+12025551007", "interfax")
    engine = get_engine()
    cancelled: list[bool] = []

    def operator_cancels(conn, cursor, statement, parameters, *_: object) -> None:  # noqa: ANN001
        claiming = statement.startswith("UPDATE jobs SET") and "dispatching" in str(parameters)
        if claiming and not cancelled:
            cancelled.append(True)
            operations.cancel(job_id)

    event.listen(engine, "before_cursor_execute", operator_cancels)
    try:
        said = sending.dispatch([(job_id, 1)])
    finally:
        event.remove(engine, "before_cursor_execute", operator_cancels)

    # Then nothing was sent, and the line is free for another fax at once
    assert said[job_id] == "skipped: moved meanwhile"
    assert _state(job_id) == "cancelled"
    other = guards.Send("other-job", "+12025551007", "interfax", False)
    assert guards.check_sends([other]) == [None]


def test_a_document_too_large_for_every_provider_is_refused_before_it_is_parsed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def never(*_: object, **__: object) -> None:
        raise AssertionError("parsed")

    monkeypatch.setattr("pypdf.PdfReader", never)  # imported where a PDF is read
    huge = b"%PDF-1.4\n" + b"0" * MAX_DOCUMENT_BYTES
    with pytest.raises(ValidationError) as refused:
        validate_fax(SUCCESS, [("big.pdf", huge)], "faxplus")
    assert refused.value.field == "documents"
    assert "bytes is over" in refused.value.reason
