"""Retention, purge and encryption at rest on the real stack (SQLite and PostgreSQL; the
object store runs the same tests in ``test_retention_s3.py``): a fax carrying a
patient's chart is sent, beat purges it once it has expired, and then neither the
chart's bytes nor the full number is found in the database, the document store, or
any log written during the run. The fax's record stays."""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import subprocess
from datetime import timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import MetaData, func, select
from typer.testing import CliRunner

from config.settings import get_settings
from dispatcher import operations, queries, retention
from dispatcher.api import create_app
from dispatcher.cli import app
from dispatcher.clock import utcnow
from dispatcher.errors import ConfigurationError
from dispatcher.stack import worker_command
from dispatcher.store.db import get_engine, session_scope
from dispatcher.store.models import DocumentContent, Job, StatusEvent
from dispatcher.submission import FaxRequest, submit
from tests.fixtures.api import ADMIN, bearer
from tests.fixtures.documents import make_chart
from tests.fixtures.stack import ROOT, Stack

pytestmark = pytest.mark.e2e

#: Everything ended is past retention after a second; beat purges every half second.
STACK_ENV = {
    "FAX_RETENTION__DOCUMENTS": "1",
    "FAX_RETENTION__RECIPIENT": "1",
    "FAX_RETENTION__PAYLOADS": "1",
    "FAX_RETENTION__INTERVAL": "0.5",
}
MARKER = "RosalindFranklinDOB19200725"
CHART_NAME = "rosalind-franklin-chart.pdf"
FINAL = {"succeeded", "failed", "cancelled"}


def _stored_documents() -> list[bytes]:
    """Every document's bytes as the store keeps them: rows, or the bucket's objects."""
    settings = get_settings()
    if settings.document_store == "database":
        with session_scope() as session:
            return [bytes(c) for c in session.scalars(select(DocumentContent.content))]
    s3 = settings.s3
    client = boto3.client(
        "s3",
        endpoint_url=s3.endpoint_url,
        region_name=s3.region,
        aws_access_key_id=s3.access_key_id,
        aws_secret_access_key=s3.secret_access_key.get_secret_value()
        if s3.secret_access_key
        else None,
    )
    listed = client.list_objects_v2(Bucket=s3.bucket, Prefix=s3.prefix).get("Contents", [])
    return [client.get_object(Bucket=s3.bucket, Key=o["Key"])["Body"].read() for o in listed]


def _payloads(job_id: str) -> list[object]:
    with session_scope() as session:
        query = select(StatusEvent.payload).where(StatusEvent.job_id == job_id)
        return [p for p in session.scalars(query) if p is not None]


def _database_text() -> str:
    """Every row of every table, as text."""
    engine = get_engine()
    metadata = MetaData()
    metadata.reflect(engine)
    with engine.connect() as connection:
        return "\n".join(
            repr(row)
            for table in metadata.sorted_tables
            for row in connection.execute(select(table))
        )


def _sqlite_file() -> bytes | None:
    """The SQLite file's raw bytes once its write-ahead log is folded in (None on PG)."""
    url = get_engine().url
    if url.get_backend_name() != "sqlite" or not url.database:
        return None
    with sqlite3.connect(url.database) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    with open(url.database, "rb") as file:
        return file.read()


