"""Pausing a provider, on the real stack: an operator's pause from ``faxctl`` and the API,
and the pause the dispatcher takes by itself when a provider reports no credit, with
its probe and its end. The sandbox's send log says what went out, and in what order."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from dispatcher import pauses, queries
from dispatcher.api.app import create_app
from dispatcher.cli import app as cli
from dispatcher.submission import FaxRequest, submit
from tests.fixtures.api import bearer
from tests.fixtures.documents import make_pdf
from tests.fixtures.stack import TIME_SCALE, Stack

pytestmark = pytest.mark.e2e

#: A probe every 3 s of real time: long enough to see jobs wait behind the pause.
STACK_ENV = {"FAX_PAUSE_PROBE_INTERVAL": str(3 / TIME_SCALE)}

SUCCESS = "+12025550100"
NO_CREDIT = "+12025550106"  # insufficient credit, then success
FINAL = {"succeeded", "failed", "cancelled"}


def send(to: str, provider: str) -> str:
    request = FaxRequest(to=to, documents=[("letter.pdf", make_pdf(1))], provider=provider)
    return submit(request).job_id


def order_of_sends(stack: Stack, *job_ids: str) -> list[str]:
    """The jobs of ``job_ids`` in the order the sandbox accepted their sends."""
    prefixes = {f"fd-{job_id}-": job_id for job_id in job_ids}
    return [
        job_id
        for entry in stack.sends()
        for prefix, job_id in prefixes.items()
        if (entry.get("reference") or "").startswith(prefix)
    ]


def test_an_operators_pause_keeps_new_sends_back_until_resumed(stack: Stack) -> None:
    runner = CliRunner()
    paused = runner.invoke(cli, ["providers", "pause", "faxplus", "--reason", "maintenance"])
    assert paused.exit_code == 0, paused.output
    shown = runner.invoke(cli, ["providers", "--json"])
    assert '"paused_reason": "maintenance"' in shown.output

    waiting = send(SUCCESS, "faxplus")
    other = send(SUCCESS, "interfax")

    # The other provider's fax goes all the way while the paused one's waits, unsent
    assert stack.wait_for(lambda: queries.get_job(other)["state"] in FINAL) is True
    job = queries.get_job(waiting)
    assert (job["state"], stack.sends(waiting)) == ("pending", [])
    assert job["reason"] == "waiting: faxplus is paused (maintenance)"

    resumed = runner.invoke(cli, ["providers", "resume", "faxplus"])
    assert resumed.exit_code == 0, resumed.output
    stack.wait_for(lambda: queries.get_job(waiting)["state"] == "succeeded")
    assert len(stack.sends(waiting)) == 1
    assert runner.invoke(cli, ["providers", "resume", "faxplus"]).exit_code != 0


def test_the_api_pauses_and_resumes_for_operators_only(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAX_API_TOKENS", '["admin-token"]')
    from config.settings import get_settings

    get_settings.cache_clear()
    with TestClient(create_app()) as client:
        admin = bearer("admin-token")
        answer = client.post(
            "/v1/providers/optum/pause", json={"reason": "account review"}, headers=admin
        )
        assert answer.status_code == 200, answer.text
        assert (answer.json()["paused_reason"], answer.json()["paused_by"]) == (
            "account review",
            "admin:1",
        )
        assert client.post("/v1/providers/nope/pause", headers=admin).status_code == 404
        # A reason that is not printable text is refused, and the pause stays as it was
        bad = client.post("/v1/providers/optum/pause", json={"reason": "\x00"}, headers=admin)
        assert (bad.status_code, bad.json()["field"]) == (422, "reason"), bad.text
        assert pauses.current()["optum"].reason == "account review"
        assert client.post("/v1/providers/optum/pause").status_code == 401
        assert client.post("/v1/providers/optum/resume", headers=admin).json()["paused"] is False
    assert pauses.current() == {}


def test_out_of_credit_pauses_the_provider_by_itself_and_a_probe_resumes_it(
    stack: Stack,
) -> None:
    # Given a fax that FAX.PLUS reports out of credit
    broke = send(NO_CREDIT, "faxplus")
    pause = stack.wait_for(lambda: pauses.current().get("faxplus"))
    assert pause.automatic and pause.reason == "out of credit: Insufficient credit"
    # Then it waits pending, not held, and a fax queued behind it is not sent meanwhile
    queued = send(SUCCESS, "faxplus")
    assert queries.get_job(broke)["state"] == "pending"

    # When the probe finds credit back (the sandbox's second answer is success)
    stack.wait_for(lambda: queries.get_job(queued)["state"] == "succeeded")

    # Then the probe went first, alone; the pause ended by itself; the queued fax followed
    assert queries.get_job(broke)["state"] == "succeeded"
    assert order_of_sends(stack, broke, queued) == [broke, broke, queued]
    assert [a["code"] for a in queries.attempts(broke)] == ["insufficient_credit", "success"]
    assert pauses.current() == {}
