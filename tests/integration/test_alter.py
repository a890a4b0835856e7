"""Changing a queued fax (``PATCH /v1/faxes/{id}``, ``faxctl alter``) and sending one now
(``push``), on the real stack: the worker, the broker and the sandbox's send log."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from config.settings import get_settings
from dispatcher import queries
from dispatcher.api.app import create_app
from dispatcher.cli import app as cli
from dispatcher.clock import utcnow
from dispatcher.submission import FaxRequest, submit
from tests.fixtures.api import ADMIN, bearer
from tests.fixtures.documents import make_pdf
from tests.fixtures.stack import Stack

pytestmark = pytest.mark.e2e

SUCCESS = "+12025550100"
OTHER = "+12025550111"


@pytest.fixture
def client(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.setenv("FAX_API_TOKENS", json.dumps([ADMIN]))
    get_settings.cache_clear()
    with TestClient(create_app(), headers=bearer(ADMIN)) as http:
        yield http


def later_fax(provider: str = "faxplus", hours: float = 2) -> str:
    """A fax that waits: its send time is ``hours`` away."""
    request = FaxRequest(
        to=SUCCESS,
        documents=[("letter.pdf", make_pdf(2))],
        provider=provider,
        send_at=utcnow() + timedelta(hours=hours),
    )
    return submit(request).job_id


def test_altering_a_waiting_fax_changes_it_and_records_who_changed_what(
    stack: Stack, client: TestClient
) -> None:
    job_id = later_fax()
    deadline = (utcnow() + timedelta(hours=5)).isoformat()

    answer = client.patch(
        f"/v1/faxes/{job_id}",
        json={"to": OTHER, "priority": "urgent", "deadline": deadline, "provider": "interfax"},
    )

    assert answer.status_code == 200, answer.text
    fax = answer.json()
    assert (fax["to"], fax["priority"], fax["provider"]) == (OTHER, "urgent", "interfax")
    event = queries.events(job_id)[-1]
    assert (event["source"], event["actor"]) == ("operator", "admin:1")
    assert event["detail"].startswith("altered: to +1202555**** -> +1202555****")
    assert "priority normal -> urgent" in event["detail"]
    assert "provider faxplus -> interfax" in event["detail"]
    assert stack.sends(job_id) == []


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"to": "+1 555"}, "to"),
        ({"to": "+19005550100"}, "to"),  # a premium-rate number is never dialled
        ({"priority": "asap"}, "priority"),
        ({"provider": "telex"}, "provider"),
        ({"deadline": "2001-01-01T00:00:00Z"}, "deadline"),
        ({"send_at": "2030-01-01T09:00:00"}, "send_at"),
        ({}, "changes"),
    ],
)
def test_a_bad_change_is_refused_with_the_field_and_changes_nothing(
    stack: Stack, client: TestClient, changes: dict[str, str], field: str
) -> None:
    job_id = later_fax()
    before = queries.get_job(job_id)

    answer = client.patch(f"/v1/faxes/{job_id}", json=changes)

    assert answer.status_code == 422, answer.text
    assert field in answer.text
    assert queries.get_job(job_id) == before


def test_a_fax_in_progress_cannot_be_altered(stack: Stack, client: TestClient) -> None:
    request = FaxRequest(to=SUCCESS, documents=[("a.pdf", make_pdf(1))], provider="faxplus")
    job_id = submit(request).job_id
    stack.wait_for(lambda: queries.get_job(job_id)["state"] == "in_progress")

    answer = client.patch(f"/v1/faxes/{job_id}", json={"priority": "urgent"})

    assert answer.status_code == 409
    assert "only a pending or held fax can be altered" in answer.text
    assert queries.get_job(job_id)["priority"] == "normal"


def test_push_sends_a_waiting_fax_now_and_alter_works_from_faxctl(stack: Stack) -> None:
    runner = CliRunner()
    job_id = later_fax(hours=24)

    altered = runner.invoke(cli, ["alter", job_id, "--priority", "bulk", "--json"])
    assert altered.exit_code == 0, altered.output
    assert json.loads(altered.output)["priority"] == "bulk"
    refused = runner.invoke(cli, ["alter", job_id, "--to", "12"])
    assert refused.exit_code == 2 and "to" in refused.output

    pushed = runner.invoke(cli, ["push", job_id])
    assert pushed.exit_code == 0, pushed.output

    stack.wait_for(lambda: queries.get_job(job_id)["state"] == "succeeded")
    assert len(stack.sends(job_id)) == 1
    actors = {e["actor"] for e in queries.events(job_id) if e["source"] == "operator"}
    assert len(actors) == 1 and next(iter(actors)).startswith("faxctl:")
