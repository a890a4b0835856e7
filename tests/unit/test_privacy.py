"""Protected data in pure logic and on the in-memory twin: masking, the document cipher
and its keys, a wrong key that makes a job wait, and retention's bounded purge."""

from __future__ import annotations

import io
import json
import logging
import stat
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from cryptography.fernet import Fernet
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func, select, update

from config.settings import Settings, get_settings
from dispatcher import operations, retention, sending
from dispatcher.clock import utcnow
from dispatcher.context import Context
from dispatcher.errors import ConfigurationError, IllegalTransition
from dispatcher.lifecycle import JobState
from dispatcher.privacy import MaskNumbers, mask_number, mask_numbers, mask_numbers_in, number_key
from dispatcher.providers.twin import TwinAdapter
from dispatcher.store.documents import DatabaseStore, rotate_documents
from dispatcher.store.encryption import DocumentCipher, UnreadableDocument, cipher_for
from dispatcher.store.models import (
    Attempt,
    Document,
    DocumentContent,
    Job,
    JobDocument,
    JobTag,
    StatusEvent,
)
from tests.fixtures.documents import DOCUMENT_KEY, make_pdf
from tests.fixtures.twin import job_of, submit_job

NUMBER = "+12025550123"


def test_a_number_is_masked_as_the_issue_shows() -> None:
    assert mask_number(NUMBER) == "+1202555****"
    assert mask_number("123") == "***"


@given(st.text(alphabet="+0123456789 ", min_size=5, max_size=32))
def test_a_masked_number_hides_its_last_four_and_keeps_its_length(number: str) -> None:
    masked = mask_number(number)
    assert len(masked) == len(number)
    assert masked.endswith("****") and masked[:-4] == number[:-4]
    assert mask_number(masked) == masked  # masking twice changes nothing (a purge rerun)


def test_a_number_key_names_the_number_without_holding_it() -> None:
    assert number_key(NUMBER) == number_key(NUMBER)
    assert number_key(NUMBER) != number_key("+12025550124")
    assert "2025550123" not in number_key(NUMBER)


def test_the_first_key_encrypts_and_every_key_decrypts() -> None:
    old, new = Fernet.generate_key(), Fernet.generate_key()
    stored = DocumentCipher([old]).encrypt(b"%PDF-1.4 patient chart")
    rotated = DocumentCipher([new, old])

    assert b"patient" not in stored
    assert rotated.decrypt(stored) == b"%PDF-1.4 patient chart"
    assert not rotated.is_current(stored)
    again = rotated.reencrypt(stored)
    assert rotated.is_current(again)
    assert DocumentCipher([new]).decrypt(again) == b"%PDF-1.4 patient chart"


def test_bytes_stored_before_encryption_are_read_and_then_encrypted() -> None:
    cipher = DocumentCipher([Fernet.generate_key()])
    assert cipher.decrypt(b"%PDF-1.3 legacy") == b"%PDF-1.3 legacy"
    assert not cipher.is_current(b"%PDF-1.3 legacy")
    assert cipher.decrypt(cipher.reencrypt(b"%PDF-1.3 legacy")) == b"%PDF-1.3 legacy"


def test_a_wrong_key_names_the_setting() -> None:
    stored = DocumentCipher([Fernet.generate_key()]).encrypt(b"%PDF")
    with pytest.raises(UnreadableDocument, match="FAX_DOCUMENT_KEYS"):
        DocumentCipher([Fernet.generate_key()]).decrypt(stored)


def test_a_malformed_key_is_refused_by_its_position() -> None:
    with pytest.raises(ConfigurationError, match=r"FAX_DOCUMENT_KEYS\[1\] is not a Fernet key"):
        DocumentCipher([Fernet.generate_key(), b"not-a-key"])


def test_a_sqlite_database_gets_a_private_key_beside_it_once(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'fax.db'}", document_keys=[])
    stored = cipher_for(settings).encrypt(b"chart")

    key_file = tmp_path / "fax.db.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    # Another process on the host reads it with the same key
    assert cipher_for(settings).decrypt(stored) == b"chart"
    assert list(tmp_path.iterdir()) == [key_file]  # no draft left behind


@pytest.mark.parametrize(
    "fields",
    [
        {"database_url": "postgresql+psycopg://fax@db.internal/fax"},
        {"document_store": "s3"},
    ],
)
def test_a_shared_deployment_refuses_to_start_without_keys(
    fields: dict[str, str], tmp_path: Path
) -> None:
    settings = Settings(home=tmp_path, document_keys=[], **fields)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="FAX_DOCUMENT_KEYS is required"):
        cipher_for(settings)


