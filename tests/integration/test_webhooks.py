"""Provider webhooks posted to the API, on the real stack (worker, broker, sandbox, database).

A slow fax stays in progress at the sandbox, so the status a test posts is what ends it.
Optum's callbacks are signed like the sandbox signs them; FAX.PLUS and InterFAX carry the
shared secret. Replays, forged callbacks and a webhook racing a poll change nothing twice.
"""

from __future__ import annotations

import json
import uuid
import warnings
from collections.abc import Iterator
from urllib.parse import urlencode

import pytest
from starlette.exceptions import StarletteDeprecationWarning

from config.settings import get_settings
from dispatcher import queries, tracking
from dispatcher.api import create_app
from dispatcher.providers.registry import clear_adapters
from dispatcher.sandbox.webhooks import compact_json, sign
from dispatcher.submission import FaxRequest, submit
from tests.fixtures.documents import make_pdf
from tests.fixtures.stack import Stack

with warnings.catch_warnings():  # starlette prefers httpx2 for its TestClient; httpx works
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

pytestmark = pytest.mark.e2e

OPTUM_SECRET = "optum-hmac-key"
FAXPLUS_SECRET = "faxplus-url-secret"
INTERFAX_SECRET = "interfax-url-secret"
SIGNATURE = "X-Optum-Webhook-Callback-Hmac-Signature"
SUCCESS = "+12025550100"
SLOW = "+12025550109"


@pytest.fixture
def api(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    """The API on the stack's database, with every provider's webhook secret configured."""
    monkeypatch.setenv("FAX_OPTUM__WEBHOOK_SECRET", OPTUM_SECRET)
    monkeypatch.setenv("FAX_FAXPLUS__WEBHOOK_SECRET", FAXPLUS_SECRET)
    monkeypatch.setenv("FAX_INTERFAX__WEBHOOK_SECRET", INTERFAX_SECRET)
    get_settings.cache_clear()
    clear_adapters()
    with TestClient(create_app()) as client:
        yield client


def in_progress(stack: Stack, to: str, provider: str) -> dict:
    """A job the sandbox is still faxing, with its provider fax id."""
    request = FaxRequest(to=to, documents=[("a.pdf", make_pdf())], provider=provider)
    job_id = submit(request).job_id
    return stack.wait_for(
        lambda: (job := queries.get_job(job_id))["state"] == "in_progress" and job
    )


def optum_event(fax_id: str, status: str = "FaxSent", **extra: str) -> bytes:
    """An Optum CloudEvents envelope, as the sandbox (and Optum) builds it."""
    data = {"type": "fax_sent", "faxId": fax_id, "faxStatus": status, **extra}
    envelope = {
        "id": fax_id,
        "source": "https://sandbox.local/fax",
        "specVersion": "1.0",
        "type": "fax_sent",
        "dataContentType": "application/json",
        "data": data,
        "causationId": str(uuid.uuid4()),
    }
    return compact_json(envelope)


def post_optum(api: TestClient, body: bytes, secret: str = OPTUM_SECRET) -> dict:
    response = api.post(
        "/v1/webhooks/optum",
        content=body,
        headers={"Content-Type": "application/json", SIGNATURE: sign(secret, body)},
    )
    return {"status": response.status_code, **response.json()}


def test_a_signed_optum_webhook_finishes_the_job_and_a_replay_changes_nothing(
    stack: Stack, api: TestClient
) -> None:
    job = in_progress(stack, SLOW, "optum")
    body = optum_event(job["provider_fax_id"])
    assert post_optum(api, body) == {"status": 200, "applied": 1}
    assert queries.get_job(job["id"])["state"] == "succeeded"
    events = queries.events(job["id"])
    assert [(e["source"], e["code"], e["to"]) for e in events if e["source"] == "webhook"] == [
        ("webhook", "FaxSent", "succeeded")
    ]
    # Given the same event delivered again (the provider retried), nothing changes.
    assert post_optum(api, body) == {"status": 200, "applied": 0}
    assert queries.events(job["id"]) == events
    assert len(stack.sends(job["id"])) == 1


def test_an_optum_failure_webhook_is_classified_like_a_poll(stack: Stack, api: TestClient) -> None:
    job = in_progress(stack, SLOW, "optum")
    body = optum_event(job["provider_fax_id"], "FaxFailed", failedReason="InvalidNumber")
    assert post_optum(api, body)["status"] == 200
    view = queries.get_job(job["id"])
    assert (view["state"], view["last_code"], view["remediation"]) == (
        "failed",
        "FaxFailed/InvalidNumber",
        "no_retry",
    )


def test_a_webhook_after_the_poll_saw_the_same_status_records_one_event(
    stack: Stack, api: TestClient
) -> None:
    request = FaxRequest(to=SUCCESS, documents=[("a.pdf", make_pdf())], provider="optum")
    job_id = submit(request).job_id
    job = stack.wait_for(lambda: (j := queries.get_job(job_id))["state"] == "succeeded" and j)
    before = queries.events(job_id)
    assert post_optum(api, optum_event(job["provider_fax_id"])) == {"status": 200, "applied": 0}
    assert queries.events(job_id) == before
    assert [e["code"] for e in before].count("FaxSent") == 1


def test_a_poll_after_the_webhook_saw_the_same_status_records_one_event(
    stack: Stack, api: TestClient
) -> None:
    job = in_progress(stack, SLOW, "optum")
    assert post_optum(api, optum_event(job["provider_fax_id"]))["applied"] == 1
    events = queries.events(job["id"])
    assert tracking.poll("optum", [job["id"]]) == 0
    assert queries.events(job["id"]) == events


@pytest.mark.parametrize(
    "signature",
    [None, "0" * 64, sign("not-the-secret", b"{}")],
    ids=["unsigned", "zeros", "wrong-key"],
)
def test_an_unsigned_or_forged_optum_webhook_is_401_and_changes_nothing(
    stack: Stack, api: TestClient, signature: str | None
) -> None:
    job = in_progress(stack, SLOW, "optum")
    events = queries.events(job["id"])
    body = optum_event(job["provider_fax_id"])
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers[SIGNATURE] = signature
    response = api.post("/v1/webhooks/optum", content=body, headers=headers)
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"
    assert OPTUM_SECRET not in response.text
    assert queries.get_job(job["id"])["state"] == "in_progress"
    assert queries.events(job["id"]) == events


def test_a_signed_but_malformed_optum_webhook_is_422(stack: Stack, api: TestClient) -> None:
    body = compact_json({"id": "x", "data": {"faxId": "x"}})
    result = post_optum(api, body)
    assert (result["status"], result["error"], result["field"]) == (422, "validation", "body")


def faxplus_hook(fax_id: str, status: str = "success") -> bytes:
    hook = {"id": "hook-1", "event": "fax_sent", "target": "https://example.test/hook"}
    return json.dumps({"hook": hook, "data": {"id": fax_id, "status": status, "pages": 1}}).encode()


def test_a_faxplus_webhook_with_the_url_secret_finishes_the_job_once(
    stack: Stack, api: TestClient
) -> None:
    job = in_progress(stack, SLOW, "faxplus")
    body = faxplus_hook(job["provider_fax_id"])
    url = f"/v1/webhooks/faxplus?secret={FAXPLUS_SECRET}"
    assert api.post(url, content=body).json() == {"applied": 1}
    assert queries.get_job(job["id"])["state"] == "succeeded"
    events = queries.events(job["id"])
    assert api.post(url, content=body).json() == {"applied": 0}
    assert queries.events(job["id"]) == events


def test_an_interfax_webhook_with_the_header_secret_finishes_the_job(
    stack: Stack, api: TestClient
) -> None:
    job = in_progress(stack, SLOW, "interfax")
    body = urlencode({"TransactionID": job["provider_fax_id"], "Status": "0", "PagesSent": "1"})
    response = api.post(
        "/v1/webhooks/interfax",
        content=body,
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Fax-Webhook-Secret": INTERFAX_SECRET,
        },
    )
    assert response.json() == {"applied": 1}
    assert queries.get_job(job["id"])["state"] == "succeeded"


