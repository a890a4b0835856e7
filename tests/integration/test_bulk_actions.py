"""Acting on every job a filter matches (``faxctl retry --family busy --since ...``), on
the real stack: counted and confirmed first, in chunks, and safe to interrupt and run
again. The sandbox's send log says what was sent."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from typer.testing import CliRunner

from dispatcher import queries, selection
from dispatcher.cli import app as cli
from dispatcher.clock import utcnow
from dispatcher.queries import Search
from dispatcher.submission import FaxRequest, submit
from tests.fixtures.documents import make_pdf
from tests.fixtures.stack import Stack

pytestmark = pytest.mark.e2e

BUSY_THEN_SUCCESS = "+12025550101"  # busy, busy, then success
UNALLOCATED = "+12025550103"
FINAL = {"succeeded", "failed", "cancelled"}


def send(to: str, provider: str = "interfax", **fields: Any) -> str:
    request = FaxRequest(to=to, documents=[("a.pdf", make_pdf(1))], provider=provider, **fields)
    return submit(request).job_id


def ended(stack: Stack, job_id: str) -> dict[str, Any]:
    return stack.wait_for(lambda: (job := queries.get_job(job_id))["state"] in FINAL and job)


def test_retry_every_job_that_failed_as_busy_since_a_time(stack: Stack) -> None:
    since = utcnow() - timedelta(seconds=1)
    busy = [
        send(BUSY_THEN_SUCCESS, provider, options={"max_attempts": 1})
        for provider in ("interfax", "faxplus")
    ]
    unallocated = send(UNALLOCATED)
    for job_id in [*busy, unallocated]:
        assert ended(stack, job_id)["state"] == "failed"

    answer = CliRunner().invoke(
        cli,
        ["retry", "--family", "busy", "--since", since.isoformat(), "--yes", "--json"],
    )

    assert answer.exit_code == 0, answer.output
    assert json.loads(answer.output) == {"matched": 2, "acted": 2, "refused": {}}
    # The busy ones were sent again (their scenario's second call is busy again)
    stack.wait_for(lambda: all(len(stack.sends(job_id)) == 2 for job_id in busy))
    for job_id in busy:
        assert ended(stack, job_id)["state"] == "failed"
    # The unallocated one is not busy: left as it was, sent once
    assert queries.get_job(unallocated)["state"] == "failed"
    assert len(stack.sends(unallocated)) == 1


def test_a_bulk_action_is_counted_and_asked_first(stack: Stack) -> None:
    later = utcnow() + timedelta(hours=3)
    jobs = [send(BUSY_THEN_SUCCESS, "optum", send_at=later) for _ in range(3)]
    runner = CliRunner()

    declined = runner.invoke(
        cli, ["hold", "--state", "pending", "--provider", "optum"], input="n\n"
    )
    assert declined.exit_code == 1
    assert "3 jobs match" in declined.output and "hold 3 jobs?" in declined.output
    assert {queries.get_job(j)["state"] for j in jobs} == {"pending"}

    accepted = runner.invoke(
        cli, ["hold", "--state", "pending", "--provider", "optum"], input="y\n"
    )
    assert accepted.exit_code == 0, accepted.output
    assert {queries.get_job(j)["state"] for j in jobs} == {"held"}

    wrong = runner.invoke(cli, ["hold", "--state", "failed", "--yes"])
    assert wrong.exit_code == 2 and "hold applies to pending jobs" in wrong.output
    assert runner.invoke(cli, ["hold"]).exit_code == 2


def test_an_interrupted_run_run_again_acts_on_each_job_once(stack: Stack) -> None:
    later = utcnow() + timedelta(hours=3)
    jobs = [send(BUSY_THEN_SUCCESS, "faxplus", send_at=later) for _ in range(5)]
    search = Search(state="pending", provider="faxplus")

    def interrupt(result: selection.BulkResult) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        selection.act_on_matching("hold", search, chunk=2, progress=interrupt)
    assert [queries.get_job(j)["state"] for j in jobs].count("held") == 2
    assert selection.count_matching("hold", search) == 3

    again = selection.act_on_matching("hold", search, chunk=2)

    assert (again.acted, again.refused) == (3, {})
    for job_id in jobs:
        holds = [e for e in queries.events(job_id) if e["to"] == "held"]
        assert len(holds) == 1
    assert all(stack.sends(j) == [] for j in jobs)
