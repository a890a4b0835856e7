"""Secrets stay secret: an end-to-end batch runs with known credential values, and every
log line, every command the broker saw, and every database row is scanned for them.
Destination numbers and the documents' bytes are protected data: they are scanned for in
the logs, the broker's commands, the metrics and error bodies (the database keeps the
number until its retention, and the documents only encrypted).

InterFAX is configured with a password the sandbox refuses, so its jobs fail with an auth
error: error paths (attempt errors, job reasons, warnings) are scanned too.
"""

from __future__ import annotations

import logging
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import MetaData, select
from typer.testing import CliRunner

from dispatcher import queries
from dispatcher.api import create_app
from dispatcher.cli import app
from dispatcher.runtime import clear_adapters
from dispatcher.sandbox.server import SandboxServer
from dispatcher.store.db import engine_for, upgrade
from dispatcher.submission import FaxRequest, submit_many
from tests.fixtures.documents import make_chart
from tests.fixtures.stack import TIME_SCALE, Stack, _stack_env, use_env

pytestmark = pytest.mark.e2e

SECRETS = {
    "FAX_FAXPLUS__TOKEN": "alohi_pat_Zq8Secret4FaxPlus",
    "FAX_INTERFAX__PASSWORD": "Ifx-Secret-7731-wrong",
    "FAX_OPTUM__CLIENT_SECRET": "opt-Secret-55aa91",
    "FAX_OPTUM__WEBHOOK_SECRET": "whsec-Secret-0b1c",
    "FAX_FAXPLUS__WEBHOOK_SECRET": "hook-Secret-f00d",
    "FAX_API_TOKENS": '["api-Secret-c0ffee"]',
    "FAX_FLOWER_BASIC_AUTH": "admin:flower-Secret-1234",
}
NEEDLES = [
    "alohi_pat_Zq8Secret4FaxPlus",
    "Ifx-Secret-7731-wrong",
    "opt-Secret-55aa91",
    "whsec-Secret-0b1c",
    "hook-Secret-f00d",
    "api-Secret-c0ffee",
    "flower-Secret-1234",
]


class _Monitor(threading.Thread):
    """Records every command the broker executes (Redis MONITOR) while the batch runs."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.client = redis.Redis.from_url(url)
        self.lines: list[str] = []
        self.ready = threading.Event()

    def run(self) -> None:
        with self.client.monitor() as monitor:
            self.ready.set()
            try:
                for event in monitor.listen():
                    self.lines.append(str(event.get("command", "")))
            except (redis.ConnectionError, ValueError):
                return

    def stop(self) -> None:
        self.client.connection_pool.disconnect()


@pytest.fixture
def secret_stack(broker_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    home = Path(tempfile.mkdtemp(prefix="fax-secrets-"))
    db_url = f"sqlite:///{home / 'fax.db'}"
    upgrade(db_url)
    broker = f"{broker_url.rsplit('/', 1)[0]}/14"
    redis.Redis.from_url(broker).flushdb()
    with SandboxServer(
        time_scale=TIME_SCALE,
        hold_seconds=60.0,
        credentials={
            "faxplus": {"token": SECRETS["FAX_FAXPLUS__TOKEN"]},
            "optum": {"client_secret": SECRETS["FAX_OPTUM__CLIENT_SECRET"]},
        },
    ) as sandbox:
        env = _stack_env(home, db_url, broker, sandbox.url)
        env.update(SECRETS)
        env.update(
            FAX_FAXPLUS__BASE_URL=f"{sandbox.url}/faxplus/v3",
            FAX_INTERFAX__BASE_URL=f"{sandbox.url}/interfax",
            FAX_INTERFAX__USERNAME="sandbox",
            FAX_OPTUM__BASE_URL=f"{sandbox.url}/optum",
            FAX_OPTUM__TOKEN_URL=f"{sandbox.url}/optum/oauth/token",
            FAX_OPTUM__CLIENT_ID="sandbox",
        )
        use_env(env, monkeypatch)
        stack = Stack(env, home, sandbox.url)
        try:
            stack.start_worker()
            yield stack
        finally:
            stack.stop()
            clear_adapters()


def test_no_secret_reaches_logs_broker_or_database(
    secret_stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    monitor = _Monitor(secret_stack.env["FAX_BROKER_URL"])
    monitor.start()
    monitor.ready.wait(10)
    document = make_chart("SecretsScanChart")
    requests = [
        FaxRequest(
            to=f"+1202555{1000 + i:04d}",
            documents=[("a.pdf", document)],
            provider=("faxplus", "interfax", "optum")[i % 3],
        )
        for i in range(12)
    ]
    job_ids = [s.job_id for s in submit_many(requests)]
    jobs = secret_stack.wait_for(
        lambda: (
            all(queries.get_job(j)["state"] in {"succeeded", "failed"} for j in job_ids)
            and [queries.get_job(j) for j in job_ids]
        )
    )
    # The configured providers really worked, and InterFAX's refusal is on record.
    states = {(j["provider"], j["state"]) for j in jobs}
    assert states == {("faxplus", "succeeded"), ("optum", "succeeded"), ("interfax", "failed")}
    refused = next(j for j in jobs if j["provider"] == "interfax")
    assert "http_401" in refused["reason"] or "credentials" in refused["reason"].lower()
    # Operators' views: the CLI, the API's error body, providers.
    cli = CliRunner().invoke(app, ["status", refused["id"], "--json"]).output
    cli += CliRunner().invoke(app, ["attempts", refused["id"], "--json"]).output
    cli += CliRunner().invoke(app, ["providers", "--json"]).output
    api_error = httpx.get(f"{secret_stack.sandbox_url}/interfax/outbound/faxes/1").text
    with TestClient(create_app()) as api:
        admin = {"Authorization": "Bearer api-Secret-c0ffee"}
        metrics = api.get("/metrics", headers=admin).text
        bad_number = api.post(
            "/v1/faxes",
            headers=admin,
            data={"to": "+1202555999"},
            files={"documents": ("a.pdf", document, "application/pdf")},
        )
    assert bad_number.status_code == 422 and "+120255****" in bad_number.text
    monitor.stop()

    haystacks = {
        "worker logs": "\n".join(w.log.read_text() for w in secret_stack.workers),
        "test process logs": caplog.text,
        "broker commands": "\n".join(monitor.lines),
        "database rows": _dump_database(secret_stack.env["FAX_DATABASE_URL"]),
        "cli output": cli,
        "provider error body": api_error,
    }
    assert len(monitor.lines) > 50, "the broker monitor saw the batch"
    assert "fax.dispatch" in haystacks["broker commands"]
    for where, text in haystacks.items():
        for needle in NEEDLES:
            assert needle not in text, f"a secret leaked into {where}"
    assert "fax_jobs" in metrics
    haystacks.pop("cli output")  # an operator reads a job's number whole until its retention
    haystacks.update({"metrics": metrics, "API error body": bad_number.text})
    numbers = [r.to for r in requests] + ["+1202555999"]
    for where, text in haystacks.items():
        if where != "database rows":
            for number in numbers:
                assert number not in text and number[1:] not in text, f"a number is in {where}"
        assert "SecretsScanChart" not in text, f"the document's bytes are in {where}"


def _dump_database(url: str) -> str:
    engine = engine_for(url)
    metadata = MetaData()
    metadata.reflect(engine)
    with engine.connect() as conn:
        return "\n".join(
            repr(row) for table in metadata.sorted_tables for row in conn.execute(select(table))
        )