@pytest.mark.parametrize("provider", ["faxplus", "interfax"])
@pytest.mark.parametrize("query", ["", "?secret=wrong"], ids=["no-secret", "wrong-secret"])
def test_faxplus_and_interfax_webhooks_without_the_secret_are_401(
    stack: Stack, api: TestClient, provider: str, query: str
) -> None:
    job = in_progress(stack, SLOW, provider)
    if provider == "faxplus":
        body = faxplus_hook(job["provider_fax_id"])
    else:
        body = urlencode({"TransactionID": job["provider_fax_id"], "Status": "0"}).encode()
    response = api.post(f"/v1/webhooks/{provider}{query}", content=body)
    assert response.status_code == 401
    assert response.json() == {
        "error": "unauthorized",
        "message": "missing or wrong webhook secret",
    }
    assert queries.get_job(job["id"])["state"] == "in_progress"


def test_an_unknown_provider_is_404(stack: Stack, api: TestClient) -> None:
    response = api.post("/v1/webhooks/telex", content=b"{}")
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


def test_webhooks_of_a_provider_without_a_secret_are_refused(
    stack: Stack, api: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FAX_INTERFAX__WEBHOOK_SECRET")
    get_settings.cache_clear()
    response = api.post("/v1/webhooks/interfax?secret=", content=b"TransactionID=1&Status=0")
    assert response.status_code == 403
    assert "FAX_INTERFAX__WEBHOOK_SECRET is not set" in response.json()["message"]
