"""Tenants and their keys over the HTTP API, on SQLite and PostgreSQL: a tenant's key sees
and acts on its own faxes only (another's are 404, never 403, in every route), its
idempotency keys are its own, its actions are recorded as its key's, and its rate and
daily quota answer 429 with Retry-After."""

from __future__ import annotations

import json
import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text

from config.settings import get_settings
from dispatcher.api import create_app
from dispatcher.store.db import session_scope
from dispatcher.store.models import ApiKey
from dispatcher.tenants import create_key, revoke_key, set_limits
from tests.fixtures.api import ADMIN, bearer
from tests.fixtures.documents import make_pdf

SUCCESS = "+12025550100"


def submit(
    api: TestClient,
    key: str,
    *,
    idempotency_key: str | None = None,
    to: str = SUCCESS,
    metadata: str = '{"invoice": "42"}',
) -> tuple[int, dict[str, object]]:
    headers = bearer(key) | ({"Idempotency-Key": idempotency_key} if idempotency_key else {})
    response = api.post(
        "/v1/faxes",
        data={"to": to, "metadata": metadata},
        files=[("documents", ("a.pdf", make_pdf()))],
        headers=headers,
    )
    return response.status_code, response.json()


def routes_with(parameter: str) -> list[tuple[str, str]]:
    """Every (method, path) of the API that takes ``parameter`` in its path, as its
    OpenAPI document lists them."""
    paths = create_app().openapi()["paths"]
    return sorted(
        (method.upper(), path)
        for path, operations in paths.items()
        if f"{{{parameter}}}" in path
        for method in operations
    )


def test_another_tenants_fax_is_404_in_every_route(api: TestClient) -> None:
    # Given a fax of one tenant, in a batch, with a delivery
    first, second = create_key("tenant-a"), create_key("tenant-b")
    status, fax = submit(api, first.key)
    assert status == 201
    batch = api.post(
        "/v1/batches",
        files=[
            ("rows", ("r.csv", f"to\n{SUCCESS}\n".encode())),
            ("documents", ("a.pdf", make_pdf())),
        ],
        headers=bearer(first.key),
    ).json()

    # Then every route that names a fax or a batch answers the other tenant 404
    for parameter, value in [("job_id", fax["id"]), ("batch_id", batch["id"])]:
        routes = routes_with(parameter)
        assert routes, parameter
        for method, path in routes:
            url = path.replace(f"{{{parameter}}}", str(value))
            response = api.request(method, url, headers=bearer(second.key))
            assert response.status_code == 404, (method, path, response.text)
            assert response.json()["error"] == "not_found"
            # while its owner may read them
            if method == "GET":
                assert api.get(url, headers=bearer(first.key)).status_code == 200, url

    # And lists and searches show each tenant its own only; the operators see both
    submit(api, second.key)
    for key, owner_count in [(first.key, 2), (second.key, 1)]:
        page = api.get("/v1/faxes", headers=bearer(key)).json()
        assert len(page["items"]) == owner_count
    assert (
        api.get("/v1/faxes", params={"metadata": "invoice=42"}, headers=bearer(second.key)).json()[
            "items"
        ][0]["id"]
        != fax["id"]
    )
    assert len(api.get("/v1/faxes", headers=bearer(ADMIN)).json()["items"]) == 3


def test_idempotency_keys_are_per_tenant(api: TestClient) -> None:
    first, second = create_key("tenant-a"), create_key("tenant-b")

    status_a, fax_a = submit(api, first.key, idempotency_key="invoice-42")
    status_b, fax_b = submit(api, second.key, idempotency_key="invoice-42")
    repeat, again = submit(api, first.key, idempotency_key="invoice-42")
    conflict, body = submit(api, second.key, idempotency_key="invoice-42", metadata='{"x": "1"}')

    assert (status_a, status_b, repeat, conflict) == (201, 201, 200, 409)
    assert fax_a["id"] != fax_b["id"] and again["id"] == fax_a["id"]
    assert fax_a["idempotency_key"] == "invoice-42"
    assert str(fax_a["id"]) not in json.dumps(body)  # a conflict names only the tenant's own
    found = api.get(
        "/v1/faxes", params={"idempotency_key": "invoice-42"}, headers=bearer(first.key)
    ).json()["items"]
    assert [f["id"] for f in found] == [fax_a["id"]]


