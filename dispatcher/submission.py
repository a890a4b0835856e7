"""Accepting faxes: validate, write the job rows, and only after commit publish ids.

An idempotency key makes a submission safe to repeat: the same key and content return
the existing job, the same key with other content is an ``IdempotencyConflict``.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from config.settings import Settings, get_settings
from dispatcher.clock import utcnow
from dispatcher.documents import DocumentStore
from dispatcher.errors import IdempotencyConflict
from dispatcher.lifecycle import JobState
from dispatcher.messaging import publish_dispatch
from dispatcher.store.db import get_engine, session_scope
from dispatcher.store.models import Document, Job, JobDocument
from dispatcher.validation import ValidFax, validate_fax

__all__ = ["FaxRequest", "Submitted", "submit", "submit_many"]


@dataclass(frozen=True, slots=True)
class FaxRequest:
    """What a producer asks for. ``documents`` are (file name, bytes) pairs."""

    to: str
    documents: Sequence[tuple[str, bytes]]
    provider: str | None = None
    idempotency_key: str | None = None
    send_at: datetime | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Submitted:
    job_id: str
    created: bool  # False when an idempotency key matched an existing job


def _request_hash(fax: ValidFax) -> str:
    canonical = {
        "to": fax.to,
        "provider": fax.provider.value,
        "documents": [info.sha256 for _, _, info in fax.documents],
        "send_at": fax.send_at.isoformat() if fax.send_at else None,
        "metadata": dict(sorted(fax.metadata.items())),
        "options": dict(sorted(fax.options.items())),
    }
    return hashlib.sha256(json.dumps(canonical, sort_keys=True).encode()).hexdigest()


def _redelivery_guard(settings: Settings) -> timedelta:
    """How long a freshly published job waits before the tick publishes it again."""
    return timedelta(seconds=max(settings.scaled(60.0), settings.tick_interval))


def _new_job(fax: ValidFax, key: str | None, request_hash: str, settings: Settings) -> Job:
    now = utcnow()
    due = fax.send_at if fax.send_at and fax.send_at > now else None
    return Job(
        id=uuid.uuid4().hex,
        to_number=fax.to,
        provider=fax.provider.value,
        state=JobState.PENDING.value,
        version=1,
        idempotency_key=key,
        request_hash=request_hash,
        send_at=fax.send_at,
        next_attempt_at=due or now + _redelivery_guard(settings),
        pages=fax.pages,
        meta=dict(fax.metadata),
        options=dict(fax.options),
        created_at=now,
        updated_at=now,
        documents=[
            JobDocument(position=i, sha256=info.sha256, name=name[:255] or f"document-{i}")
            for i, (name, _, info) in enumerate(fax.documents)
        ],
    )


def _existing(session: Session, key: str, request_hash: str) -> Submitted:
    job = session.execute(select(Job.id, Job.request_hash).where(Job.idempotency_key == key)).one()
    if job.request_hash != request_hash:
        raise IdempotencyConflict(key, job.id)
    return Submitted(job.id, created=False)


def _store_documents(session: Session, faxes: Iterable[ValidFax], store: DocumentStore) -> None:
    """Write each distinct document once, on disk and as a row (concurrent producers race
    here harmlessly: the insert skips rows that already exist)."""
    infos = {info.sha256: (content, info) for fax in faxes for _, content, info in fax.documents}
    for content, _ in infos.values():
        store.put(content)
    rows = [
        {
            "sha256": sha,
            "mime_type": i.mime_type,
            "size": i.size,
            "page_count": i.page_count,
            "created_at": utcnow(),
        }
        for sha, (_, i) in infos.items()
    ]
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    session.execute(insert(Document).values(rows).on_conflict_do_nothing())


def validate(request: FaxRequest, settings: Settings) -> ValidFax:
    return validate_fax(
        request.to,
        request.documents,
        request.provider or settings.default_provider,
        request.send_at,
        request.metadata,
        request.options,
    )


def submit_many(
    requests: Sequence[FaxRequest],
    *,
    publish: bool = True,
    chunk_size: int = 1000,
) -> list[Submitted]:
    """Validate every request first (nothing is written if one is bad), then write them
    in chunked transactions and publish the new ids after each commit."""
    settings = get_settings()
    faxes = [validate(r, settings) for r in requests]
    store = DocumentStore(settings.documents_dir)
    results: list[Submitted] = []
    for start in range(0, len(faxes), chunk_size):
        chunk = list(
            zip(
                requests[start : start + chunk_size], faxes[start : start + chunk_size], strict=True
            )
        )
        results.extend(_write_chunk(chunk, store, settings, publish))
    return results


def _write_chunk(
    chunk: Sequence[tuple[FaxRequest, ValidFax]],
    store: DocumentStore,
    settings: Settings,
    publish: bool,
) -> list[Submitted]:
    engine = get_engine()
    hashes = [_request_hash(fax) for _, fax in chunk]
    keys = [r.idempotency_key for r, _ in chunk if r.idempotency_key]
    try:
        with session_scope(engine) as session:
            _store_documents(session, (fax for _, fax in chunk), store)
            taken = (
                dict(
                    session.execute(
                        select(Job.idempotency_key, Job.id).where(Job.idempotency_key.in_(keys))
                    ).tuples()
                )
                if keys
                else {}
            )
            results: list[Submitted] = []
            seen: dict[str, int] = {}
            for (request, fax), request_hash in zip(chunk, hashes, strict=True):
                key = request.idempotency_key
                if key and (key in taken or key in seen):
                    results.append(
                        _existing(session, key, request_hash)
                        if key in taken
                        else _same_batch(results[seen[key]], key, request_hash, hashes[seen[key]])
                    )
                    continue
                job = _new_job(fax, key, request_hash, settings)
                session.add(job)
                if key:
                    seen[key] = len(results)
                results.append(Submitted(job.id, created=True))
    except IntegrityError:
        # Another producer inserted one of these idempotency keys meanwhile.
        if len(chunk) > 1:
            return [r for item in chunk for r in _write_chunk([item], store, settings, publish)]
        key = chunk[0][0].idempotency_key
        if key is None:
            raise
        with session_scope(engine) as session:
            return [_existing(session, key, hashes[0])]
    if publish:
        now = utcnow()
        due = [
            (s.job_id, 1)
            for s, (_, fax) in zip(results, chunk, strict=True)
            if s.created and not (fax.send_at and fax.send_at > now)
        ]
        if due:
            publish_dispatch(due)
    return results


def _same_batch(first: Submitted, key: str, request_hash: str, first_hash: str) -> Submitted:
    if request_hash != first_hash:
        raise IdempotencyConflict(key, first.job_id)
    return Submitted(first.job_id, created=False)


def submit(request: FaxRequest) -> Submitted:
    """Accept one fax; returns its job id (the existing one for a repeated key)."""
    return submit_many([request], chunk_size=1)[0]
