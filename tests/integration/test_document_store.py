"""Documents live where every host reaches them: an S3-compatible object store (a real
S3-protocol server, started by the tests), on the real stack; and documents an earlier
version kept on one host's disk move into the store with ``faxctl db upgrade``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import boto3
import pytest
from cryptography.fernet import Fernet
from sqlalchemy import Table, func, select
from typer.testing import CliRunner

from config.settings import get_settings
from dispatcher import queries, sending
from dispatcher.cli._app import app
from dispatcher.runtime import document_store
from dispatcher.store.db import get_engine, session_scope
from dispatcher.store.models import DocumentContent, JobDocument
from dispatcher.submission import FaxRequest, submit, submit_many
from tests.fixtures.documents import DOCUMENT_KEY, make_pdf
from tests.fixtures.stack import Stack

pytestmark = pytest.mark.e2e

#: The stack's worker stores and reads documents in a bucket of the test S3 server.
STACK_OBJECT_STORE = True
SUCCESS = "+12025550100"
FINAL = {"succeeded", "failed", "cancelled"}


def _bucket() -> tuple[Any, str]:
    """The test S3 server's client (boto3 ships no types: an untyped client) and bucket."""
    s3 = get_settings().s3
    secret = s3.secret_access_key.get_secret_value() if s3.secret_access_key else None
    client = boto3.client(
        "s3",
        endpoint_url=s3.endpoint_url,
        region_name=s3.region,
        aws_access_key_id=s3.access_key_id,
        aws_secret_access_key=secret,
    )
    return client, str(s3.bucket)


def test_documents_go_to_the_object_store_and_a_worker_sends_from_it(stack: Stack) -> None:
    # Given a fax submitted with the object store configured
    pdf = make_pdf(2)
    job_id = submit(FaxRequest(to=SUCCESS, documents=[("a.pdf", pdf)], provider="interfax")).job_id

    # Then its bytes are an object named by their sha256, encrypted, and not in the database
    client, bucket = _bucket()
    key = f"documents/{hashlib.sha256(pdf).hexdigest()}"
    stored = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    assert b"%PDF" not in stored and pdf[64:128] not in stored
    assert Fernet(DOCUMENT_KEY).decrypt(stored) == pdf
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(DocumentContent)) == 0

    # And the worker process reads them from there and sends the whole document
    job = stack.wait_for(lambda: (j := queries.get_job(job_id))["state"] in FINAL and j)
    assert job["state"] == "succeeded"
    [sent] = stack.sends(job_id)
    assert sent["pages"] == 2


def test_a_document_gone_from_the_store_holds_its_job_and_an_unreachable_store_waits(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given two due jobs, the object of one deleted
    pdf, other = make_pdf(1), make_pdf(3)
    gone, fine = (
        s.job_id
        for s in submit_many(
            [
                FaxRequest(to=SUCCESS, documents=[("a.pdf", pdf)], provider="interfax"),
                FaxRequest(to="+12025551010", documents=[("b.pdf", other)], provider="interfax"),
            ],
            publish=False,
        )
    )
    client, bucket = _bucket()
    client.delete_object(Bucket=bucket, Key=f"documents/{hashlib.sha256(pdf).hexdigest()}")

    # When they are dispatched, Then the first is held (an operator must act), the other sent
    said = sending.dispatch([(gone, 1), (fine, 1)])
    assert queries.get_job(gone)["state"] == "held"
    assert "NoSuchKey" in queries.get_job(gone)["reason"]
    assert said[fine].startswith("sent as interfax fax")

    # And a store that cannot be reached leaves a job waiting, pending, not held
    waiting = submit_many(
        [FaxRequest(to="+12025551011", documents=[("c.pdf", make_pdf(4))], provider="faxplus")],
        publish=False,
    )[0].job_id
    monkeypatch.setenv("FAX_S3__ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
    get_settings.cache_clear()
    said = sending.dispatch([(waiting, 1)])
    job = queries.get_job(waiting)
    assert said[waiting].startswith("deferred: the document store cannot answer")
    assert (job["state"], job["attempts"]) == ("pending", 0)
    assert stack.sends(waiting) == []


def test_documents_kept_on_disk_by_version_0_1_move_into_the_store(
    db_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Given jobs whose documents an earlier version kept under FAX_HOME/documents
    monkeypatch.setenv("FAX_DATABASE_URL", db_url)
    monkeypatch.setenv("FAX_DOCUMENT_STORE", "database")
    get_settings.cache_clear()
    pdf = make_pdf(2)
    submit_many([FaxRequest(to=SUCCESS, documents=[("a.pdf", pdf)])], publish=False)
    sha = hashlib.sha256(pdf).hexdigest()
    with session_scope() as session:
        table = DocumentContent.__table__
        assert isinstance(table, Table), "a declarative model's __table__ is its Table"
        session.execute(table.delete())
        assert session.scalars(select(JobDocument.sha256)).all() == [sha]
    legacy = get_settings().legacy_documents_dir / sha[:2]
    legacy.mkdir(parents=True)
    (legacy / sha).write_bytes(pdf)

    # When the database is upgraded on that host
    result = CliRunner().invoke(app, ["db", "upgrade"])

    # Then the documents are in the store, and the job can be sent from any host
    assert result.exit_code == 0, result.output
    assert "1 moved to the database store" in " ".join(result.output.split())
    with get_engine().connect() as connection:
        assert document_store().load(connection, [sha]) == {sha: pdf}

    # And a second upgrade finds them there already
    again = CliRunner().invoke(app, ["db", "upgrade"])
    assert "0 moved to the database store, 1 were there already" in " ".join(again.output.split())