def test_a_job_whose_document_no_key_decrypts_waits_and_is_sent_once_the_key_is_back(
    twin_ctx: Context, twin: TwinAdapter
) -> None:
    job_id = submit_job()
    wrong = DatabaseStore(DocumentCipher([Fernet.generate_key()]))

    outcome = sending.dispatch([(job_id, 1)], ctx=replace(twin_ctx, documents=wrong))

    job = job_of(twin_ctx, job_id)
    assert job.state == JobState.PENDING and job.next_attempt_at is not None
    assert "FAX_DOCUMENT_KEYS" in (job.reason or "") and twin.sends(job_id) == []
    assert "FAX_DOCUMENT_KEYS" in outcome[job_id]

    sending.dispatch([(job_id, 1)], ctx=twin_ctx)  # the tick's next delivery, key fixed
    assert len(twin.sends(job_id)) == 1
    assert job_of(twin_ctx, job_id).state == JobState.IN_PROGRESS


def test_rotation_reencrypts_every_document_under_the_new_key_and_can_run_again(
    twin_ctx: Context,
) -> None:
    job_ids = [submit_job(documents=[("a.pdf", make_pdf(pages))]) for pages in (1, 2, 3)]
    new = Fernet.generate_key()
    store = DatabaseStore(DocumentCipher([new, DOCUMENT_KEY.encode()]))

    batches = list(rotate_documents(twin_ctx.engine, store, batch_size=2))
    again = list(rotate_documents(twin_ctx.engine, store, batch_size=2))

    assert [(seen, rotated) for seen, rotated, _ in batches] == [(2, 2), (1, 1)]
    assert sum(rotated for _, rotated, _ in again) == 0
    only_new = DocumentCipher([new])
    with twin_ctx.engine.connect() as connection:
        for stored in connection.scalars(select(DocumentContent.content)):
            assert only_new.decrypt(stored).startswith(b"%PDF")
    assert len(job_ids) == 3


def _end(ctx: Context, job_ids: list[str], days_ago: float) -> None:
    with ctx.engine.begin() as connection:
        connection.execute(
            update(Job)
            .where(Job.id.in_(job_ids))
            .values(state="failed", finished_at=utcnow() - timedelta(days=days_ago))
        )