def test_an_action_records_the_key_that_acted(api: TestClient) -> None:
    tenant = create_key("tenant-a")
    _, fax = submit(api, tenant.key)

    response = api.post(f"/v1/faxes/{fax['id']}/hold", headers=bearer(tenant.key))

    assert response.status_code == 200, response.text
    events = api.get(f"/v1/faxes/{fax['id']}/events", headers=bearer(tenant.key)).json()
    assert events[-1]["actor"] == f"key:{tenant.key_id}"
    api.post(f"/v1/faxes/{fax['id']}/resume", headers=bearer(ADMIN))
    events = api.get(f"/v1/faxes/{fax['id']}/events", headers=bearer(ADMIN)).json()
    assert events[-1]["actor"] == "admin:1"


def test_a_key_is_kept_only_as_a_hash_and_stops_working_when_revoked(api: TestClient) -> None:
    tenant = create_key("tenant-a")
    secret = tenant.key.split("_", 2)[2]
    with session_scope() as session:
        stored = session.scalars(select(ApiKey)).one()
        dump = " ".join(str(v) for v in session.execute(text("SELECT * FROM api_keys")).one())
    assert stored.id == tenant.key_id and secret not in dump and tenant.key not in dump
    assert api.get("/v1/faxes", headers=bearer(tenant.key)).status_code == 200

    revoke_key(tenant.key_id)

    assert api.get("/v1/faxes", headers=bearer(tenant.key)).status_code == 401
    forged = re.sub(r"_[^_]+$", "_" + "x" * 43, tenant.key)
    assert api.get("/v1/faxes", headers=bearer(forged)).status_code == 401


def test_metrics_are_for_the_operators_only(api: TestClient) -> None:
    tenant = create_key("tenant-a")
    assert api.get("/metrics", headers=bearer(tenant.key)).status_code == 403
    assert api.get("/metrics", headers=bearer(ADMIN)).status_code == 200


def test_a_tenant_over_its_daily_quota_gets_429_until_midnight_and_nothing_is_written(
    api: TestClient,
) -> None:
    tenant = create_key("tenant-a")
    set_limits("tenant-a", send_rate=None, daily_quota=2)
    assert submit(api, tenant.key)[0] == submit(api, tenant.key)[0] == 201

    response = api.post(
        "/v1/faxes",
        data={"to": SUCCESS},
        files=[("documents", ("a.pdf", make_pdf()))],
        headers=bearer(tenant.key),
    )

    assert response.status_code == 429
    assert response.json()["error"] == "too_many_requests"
    assert 0 < int(response.headers["Retry-After"]) <= 86400
    assert len(api.get("/v1/faxes", headers=bearer(tenant.key)).json()["items"]) == 2
    # A batch that would pass the quota is refused whole
    batch = api.post(
        "/v1/batches",
        files=[
            ("rows", ("r.csv", f"to\n{SUCCESS}\n".encode())),
            ("documents", ("a.pdf", make_pdf())),
        ],
        headers=bearer(tenant.key),
    )
    assert batch.status_code == 429


def test_a_tenant_over_its_send_rate_gets_429_with_retry_after(
    api: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAX_TIME_SCALE", "1")
    get_settings.cache_clear()
    tenant = create_key("tenant-rate")
    set_limits("tenant-rate", send_rate=1 / 60, daily_quota=None)  # a burst of one a minute

    first, second = submit(api, tenant.key)[0], submit(api, tenant.key)[0]

    assert (first, second) == (201, 429)
    other = create_key("tenant-unlimited")  # another tenant is not slowed
    assert submit(api, other.key)[0] == 201
