"""The HTTP client and the batch API, against the real API served over HTTP (uvicorn in a
thread), a real database and a real broker: typed results, one exception per error
class, safe retries that never make a second fax, and bulk sends from another host."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from sqlalchemy import func, select
from typer.testing import CliRunner

from config.settings import get_settings
from dispatcher.cli import app
from dispatcher.client import (
    AsyncFaxClient,
    Conflict,
    FaxClient,
    FaxRequest,
    InvalidRequest,
    NotFound,
    Unauthorized,
)
from dispatcher.schemas import Fax
from dispatcher.store.db import get_engine
from dispatcher.store.models import Job
from dispatcher.tenants import create_key
from tests.fixtures.api import served_api
from tests.fixtures.documents import make_pdf

TOKEN = "client-" + "c" * 40
SUCCESS = "+12025550100"


@pytest.fixture
def api_url(broker_queue: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The API on a local port, on this test's database and broker."""
    monkeypatch.setenv("FAX_API_TOKENS", json.dumps([TOKEN]))
    get_settings.cache_clear()
    with served_api() as url:
        yield url


def jobs() -> int:
    with get_engine().connect() as conn:
        return conn.execute(select(func.count()).select_from(Job)).scalar_one()


class LoseFirstAnswer(httpx.HTTPTransport):
    """The server gets the first request and answers, but the answer never arrives."""

    def __init__(self) -> None:
        super().__init__()
        self.sent = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        self.sent += 1
        if self.sent == 1:
            response.read()
            raise httpx.ReadTimeout("the answer was lost", request=request)
        return response


def test_a_submit_whose_answer_was_lost_is_retried_with_its_key_and_makes_one_fax(
    api_url: str,
) -> None:
    transport = LoseFirstAnswer()
    with FaxClient(api_url, TOKEN, transport=transport) as client:
        fax = client.submit(SUCCESS, [("a.pdf", make_pdf())], metadata={"invoice": "42"})

    assert transport.sent == 2
    assert isinstance(fax, Fax) and fax.state == "pending"
    assert fax.metadata == {"invoice": "42"}
    assert jobs() == 1


def test_a_server_error_is_retried_and_every_api_error_has_its_class(api_url: str) -> None:
    failures = iter([503])

    def flaky(request: httpx.Request) -> httpx.Response:
        status = next(failures, None)
        if status is not None:
            return httpx.Response(status, json={"error": "busy", "message": "try later"})
        return httpx.HTTPTransport().handle_request(request)

    with FaxClient(api_url, TOKEN, transport=httpx.MockTransport(flaky)) as client:
        fax = client.submit(SUCCESS, [("a.pdf", make_pdf())])
    assert jobs() == 1

    with FaxClient(api_url, TOKEN) as client:
        with pytest.raises(InvalidRequest) as invalid:
            client.submit("12345", [("a.pdf", make_pdf())])
        assert invalid.value.field == "to"
        with pytest.raises(NotFound):
            client.get("0" * 32)
        with pytest.raises(Conflict):
            client.resume(fax.id)  # pending, not held
        assert client.hold(fax.id).state == "held"
        assert client.resume(fax.id).state == "pending"
        assert client.cancel(fax.id).state == "cancelled"
        assert [e.source for e in client.events(fax.id)] == ["operator"] * 3
        assert client.attempts(fax.id) == []
        assert [f.id for f in client.list(state="cancelled").items] == [fax.id]
    with FaxClient(api_url, "wrong" * 10) as client, pytest.raises(Unauthorized):
        client.get(fax.id)


def test_the_async_client_does_the_same(api_url: str) -> None:
    async def run() -> tuple[Fax, Fax]:
        async with AsyncFaxClient(api_url, TOKEN) as client:
            fax = await client.submit(SUCCESS, [("a.pdf", make_pdf())], idempotency_key="k-1")
            again = await client.submit(SUCCESS, [("a.pdf", make_pdf())], idempotency_key="k-1")
            return fax, await client.get(again.id)

    fax, read = asyncio.run(run())
    assert fax.id == read.id and jobs() == 1


