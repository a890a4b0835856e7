"""Outbound callbacks on the real stack: a fax's events reach the endpoints of the tenant
that sent it and the job's own callback_url, signed as Standard Webhooks says (every
delivery is verified here with the ``standardwebhooks`` library, not our code), at least
once, retried from the database, and never at the cost of a fax."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from standardwebhooks import Webhook

from config.settings import get_settings
from dispatcher import queries
from dispatcher.api import create_app
from dispatcher.processes import free_port
from dispatcher.tenants import IssuedKey, create_key, new_webhook_secret
from tests.fixtures.documents import make_pdf
from tests.fixtures.sandbox import WebhookReceiver
from tests.fixtures.stack import FINAL, Stack

pytestmark = pytest.mark.e2e

SUCCESS = "+12025550100"
BUSY_BUSY_SUCCESS = "+12025550101"
ADMIN = "admin-token"
OPERATOR_SECRET = new_webhook_secret()
#: The retry schedule, before FAX_TIME_SCALE (0.005): 0.25 s, 0.5 s, 1 s.
STACK_ENV = {
    "FAX_CALLBACKS__ALLOW_HTTP": "true",
    "FAX_CALLBACKS__ALLOW_PRIVATE": "true",
    "FAX_CALLBACKS__RETRY_SCHEDULE": "[50, 100, 200]",
    "FAX_CALLBACKS__TIMEOUT": "1",
    "FAX_CALLBACKS__SECRET": OPERATOR_SECRET,
    "FAX_API_TOKENS": json.dumps([ADMIN]),
}


@pytest.fixture
def api(stack: Stack) -> Iterator[TestClient]:
    with TestClient(create_app()) as client:
        yield client


@pytest.fixture
def tenant(stack: Stack) -> IssuedKey:
    """A new tenant, with its first key."""
    return create_key(f"clinic-{uuid.uuid4().hex[:8]}")


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def submit(api: TestClient, key: str, to: str = SUCCESS, **fields: str) -> str:
    response = api.post(
        "/v1/faxes",
        data={"to": to, "metadata": '{"invoice": "42"}', **fields},
        files=[("documents", ("a.pdf", make_pdf()))],
        headers=bearer(key),
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def register(api: TestClient, key: str, url: str, *types: str) -> dict[str, Any]:
    body: dict[str, Any] = {"url": url}
    if types:
        body["event_types"] = list(types)
    response = api.post("/v1/endpoints", json=body, headers=bearer(key))
    assert response.status_code == 201, response.text
    return dict(response.json())


def verified(receiver: WebhookReceiver, secret: str, path: str = "/") -> list[dict[str, Any]]:
    """Every body posted to ``path``, each verified with the standardwebhooks library
    (which raises on a bad signature, a missing header or a stale timestamp)."""
    return [
        Webhook(secret).verify(body, headers)
        for got, headers, body in list(receiver.received)
        if got == path
    ]


def final(stack: Stack, job_id: str) -> dict[str, Any]:
    return stack.wait_for(lambda: (job := queries.get_job(job_id))["state"] in FINAL and job)


def test_an_ended_fax_is_posted_to_its_endpoints_and_its_callback_url_signed(
    stack: Stack, api: TestClient, tenant: IssuedKey, receiver: WebhookReceiver
) -> None:
    # Given an endpoint the tenant registered, and a fax naming its own callback_url too
    endpoint = register(api, tenant.key, f"{receiver.url}/endpoint")
    job_id = submit(api, tenant.key, callback_url=f"{receiver.url}/job")

    # When the fax succeeds
    assert final(stack, job_id)["state"] == "succeeded"
    stack.wait_for(lambda: len(receiver.received) >= 2)

    # Then each target got the event once, signed with its own secret
    assert tenant.callback_secret is not None
    (to_endpoint,) = verified(receiver, endpoint["secret"], "/endpoint")
    (to_job,) = verified(receiver, tenant.callback_secret, "/job")
    assert to_endpoint["type"] == to_job["type"] == "fax.succeeded"
    data = to_endpoint["data"]
    assert (data["id"], data["state"], data["metadata"]) == (job_id, "succeeded", {"invoice": "42"})
    assert SUCCESS not in json.dumps(to_endpoint)  # no destination number leaves in an event

    # And the delivery log says so (once the worker has read the answers), under the same
    # ids the receiver saw
    def delivered() -> dict[str, Any] | None:
        log = api.get("/v1/callbacks", params={"job_id": job_id}, headers=bearer(tenant.key))
        body: dict[str, Any] = log.json()
        return body if {d["state"] for d in body["items"]} == {"delivered"} else None

    log = stack.wait_for(delivered, drive_ticks=False)
    ids = {headers["webhook-id"] for _, headers, _ in receiver.received}
    assert {d["id"] for d in log["items"]} == ids


def test_each_failed_attempt_is_announced_before_the_success(
    stack: Stack, api: TestClient, tenant: IssuedKey, receiver: WebhookReceiver
) -> None:
    endpoint = register(api, tenant.key, receiver.url + "/", "fax.attempt_failed", "fax.succeeded")

    job_id = submit(api, tenant.key, to=BUSY_BUSY_SUCCESS, provider="interfax")

    assert final(stack, job_id)["state"] == "succeeded"
    stack.wait_for(lambda: len(receiver.received) >= 3)
    types = sorted(event["type"] for event in verified(receiver, endpoint["secret"]))
    assert types == ["fax.attempt_failed", "fax.attempt_failed", "fax.succeeded"]


def test_a_failing_receiver_is_retried_with_the_same_message_id_until_it_answers(
    stack: Stack, api: TestClient, tenant: IssuedKey, receiver: WebhookReceiver
) -> None:
    # Given a receiver that fails twice, the second time with a redirect (never followed)
    receiver.statuses = [500, 302]
    endpoint = register(api, tenant.key, receiver.url + "/", "fax.succeeded")

    job_id = submit(api, tenant.key)
    final(stack, job_id)

    # Then the third try delivers it
    stack.wait_for(lambda: len(receiver.received) >= 3)
    assert len(verified(receiver, endpoint["secret"])) == 3
    assert {headers["webhook-id"] for _, headers, _ in receiver.received} == {
        receiver.received[0][1]["webhook-id"]
    }
    assert not any(path == "/redirected" for path, _, _ in receiver.received)
    delivery_id = receiver.received[0][1]["webhook-id"]
    view = stack.wait_for(
        lambda: (
            (d := api.get(f"/v1/callbacks/{delivery_id}", headers=bearer(tenant.key)).json())[
                "state"
            ]
            == "delivered"
            and d
        )
    )
    assert [t["status_code"] for t in view["tries"]] == [500, 302, 200]


def test_a_dead_receiver_ends_failed_and_is_delivered_when_redelivered(
    stack: Stack, api: TestClient, tenant: IssuedKey
) -> None:
    # Given an endpoint whose receiver is down for every try of the schedule
    port = free_port()
    endpoint = register(api, tenant.key, f"http://127.0.0.1:{port}/", "fax.succeeded")
    job_id = submit(api, tenant.key)
    final(stack, job_id)
    failed = stack.wait_for(
        lambda: (
            (
                items := api.get(
                    "/v1/callbacks", params={"job_id": job_id}, headers=bearer(tenant.key)
                ).json()["items"]
            )
            and items[0]["state"] == "failed"
            and items[0]
        )
    )
    assert failed["attempts"] == 4  # the first try and one per step of the schedule

    # When it is back and the tenant redelivers
    receiver = WebhookReceiver(port)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    try:
        response = api.post(f"/v1/callbacks/{failed['id']}/redeliver", headers=bearer(tenant.key))
        assert response.json()["state"] == "pending"

        # Then it is delivered, once
        stack.wait_for(lambda: receiver.received)
        (event,) = verified(receiver, endpoint["secret"])
        assert event["data"]["id"] == job_id
    finally:
        receiver.shutdown()
        receiver.server_close()


def test_a_receiver_slower_than_the_timeout_never_holds_up_a_fax(
    stack: Stack, api: TestClient, tenant: IssuedKey, receiver: WebhookReceiver
) -> None:
    # Given a receiver that answers after the callback timeout, every time
    receiver.delay = 3.0
    register(api, tenant.key, receiver.url + "/")

    # When faxes are sent meanwhile
    job_ids = [submit(api, tenant.key, to=f"+1312555{i:04d}") for i in range(12)]

    # Then they all end, while no event could be delivered yet
    stack.wait_for(lambda: all(queries.get_job(j)["state"] in FINAL for j in job_ids), 60)
    log = api.get("/v1/callbacks", headers=bearer(tenant.key)).json()["items"]
    assert log and not any(d["state"] == "delivered" for d in log)


def test_an_operators_job_callback_is_signed_with_the_operators_secret(
    stack: Stack, api: TestClient, receiver: WebhookReceiver
) -> None:
    job_id = submit(api, ADMIN, callback_url=receiver.url + "/ops")

    final(stack, job_id)
    stack.wait_for(lambda: receiver.received)

    (event,) = verified(receiver, OPERATOR_SECRET, "/ops")
    assert event["data"]["id"] == job_id


def test_a_tenant_sees_and_redelivers_only_its_own_deliveries(
    stack: Stack, api: TestClient, tenant: IssuedKey, receiver: WebhookReceiver
) -> None:
    other = create_key("another-service")
    register(api, tenant.key, receiver.url + "/")
    job_id = submit(api, tenant.key)
    final(stack, job_id)
    stack.wait_for(lambda: receiver.received)
    delivery_id = receiver.received[0][1]["webhook-id"]

    for method, path in [
        ("GET", f"/v1/callbacks/{delivery_id}"),
        ("POST", f"/v1/callbacks/{delivery_id}/redeliver"),
    ]:
        assert api.request(method, path, headers=bearer(other.key)).status_code == 404
    assert api.get("/v1/callbacks", headers=bearer(other.key)).json()["items"] == []
    assert api.get("/v1/endpoints", headers=bearer(other.key)).json() == []
    assert get_settings().callbacks.allow_private  # this module's receivers are local
