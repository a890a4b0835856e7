"""The HTTP API in process (FastAPI's TestClient) against a real database and broker.

Auth, validation, the error codes and their JSON bodies, pagination and metrics; one
end-to-end test submits through the API to the real stack and reads the result back.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Iterator
from typing import Any, TypedDict

import pytest
from sqlalchemy import update
from starlette.exceptions import StarletteDeprecationWarning

from config.settings import get_settings
from dispatcher.api import create_app
from dispatcher.api.app import MAX_REQUEST_BYTES, RedactSecrets
from dispatcher.store.db import session_scope
from dispatcher.store.models import Job
from tests.fixtures.documents import make_deep_pdf, make_encrypted_pdf, make_pdf
from tests.fixtures.stack import Stack

with warnings.catch_warnings():  # starlette prefers httpx2 for its TestClient; httpx works
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

TOKEN = "t1-" + "a" * 40
OTHER_TOKEN = "t2-" + "b" * 40
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SUCCESS = "+12025550100"


@pytest.fixture
def client(db_url: str, broker_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    """An authenticated client; new jobs are published to the real embedded broker."""
    monkeypatch.setenv("FAX_DATABASE_URL", db_url)
    monkeypatch.setenv("FAX_BROKER_URL", broker_url)
    monkeypatch.setenv("FAX_API_TOKENS", json.dumps([TOKEN, OTHER_TOKEN]))
    get_settings.cache_clear()
    with TestClient(create_app(), headers=AUTH) as test_client:
        yield test_client


class FormFields(TypedDict, total=False):
    """Form fields a test sets on a submission (as sent: text); ``to`` replaces SUCCESS."""

    to: str
    provider: str
    metadata: str
    options: str
    send_at: str


def submit(
    client: TestClient,
    to: str = SUCCESS,
    documents: list[tuple[str, bytes]] | None = None,
    headers: dict[str, str] | None = None,
    **fields: str,
) -> Any:
    files = [
        ("documents", (name, content)) for name, content in documents or [("a.pdf", make_pdf())]
    ]
    return client.post("/v1/faxes", data={"to": to, **fields}, files=files, headers=headers)


def set_state(job_id: str, state: str) -> None:
    with session_scope() as session:
        session.execute(update(Job).where(Job.id == job_id).values(state=state))


# --- auth ---------------------------------------------------------------------------------


def test_health_is_open(client: TestClient) -> None:
    response = client.get("/healthz", headers={"Authorization": ""})
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.parametrize("path", ["/v1/faxes", "/metrics", f"/v1/faxes/{'0' * 32}"])
def test_a_missing_token_is_401_with_a_bearer_challenge(client: TestClient, path: str) -> None:
    response = client.get(path, headers={"Authorization": ""})
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert response.json()["error"] == "unauthorized"
    assert "Bearer" in response.json()["message"]


def test_a_wrong_token_is_401_and_the_answer_reveals_no_token(client: TestClient) -> None:
    response = client.get("/v1/faxes", headers={"Authorization": f"Bearer {TOKEN}x"})
    assert response.status_code == 401
    assert response.json() == {"error": "unauthorized", "message": "the bearer token is not valid"}
    assert TOKEN not in response.text and OTHER_TOKEN not in response.text


def test_every_configured_token_is_accepted(client: TestClient) -> None:
    response = client.get("/v1/faxes", headers={"Authorization": f"Bearer {OTHER_TOKEN}"})
    assert response.status_code == 200


def test_without_configured_tokens_the_api_is_closed(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FAX_API_TOKENS")
    get_settings.cache_clear()
    response = client.get("/v1/faxes")
    assert response.status_code == 403
    assert "FAX_API_TOKENS is not set" in response.json()["message"]
    assert client.get("/healthz").status_code == 200


# --- submit -------------------------------------------------------------------------------


def test_submit_creates_a_job_and_reads_it_back(client: TestClient) -> None:
    response = submit(
        client,
        provider="faxplus",
        metadata='{"invoice": "42"}',
        options='{"max_attempts": 3}',
        send_at="2030-01-31T09:00:00+01:00",
    )
    assert response.status_code == 201, response.text
    job = response.json()
    assert job["state"] == "pending"
    assert (job["to"], job["provider"], job["metadata"]) == (SUCCESS, "faxplus", {"invoice": "42"})
    assert job["send_at"].startswith("2030-01-31T08:00:00")
    assert response.headers["Location"] == f"/v1/faxes/{job['id']}"
    assert client.get(response.headers["Location"]).json() == job
    assert client.get(f"/v1/faxes/{job['id']}/attempts").json() == []


def test_a_repeated_idempotency_key_returns_the_same_job(client: TestClient) -> None:
    key = {"Idempotency-Key": "invoice-42"}
    first = submit(client, headers=key)
    again = submit(client, headers=key)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]
    other = submit(client, to="+12025550101", headers=key)
    assert other.status_code == 409
    assert other.json()["error"] == "idempotency_conflict"
    assert first.json()["id"] in other.json()["message"]
    assert len(client.get("/v1/faxes").json()["items"]) == 1


@pytest.mark.parametrize(
    ("fields", "documents", "field", "says"),
    [
        ({"to": "+1202555"}, None, "to", "wrong length"),
        ({"to": "2025550100"}, None, "to", "international format"),
        ({}, [("empty.pdf", b"")], "documents[0]", "empty"),
        ({}, [("locked.pdf", make_encrypted_pdf())], "documents[0]", "encrypted"),
        ({}, [("deep.pdf", make_deep_pdf())], "documents[0]", "cannot be read"),
        ({}, [("blob.bin", b"\x00\x01\x02\x03binary")], "documents[0]", "is not a type"),
        ({"provider": "telex"}, None, "provider", "unknown provider 'telex'"),
        ({"metadata": "[1, 2]"}, None, "metadata", "JSON object"),
        ({"options": '{"max_attempts": 99}'}, None, "options.max_attempts", "1 to 20"),
        ({"send_at": "2030-01-31T09:00:00"}, None, "send_at", "time zone"),
        ({"send_at": "next tuesday"}, None, "send_at", "ISO 8601"),
    ],
)
def test_invalid_input_is_422_naming_the_field_and_creates_nothing(
    client: TestClient,
    fields: FormFields,
    documents: list[tuple[str, bytes]] | None,
    field: str,
    says: str,
) -> None:
    response = submit(client, documents=documents, **fields)
    assert response.status_code == 422, response.text
    body = response.json()
    assert (body["error"], body["field"]) == ("validation", field)
    assert says.lower() in body["message"].lower()
    assert client.get("/v1/faxes").json()["items"] == []


def test_a_submission_without_documents_is_422(client: TestClient) -> None:
    response = client.post("/v1/faxes", data={"to": SUCCESS})
    assert response.status_code == 422
    assert response.json()["field"] == "documents"


def test_a_declared_body_over_the_limit_is_413_before_it_is_read(client: TestClient) -> None:
    response = client.post(
        "/v1/faxes",
        content=b"--x--",
        headers={
            "Content-Type": "multipart/form-data; boundary=x",
            "Content-Length": str(MAX_REQUEST_BYTES + 1),
        },
    )
    assert response.status_code == 413
    assert response.json()["error"] == "too_large"


def test_a_streamed_body_over_the_limit_is_413(client: TestClient) -> None:
    chunk = b"x" * (1024 * 1024)

    def body() -> Iterator[bytes]:
        for _ in range(MAX_REQUEST_BYTES // len(chunk) + 1):
            yield chunk

    response = client.post(
        "/v1/faxes",
        content=body(),
        headers={"Content-Type": "multipart/form-data; boundary=x"},
    )
    assert response.status_code == 413
    assert response.json()["error"] == "too_large"


# --- read and act -------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", ["", "/attempts", "/events", "/cancel"])
def test_an_unknown_job_is_404(client: TestClient, suffix: str) -> None:
    call = client.post if suffix == "/cancel" else client.get
    response = call(f"/v1/faxes/{'0' * 32}{suffix}")
    assert response.status_code == 404
    assert response.json() == {"error": "not_found", "message": f"no job {'0' * 32}"}
    assert call(f"/v1/faxes/not-an-id{suffix}").status_code == 404


def test_hold_and_resume_a_pending_job(client: TestClient) -> None:
    job_id = submit(client).json()["id"]
    assert client.post(f"/v1/faxes/{job_id}/hold").json()["state"] == "held"
    assert client.post(f"/v1/faxes/{job_id}/resume").json()["state"] == "pending"
    events = client.get(f"/v1/faxes/{job_id}/events").json()
    assert [(e["source"], e["to"]) for e in events] == [
        ("operator", "held"),
        ("operator", "pending"),
    ]


def test_an_action_the_state_does_not_allow_is_409(client: TestClient) -> None:
    job_id = submit(client).json()["id"]
    set_state(job_id, "succeeded")
    response = client.post(f"/v1/faxes/{job_id}/cancel")
    assert response.status_code == 409
    assert response.json()["error"] == "illegal_transition"
    assert "succeeded" in response.json()["message"]
    assert client.post(f"/v1/faxes/{job_id}/retry").status_code == 409
    assert client.get(f"/v1/faxes/{job_id}").json()["state"] == "succeeded"


def test_listing_pages_through_every_job_newest_first(client: TestClient) -> None:
    created = [submit(client, metadata=json.dumps({"n": str(i)})).json()["id"] for i in range(5)]
    seen: list[str] = []
    url: str | None = "/v1/faxes?limit=2"
    pages = 0
    while url:
        page = client.get(url).json()
        seen += [job["id"] for job in page["items"]]
        pages += 1
        url = f"/v1/faxes?limit=2&before={page['next']}" if page["next"] else None
    assert pages == 3
    assert seen == created[::-1]


def test_listing_filters_by_state_provider_and_time(client: TestClient) -> None:
    held = submit(client, provider="faxplus").json()["id"]
    client.post(f"/v1/faxes/{held}/hold")
    submit(client, provider="interfax")
    assert [j["id"] for j in client.get("/v1/faxes?state=held").json()["items"]] == [held]
    assert [j["id"] for j in client.get("/v1/faxes?provider=faxplus").json()["items"]] == [held]
    assert client.get("/v1/faxes", params={"since": "2999-01-01T00:00:00Z"}).json() == {
        "items": [],
        "next": None,
    }


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("state=lost", "state"),
        ("since=yesterday", "since"),
        (f"before={'f' * 32}", "before"),
    ],
)
def test_bad_listing_parameters_are_422(client: TestClient, query: str, field: str) -> None:
    response = client.get(f"/v1/faxes?{query}")
    assert response.status_code == 422
    assert response.json()["field"] == field


def test_metrics_count_jobs_attempts_queues_and_due_work(client: TestClient) -> None:
    job_id = submit(client).json()["id"]
    text = client.get("/metrics").text
    assert 'fax_jobs{state="pending"} 1.0' in text
    assert 'fax_jobs{state="succeeded"} 0.0' in text
    for name in (
        "fax_attempts",
        "fax_oldest_due_job_age_seconds",
        'fax_queue_depth{queue="dispatch"}',
    ):
        assert name in text
    set_state(job_id, "failed")
    assert 'fax_jobs{state="failed"} 1.0' in client.get("/metrics").text


def test_the_openapi_document_is_served(client: TestClient) -> None:
    paths = client.get("/openapi.json", headers={"Authorization": ""}).json()["paths"]
    assert {"/v1/faxes", "/v1/faxes/{job_id}/attempts", "/v1/webhooks/{provider}"} <= set(paths)


# --- end to end ---------------------------------------------------------------------------


@pytest.mark.e2e
def test_a_fax_submitted_over_http_is_sent_and_its_attempts_read_back(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAX_API_TOKENS", json.dumps([TOKEN]))
    get_settings.cache_clear()
    with TestClient(create_app(), headers=AUTH) as api:
        created = submit(api, provider="interfax", headers={"Idempotency-Key": "e2e-1"})
        assert created.status_code == 201, created.text
        job_id = created.json()["id"]
        job = stack.wait_for(
            lambda: (view := api.get(f"/v1/faxes/{job_id}").json())["state"] == "succeeded" and view
        )
        [attempt] = api.get(f"/v1/faxes/{job_id}/attempts").json()
    assert (attempt["code"], attempt["outcome"]) == ("0", "success")
    assert attempt["provider_fax_id"] == job["provider_fax_id"]
    assert len(stack.sends(job_id)) == 1


@pytest.mark.parametrize(
    ("path", "hidden", "shown"),
    [
        ("/v1/webhooks/faxplus?secret=s3cr3t&x=1", "s3cr3t", "secret=***&x=1"),
        ("/v1/faxes?to=%2B12025550123&state=failed", "12025550123", "to=%2B1202555****&state"),
    ],
)
def test_access_logs_never_show_a_webhook_secret_nor_a_searched_number(
    client: TestClient, path: str, hidden: str, shown: str
) -> None:
    [redact] = [
        f for f in logging.getLogger("uvicorn.access").filters if isinstance(f, RedactSecrets)
    ]
    args = ("127.0.0.1:5000", "GET", path, "1.1", 200)
    record = logging.LogRecord(
        "uvicorn.access", logging.INFO, "", 0, '%s "%s %s HTTP/%s" %d', args, None
    )
    assert redact.filter(record)
    assert hidden not in record.getMessage()
    assert shown in record.getMessage()
