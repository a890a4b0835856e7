"""Submitting in-process: validation first, idempotency, and safe storage."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import func, select

from config.settings import get_settings
from dispatcher import inprocess
from dispatcher.errors import IdempotencyConflict, ValidationError
from dispatcher.store.db import session_scope
from dispatcher.store.models import DocumentContent, Job
from tests.fixtures.documents import DOCUMENT_KEY, make_encrypted_pdf, make_pdf


@pytest.fixture(autouse=True)
def _point_at(db_url: str, broker_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAX_DATABASE_URL", db_url)
    monkeypatch.setenv("FAX_BROKER_URL", broker_url)
    get_settings.cache_clear()


def job_count() -> int:
    with session_scope() as session:
        return session.scalar(select(func.count()).select_from(Job)) or 0


def test_the_same_key_returns_the_same_job_and_other_content_conflicts() -> None:
    pdf = make_pdf()
    first = inprocess.submit("+12025550100", [("a.pdf", pdf)], idempotency_key="invoice-42")
    again = inprocess.submit("+12025550100", [("a.pdf", pdf)], idempotency_key="invoice-42")
    assert first == again and job_count() == 1
    with pytest.raises(IdempotencyConflict, match="invoice-42"):
        inprocess.submit("+12025550101", [("a.pdf", pdf)], idempotency_key="invoice-42")
    assert job_count() == 1


@pytest.mark.parametrize(
    ("to", "documents", "field", "reason"),
    [
        ("2025550100", [("a.pdf", make_pdf())], "to", "international format"),
        ("+1202555010", [("a.pdf", make_pdf())], "to", "length"),
        ("+12025550100000000000000000000000000", [("a.pdf", make_pdf())], "to", "too long"),
        ("+19005550100", [("a.pdf", make_pdf())], "to", "premium"),
        ("+12025550100", [], "documents", "at least one"),
        ("+12025550100", [("a.pdf", b"")], "documents[0]", "empty"),
        ("+12025550100", [("a.pdf", make_encrypted_pdf())], "documents[0]", "encrypted"),
        ("+12025550100", [("a.pdf", b"%PDF-1.4 garbage")], "documents[0]", "cannot be read"),
        ("+12025550100", [("a.exe", b"MZ\x90\x00\x03\x00\x00\x00")], "documents[0]", "accepts"),
    ],
)
def test_bad_input_is_refused_with_field_and_reason_and_writes_nothing(
    to: str, documents: list[tuple[str, bytes]], field: str, reason: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        inprocess.submit(to, documents, provider="interfax")
    assert caught.value.field == field
    assert reason in caught.value.reason
    assert job_count() == 0


def test_an_oversized_document_is_refused() -> None:
    big = make_pdf() + b"\n%" + b"x" * (21 * 1024 * 1024)
    with pytest.raises(ValidationError, match="over interfax"):
        inprocess.submit("+12025550100", [("big.pdf", big)], provider="interfax")
    assert job_count() == 0


def test_a_document_is_kept_in_the_database_and_nothing_on_this_hosts_disk() -> None:
    # Given a document whose name tries to reach outside any folder
    pdf = make_pdf()
    home = get_settings().home_dir
    job_id = inprocess.submit("+12025550100", [("../../../../tmp/evil.pdf", pdf)])

    # Then its bytes are in the database, once, encrypted, and no file was written for it
    with session_scope() as session:
        kept = session.execute(select(DocumentContent.sha256, DocumentContent.content)).all()
    assert [(sha, Fernet(DOCUMENT_KEY).decrypt(content)) for sha, content in kept] == [
        (hashlib.sha256(pdf).hexdigest(), pdf)
    ]
    written = [p.name for p in home.rglob("*") if p.is_file() and not p.name.startswith("fax.db")]
    assert written == []
    assert not Path("/tmp/evil.pdf").exists()
    assert inprocess.get(job_id)["state"] == "pending"