def test_the_purge_works_in_bounded_batches_and_keeps_the_record(
    twin_ctx: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAX_RETENTION__BATCH_SIZE", "3")
    get_settings.cache_clear()
    expired = [submit_job(f"+1202555{i:04d}", metadata={"patient": f"p{i}"}) for i in range(7)]
    recent = submit_job("+12025559999", metadata={"patient": "recent"})
    _end(twin_ctx, expired, days_ago=40)
    _end(twin_ctx, [recent], days_ago=1)
    assert retention.expired_counts() == {
        retention.Kind.DOCUMENTS: 7,
        retention.Kind.RECIPIENT: 7,
        retention.Kind.PAYLOADS: 7,
    }
    batches: list[tuple[str, int]] = []

    run = retention.purge_expired(progress=lambda kind, n: batches.append((kind, n)))

    # Each transaction purged at most a batch; the recipient's purge took the payloads along
    assert batches == [("documents", 3), ("documents", 3), ("documents", 1)] + [
        ("recipient", 3),
        ("recipient", 3),
        ("recipient", 1),
    ]
    assert not run.more and set(retention.expired_counts().values()) == {0}
    with twin_ctx.session() as session:
        for job_id in expired:
            job = session.get_one(Job, job_id)
            assert job.state == "failed" and job.to_number.endswith("****")
            assert job.meta == {} and job.payloads_purged_at is not None
        kept = session.get_one(Job, recent)
        assert kept.to_number == "+12025559999" and kept.meta == {"patient": "recent"}
        assert session.scalar(select(func.count()).select_from(JobTag)) == 1
        assert session.scalar(select(func.count()).select_from(JobDocument)) == 1


def test_a_purge_run_out_of_time_leaves_the_rest_for_the_next(
    twin_ctx: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAX_RETENTION__BATCH_SIZE", "2")
    monkeypatch.setenv("FAX_RETENTION__RUN_SECONDS", "0.000001")
    get_settings.cache_clear()
    job_ids = [submit_job(f"+1202555{i:04d}") for i in range(5)]
    _end(twin_ctx, job_ids, days_ago=40)

    first = retention.purge_expired()

    assert first.more and first.jobs[retention.Kind.DOCUMENTS] == 2
    while retention.purge_expired().more:
        pass
    assert set(retention.expired_counts().values()) == {0}


def test_content_shared_with_a_job_still_waiting_is_kept_until_that_job_ends_too(
    twin_ctx: Context, twin: TwinAdapter
) -> None:
    pdf = make_pdf(2)
    ended = submit_job("+12025550001", documents=[("a.pdf", pdf)])
    waiting = submit_job("+12025550002", documents=[("a.pdf", pdf)])
    _end(twin_ctx, [ended], days_ago=40)

    retention.purge_expired()

    with twin_ctx.session() as session:
        assert session.scalar(select(func.count()).select_from(DocumentContent)) == 1
    sending.dispatch([(waiting, 1)], ctx=twin_ctx)
    assert [[d.content for d in s.documents] for s in twin.sends(waiting)] == [[pdf]]

    _end(twin_ctx, [waiting], days_ago=40)
    retention.purge_expired()
    with twin_ctx.session() as session:
        assert session.scalar(select(func.count()).select_from(DocumentContent)) == 0
        assert session.scalar(select(func.count()).select_from(Document)) == 0


def test_a_fax_whose_data_was_purged_cannot_be_retried(twin_ctx: Context) -> None:
    job_id = submit_job()
    _end(twin_ctx, [job_id], days_ago=40)
    retention.purge_expired()

    with pytest.raises(IllegalTransition, match="purged"):
        operations.retry(job_id)


def test_the_settings_document_keys_as_a_json_list(monkeypatch: pytest.MonkeyPatch) -> None:
    keys = [Fernet.generate_key().decode(), DOCUMENT_KEY]
    monkeypatch.setenv("FAX_DOCUMENT_KEYS", json.dumps(keys))
    get_settings.cache_clear()
    assert [k.get_secret_value() for k in get_settings().document_keys] == keys
    assert keys[0] not in repr(get_settings())


def test_logged_request_urls_show_the_number_masked() -> None:
    url = httpx.URL("https://rest.interfax.net/outbound/faxes?faxNumber=%2B12025550123")
    record = logging.LogRecord(
        "httpx", logging.INFO, __file__, 1, 'HTTP Request: %s %s "%s"', ("POST", url, "200"), None
    )

    assert MaskNumbers().filter(record)

    message = record.getMessage()
    assert "12025550123" not in message
    assert "POST https://rest.interfax.net/outbound/faxes?faxNumber=%2B1202555****" in message


def test_numbers_in_free_text_are_masked_wherever_they_stand() -> None:
    text = (
        "InterFAX: invalid fax number +12025550123 (faxNumber=%2B442071838750); job 1234567890123"
    )
    assert mask_numbers(text) == (
        "InterFAX: invalid fax number +1202555**** (faxNumber=%2B44207183****); job 1234567890123"
    )


def test_a_handler_writes_its_lines_with_numbers_masked() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("test.privacy.handler")
    logger.addHandler(handler)
    try:
        mask_numbers_in(logger)
        mask_numbers_in(logger)  # once per handler
        logger.warning("task fax.dispatch returned %r", "deferred: +12025550123 is on a call")
    finally:
        logger.removeHandler(handler)
    assert len(handler.filters) == 1
    assert stream.getvalue() == "task fax.dispatch returned 'deferred: +1202555**** is on a call'\n"


def test_the_number_is_masked_in_the_jobs_reason_attempts_and_events_too(
    twin_ctx: Context, twin: TwinAdapter
) -> None:
    job_id = submit_job(NUMBER)
    sending.dispatch([(job_id, 1)], ctx=twin_ctx)
    quoted = f"provider: fax to {NUMBER} (12025550123) failed"
    with twin_ctx.engine.begin() as connection:
        connection.execute(update(Attempt).where(Attempt.job_id == job_id).values(error=quoted))
        connection.execute(
            update(StatusEvent).where(StatusEvent.job_id == job_id).values(detail=quoted)
        )
        connection.execute(update(Job).where(Job.id == job_id).values(reason=quoted))
    _end(twin_ctx, [job_id], days_ago=40)

    retention.purge_expired()

    masked = "provider: fax to +1202555**** (1202555****) failed"
    with twin_ctx.session() as session:
        assert session.get_one(Job, job_id).reason == masked
        assert set(session.scalars(select(Attempt.error).where(Attempt.job_id == job_id))) == {
            masked
        }
        details = set(
            session.scalars(select(StatusEvent.detail).where(StatusEvent.job_id == job_id))
        )
        assert details == {masked}
