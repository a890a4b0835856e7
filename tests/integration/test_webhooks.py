"""Provider webhooks posted to the API, on the real stack (worker, broker, sandbox, database).

A callback is a hint: once verified, it makes the job read its fax's status from the
provider at once, through the worker's poll, and nothing else. No tick runs while these
tests wait, so what happens after a callback is the callback's doing. Forged and
malformed callbacks are refused; replays and forged statuses are in test_exactly_once.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from config.settings import get_settings
from dispatcher import queries
from dispatcher.sandbox.webhooks import compact_json, sign
from dispatcher.submission import FaxRequest, submit
from tests.fixtures.documents import make_pdf
from tests.fixtures.stack import Stack
from tests.fixtures.webhooks import (
    OPTUM_SECRET,
    SIGNATURE,
    TestClient,
    faxplus_hook,
    interfax_callback,
    optum_event,
    post_optum,
    post_unsigned,
)

pytestmark = pytest.mark.e2e

SLOW = "+12025550109"


def in_progress(stack: Stack, provider: str) -> dict[str, Any]:
    """A job the sandbox is still faxing (for a long while), with its provider fax id."""
    request = FaxRequest(to=SLOW, documents=[("a.pdf", make_pdf())], provider=provider)
    job_id = submit(request).job_id
    return stack.wait_for(
        lambda: (job := queries.get_job(job_id))["state"] == "in_progress" and job
    )


def finish_at_the_provider(stack: Stack) -> None:
    """Let the sandbox's clock run past every fax's end."""
    httpx.post(f"{stack.sandbox_url}/_sandbox/advance", params={"seconds": 3600}).raise_for_status()


@pytest.mark.parametrize("provider", ["optum", "faxplus", "interfax"])
def test_a_callback_makes_the_job_read_its_status_at_once(
    stack: Stack, webhook_api: TestClient, provider: str
) -> None:
    # Given a fax the provider has just finished, long before its next poll is due
    job = in_progress(stack, provider)
    finish_at_the_provider(stack)

    # When the provider's callback arrives
    fax_id = job["provider_fax_id"]
    if provider == "optum":
        response = post_optum(webhook_api, optum_event(fax_id))
    else:
        response = post_unsigned(webhook_api, provider, fax_id)

    # Then the job reads the status from the provider, without waiting for a tick
    assert response.json() == {"polled": 1}
    done = stack.wait_for(
        lambda: (j := queries.get_job(job["id"]))["state"] == "succeeded" and j,
        drive_ticks=False,
    )
    assert [e["source"] for e in queries.events(job["id"])][-1] == "poll"
    assert len(stack.sends(done["id"])) == 1


def test_a_callback_for_a_fax_no_job_follows_polls_nothing(
    stack: Stack, webhook_api: TestClient
) -> None:
    assert post_optum(webhook_api, optum_event("no-such-fax")).json() == {"polled": 0}


@pytest.mark.parametrize(
    "signature",
    [None, "0" * 64, sign("not-the-secret", b"{}")],
    ids=["unsigned", "zeros", "wrong-key"],
)
def test_an_unsigned_or_forged_optum_webhook_is_401_and_changes_nothing(
    stack: Stack, webhook_api: TestClient, signature: str | None
) -> None:
    job = in_progress(stack, "optum")
    events = queries.events(job["id"])
    body = optum_event(job["provider_fax_id"])
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers[SIGNATURE] = signature
    response = webhook_api.post("/v1/webhooks/optum", content=body, headers=headers)
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"
    assert OPTUM_SECRET not in response.text
    assert queries.get_job(job["id"])["state"] == "in_progress"
    assert queries.events(job["id"]) == events


def test_a_signed_but_malformed_optum_webhook_is_422(stack: Stack, webhook_api: TestClient) -> None:
    response = post_optum(webhook_api, compact_json({"id": "x", "data": {"faxId": "x"}}))
    body = response.json()
    assert (response.status_code, body["error"], body["field"]) == (422, "validation", "body")


@pytest.mark.parametrize("provider", ["faxplus", "interfax"])
@pytest.mark.parametrize("query", ["", "?secret=wrong"], ids=["no-secret", "wrong-secret"])
def test_faxplus_and_interfax_webhooks_without_the_secret_are_401(
    stack: Stack, webhook_api: TestClient, provider: str, query: str
) -> None:
    job = in_progress(stack, provider)
    fax_id = job["provider_fax_id"]
    body = faxplus_hook(fax_id) if provider == "faxplus" else interfax_callback(fax_id)
    response = webhook_api.post(f"/v1/webhooks/{provider}{query}", content=body)
    assert response.status_code == 401
    assert response.json() == {
        "error": "unauthorized",
        "message": "missing or wrong webhook secret",
    }
    assert queries.get_job(job["id"])["state"] == "in_progress"


def test_an_unknown_provider_is_404(stack: Stack, webhook_api: TestClient) -> None:
    response = webhook_api.post("/v1/webhooks/telex", content=b"{}")
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


def test_webhooks_of_a_provider_without_a_secret_are_refused(
    stack: Stack, webhook_api: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FAX_INTERFAX__WEBHOOK_SECRET")
    get_settings.cache_clear()
    response = webhook_api.post(
        "/v1/webhooks/interfax?secret=", content=b"TransactionID=1&Status=0"
    )
    assert response.status_code == 403
    assert "FAX_INTERFAX__WEBHOOK_SECRET is not set" in response.json()["message"]
