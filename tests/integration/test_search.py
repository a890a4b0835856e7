"""Searching faxes over the API, on SQLite and PostgreSQL: by metadata ``key=value``,
idempotency key, destination, state, provider, priority, batch and creation time, every
filter at once, page by page."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text, update

from dispatcher.store.db import engine_for, session_scope, upgrade
from dispatcher.store.models import Job
from dispatcher.submission import FaxRequest, submit_many
from tests.fixtures.api import ADMIN, bearer
from tests.fixtures.documents import make_pdf


@pytest.fixture
def jobs(api: TestClient) -> list[str]:
    """Twelve faxes: invoices 0..11 for two customers, to three numbers, some urgent,
    one with an idempotency key; each made a minute after the one before."""
    pdf = make_pdf()
    requests = [
        FaxRequest(
            to=f"+1202555010{i % 3}",
            documents=[("a.pdf", pdf)],
            provider="interfax" if i % 2 else "faxplus",
            metadata={"invoice": f"inv-{i}", "customer": "acme" if i < 6 else "globex"},
            priority="urgent" if i % 4 == 0 else None,
            idempotency_key="order-7" if i == 7 else None,
        )
        for i in range(12)
    ]
    ids = [s.job_id for s in submit_many(requests, publish=False)]
    start = datetime(2026, 11, 1, 9, tzinfo=UTC)
    with session_scope() as session:
        for i, job_id in enumerate(ids):
            session.execute(
                update(Job)
                .where(Job.id == job_id)
                .values(
                    created_at=start + timedelta(minutes=i), state="failed" if i == 5 else "pending"
                )
            )
    return ids


def found(api: TestClient, **params: object) -> list[str]:
    response = api.get("/v1/faxes", params=params, headers=bearer(ADMIN))
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["items"]]


def test_each_filter_finds_exactly_its_faxes_newest_first(api: TestClient, jobs: list[str]) -> None:
    newest_first = jobs[::-1]
    assert found(api, metadata="invoice=inv-3") == [jobs[3]]
    assert found(api, metadata=["customer=acme", "invoice=inv-4"]) == [jobs[4]]
    assert found(api, metadata="customer=globex") == newest_first[:6]
    assert found(api, idempotency_key="order-7") == [jobs[7]]
    assert found(api, to="+12025550101") == [j for j in newest_first if jobs.index(j) % 3 == 1]
    assert found(api, state="failed") == [jobs[5]]
    assert found(api, provider="interfax", priority="urgent") == []
    assert found(api, priority="urgent") == [jobs[8], jobs[4], jobs[0]]
    assert found(api, since="2026-11-01T09:02:00Z", until="2026-11-01T09:04:00Z") == [
        jobs[3],
        jobs[2],
    ]
    assert found(api, metadata="invoice=nope") == []


def test_pages_follow_one_another_without_gaps_or_repeats(api: TestClient, jobs: list[str]) -> None:
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, object] = {"limit": 5, "metadata": "customer=acme"}
        if cursor:
            params["before"] = cursor
        page = api.get("/v1/faxes", params=params, headers=bearer(ADMIN)).json()
        seen.extend(item["id"] for item in page["items"])
        cursor = page["next"]
        if cursor is None:
            break
    assert seen == jobs[5::-1]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"metadata": "no-equals-sign"}, "metadata"),
        ({"priority": "asap"}, "priority"),
        ({"to": "12345"}, "to"),
        ({"since": "yesterday"}, "since"),
        ({"before": "not-a-cursor"}, "before"),
    ],
)
def test_a_bad_filter_is_a_clear_422(api: TestClient, params: dict[str, str], field: str) -> None:
    response = api.get("/v1/faxes", params=params, headers=bearer(ADMIN))
    assert response.status_code == 422
    assert response.json()["field"] == field


def test_faxes_stored_before_the_upgrade_are_found_by_their_metadata(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    upgrade(url, "0004")
    with engine_for(url).begin() as connection:
        connection.execute(
            text(
                "INSERT INTO jobs (id, to_number, provider, route, state, version, request_hash,"
                " attempt_count, immediate_retries, budget_start, pages, resend_from_page,"
                " metadata, options, created_at, updated_at, state_changed_at) VALUES ('j1',"
                " '+12025550100', 'interfax', '[]', 'succeeded', 3, 'h', 1, 0, 0, 1, 0,"
                " '{\"invoice\": \"inv-9\"}', '{}', '2026-11-01 10:00:00', '2026-11-02 11:00:00',"
                " '2026-11-02 11:00:00')"
            )
        )

    upgrade(url)

    with engine_for(url).connect() as connection:
        tags = connection.execute(text("SELECT job_id, key, value FROM job_tags")).all()
        priority = connection.execute(text("SELECT priority FROM jobs")).scalar()
    assert [tuple(t) for t in tags] == [("j1", "invoice", "inv-9")]
    assert priority == "normal"