def test_submit_many_is_one_batch_with_each_rejected_row_named_and_a_rerun_adds_nothing(
    api_url: str,
) -> None:
    pdf = make_pdf()
    requests = [
        FaxRequest(to=f"+1202555{2000 + i:04d}", documents=[("s.pdf", pdf)], provider="interfax")
        for i in range(20)
    ]
    requests[3] = FaxRequest(to="+1202", documents=[("s.pdf", pdf)])
    with FaxClient(api_url, TOKEN) as client:
        batch = client.submit_many(requests)
        again = client.submit_many(requests)
        view = client.batch(batch.id)

    assert (batch.rows, batch.accepted, batch.duplicates) == (20, 19, 0)
    assert [r.row for r in batch.rejected] == [5]  # the fourth fax: row 5 of the upload
    assert (again.accepted, again.duplicates) == (0, 19)
    assert view.states == {"pending": 19} and view.final == 0
    assert jobs() == 19


def test_faxctl_bulk_sends_a_file_to_a_remote_api_in_parts(
    api_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a 20-row file on this host, two rows bad, and an API elsewhere
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.pdf").write_bytes(make_pdf(1))
    (tmp_path / "docs" / "b.pdf").write_bytes(make_pdf(2))
    lines = ["to,provider,document,meta_ref"]
    for row in range(2, 22):
        to = "+1202" if row in (9, 17) else f"+1202555{3000 + row:04d}"
        lines.append(f"{to},faxplus,docs/{'ab'[row % 2]}.pdf,r{row}")
    path = tmp_path / "people.csv"
    path.write_text("\n".join(lines) + "\n")
    monkeypatch.setattr("dispatcher.cli.bulk.PART_ROWS", 7)
    monkeypatch.setenv("FAX_API_TOKEN", TOKEN)

    def run() -> tuple[int, dict[str, Any]]:
        result = CliRunner().invoke(
            app, ["bulk", str(path), "--api", api_url, "--no-follow", "--json"]
        )
        return result.exit_code, json.loads(result.stdout)

    # When it is sent, in parts of 7 rows
    code, summary = run()

    # Then it is one batch; the bad rows are named by their row in the file
    assert code == 2
    assert (summary["rows"], summary["accepted"]) == (20, 18)
    assert [r["row"] for r in summary["rejected"]] == [9, 17]
    with get_engine().connect() as conn:
        assert conn.execute(select(Job.batch_id).distinct()).scalars().all() == [summary["batch"]]

    # And once the bad rows are fixed, a run adds only them
    path.write_text(
        path.read_text().replace("+1202,", "+12025559999,", 1).replace("+1202,", "+12025559998,")
    )
    code, fixed = run()
    assert code == 0
    assert (fixed["accepted"], fixed["duplicates"]) == (2, 18)
    assert jobs() == 20


def test_the_client_searches_registers_endpoints_and_reads_deliveries_as_a_tenant(
    api_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a tenant's key, and faxes of its own (and a local receiver allowed)
    monkeypatch.setenv("FAX_CALLBACKS__ALLOW_HTTP", "true")
    monkeypatch.setenv("FAX_CALLBACKS__ALLOW_PRIVATE", "true")
    get_settings.cache_clear()
    tenant = create_key("client-tenant")
    with FaxClient(api_url, tenant.key) as client:
        urgent = client.submit(
            SUCCESS, [("a.pdf", make_pdf())], metadata={"invoice": "7"}, priority="urgent"
        )
        client.submit(SUCCESS, [("a.pdf", make_pdf())], metadata={"invoice": "8"})

        # When it searches, and registers an endpoint
        found = client.list(metadata={"invoice": "7"}, priority="urgent", to=SUCCESS)
        endpoint = client.register_endpoint("http://127.0.0.1:9/hook", ["fax.failed"])

        # Then it finds exactly its fax, typed, and its endpoint with a secret shown once
        assert [f.id for f in found.items] == [urgent.id] and found.items[0].priority == "urgent"
        assert endpoint.secret.startswith("whsec_") and endpoint.event_types == ["fax.failed"]
        assert [e.id for e in client.endpoints()] == [endpoint.id]
        assert client.deliveries().items == []
    with FaxClient(api_url, TOKEN) as operators, pytest.raises(NotFound):
        operators.redeliver("msg_" + "0" * 32)