def test_an_ended_fax_is_purged_everywhere_and_its_record_stays(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    document = make_chart(MARKER)
    number, waiting_number = "+13125557319", "+13125557320"
    # Given a fax sent, and another with the same chart not due for an hour
    sent = submit(
        FaxRequest(
            to=number,
            documents=[(CHART_NAME, document)],
            provider="faxplus",
            metadata={"patient": "rosalind-franklin"},
        )
    ).job_id
    waiting = submit(
        FaxRequest(
            to=waiting_number,
            documents=[(CHART_NAME, document)],
            provider="faxplus",
            send_at=utcnow() + timedelta(hours=1),
        )
    ).job_id
    stack.wait_for(lambda: queries.get_job(sent)["state"] in FINAL)

    # The store holds the chart once, encrypted: no plaintext in the stored bytes
    (stored,) = _stored_documents()
    assert MARKER.encode() not in stored and b"%PDF" not in stored

    # faxctl purge --dry-run counts the expired fax and changes nothing
    stack.wait_for(lambda: retention.expired_counts()[retention.Kind.DOCUMENTS], drive_ticks=False)
    dry = CliRunner().invoke(app, ["purge", "--dry-run", "--json"])
    assert dry.exit_code == 0, dry.output
    assert '"documents": 1' in dry.output
    assert queries.get_job(sent)["documents_purged_at"] is None
    assert _payloads(sent), "the provider's raw payloads are kept until they expire"

    # When beat runs with the fax past its retention
    beat = stack.start_beat()
    try:
        purged = stack.wait_for(
            lambda: (job := queries.get_job(sent))["payloads_purged_at"] is not None and job
        )
        # Then the record stays, masked, without metadata
        assert purged["state"] == "succeeded" and purged["to"] == "+1312555****"
        assert purged["metadata"] == {} and purged["documents_purged_at"] is not None
        attempts = queries.attempts(sent)
        assert attempts and attempts[-1]["code"] is not None
        assert queries.events(sent) and _payloads(sent) == []
        # and the chart is still kept for the fax that has not been sent yet
        assert len(_stored_documents()) == 1

        # When that fax is cancelled, it ends, expires and is purged too
        operations.cancel(waiting)
        stack.wait_for(lambda: queries.get_job(waiting)["payloads_purged_at"] is not None)
    finally:
        beat.stop()
        stack.workers.remove(beat)

    # Then nothing of the chart or the numbers is left anywhere
    assert _stored_documents() == []
    haystacks: dict[str, Any] = {
        "database rows": _database_text(),
        "worker and beat logs": "\n".join(w.log.read_text() for w in stack.workers)
        + beat.log.read_text(),
        "test process logs": caplog.text,
    }
    raw = _sqlite_file()
    if raw is not None:
        haystacks["SQLite file"] = raw.decode("latin-1")
    for where, text in haystacks.items():
        for needle in (number, waiting_number, number[1:], MARKER, CHART_NAME, "rosalind"):
            assert needle not in text, f"{needle!r} is still in the {where}"
    with session_scope() as session:  # while both records stay
        assert set(session.scalars(select(Job.state).where(Job.id.in_([sent, waiting])))) == {
            "succeeded",
            "cancelled",
        }


def test_a_producer_purges_an_ended_fax_at_once(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAX_API_TOKENS", json.dumps([ADMIN]))
    get_settings.cache_clear()
    with TestClient(create_app()) as api:
        _purge_over_the_api(stack, api)


def _purge_over_the_api(stack: Stack, api: TestClient) -> None:
    document = make_chart("ProducerPurgeChart")
    created = api.post(
        "/v1/faxes",
        headers=bearer(ADMIN),
        data={"to": "+13125557321", "provider": "interfax", "metadata": '{"patient": "x"}'},
        files={"documents": (CHART_NAME, document, "application/pdf")},
    )
    assert created.status_code == 201, created.text
    job_id = created.json()["id"]

    # Not while it may still be sent
    early = api.delete(f"/v1/faxes/{job_id}/data", headers=bearer(ADMIN))
    assert early.status_code == 409 and "ended" in early.json()["message"]

    stack.wait_for(lambda: queries.get_job(job_id)["state"] in FINAL)
    answer = api.delete(f"/v1/faxes/{job_id}/data", headers=bearer(ADMIN))

    assert answer.status_code == 200, answer.text
    fax = answer.json()
    assert fax["to"] == "+1312555****" and fax["metadata"] == {}
    assert fax["documents_purged_at"] and fax["recipient_purged_at"] and fax["payloads_purged_at"]
    assert not any(document == s for s in _stored_documents())
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(Job).where(Job.id == job_id))
    # Purging again is harmless; a retry is refused, since there is nothing to send
    assert api.delete(f"/v1/faxes/{job_id}/data", headers=bearer(ADMIN)).status_code == 200
    assert api.post(f"/v1/faxes/{job_id}/retry", headers=bearer(ADMIN)).status_code == 409


def test_a_shared_deployment_without_document_keys_refuses_to_start(
    broker_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared = "postgresql://fax@127.0.0.1:9/fax"  # never reached: the keys are checked first
    monkeypatch.setenv("FAX_DATABASE_URL", shared)
    monkeypatch.delenv("FAX_DOCUMENT_KEYS")
    get_settings.cache_clear()

    # The API
    with pytest.raises(ConfigurationError, match="FAX_DOCUMENT_KEYS is required"):
        create_app()

    # A worker
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAX_")}
    env.update(
        FAX_HOME=str(tmp_path),
        FAX_DATABASE_URL=shared,
        FAX_BROKER_URL=broker_url,
        PYTHONPATH=str(ROOT),
    )
    worker = subprocess.run(
        worker_command(1, "nokeys"), env=env, cwd=ROOT, capture_output=True, timeout=120
    )
    assert worker.returncode != 0
    assert b"FAX_DOCUMENT_KEYS is required" in worker.stdout + worker.stderr
