"""Accepting faxes: validate, write the job rows, and only after commit publish ids.

An idempotency key makes a submission safe to repeat: the same key and content return
the existing job, the same key with other content is an ``IdempotencyConflict``. Keys are
per tenant: a tenant's key is stored as ``<tenant id>:<key>``, so two tenants never
collide and a conflict tells nothing about another tenant's keys.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from typing import Any, cast

from sqlalchemy import Executable, Table, bindparam, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from config.settings import get_settings
from dispatcher.clock import utcnow
from dispatcher.documents import DocumentInfo
from dispatcher.errors import IdempotencyConflict, ValidationError
from dispatcher.lanes import Priority
from dispatcher.lifecycle import JobState
from dispatcher.messaging import publish_dispatch, redelivery_guard
from dispatcher.runtime import document_store
from dispatcher.store.db import get_engine, session_scope, upsert
from dispatcher.store.models import Document, Job, JobDocument, JobTag
from dispatcher.validation import ValidFax, validate_fax

__all__ = ["FaxRequest", "Submitted", "submit", "submit_many", "submit_valid", "validate"]

log = logging.getLogger(__name__)


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
    deadline: datetime | None = None
    priority: str | None = None
    callback_url: str | None = None


@dataclass(frozen=True, slots=True)
class Submitted:
    job_id: str
    created: bool  # False when an idempotency key matched an existing job
    #: the job row written, for a new job (what the intake answers with)
    row: Mapping[str, Any] | None = None


def _request_hash(fax: ValidFax) -> str:
    canonical = {
        "to": fax.to,
        "provider": fax.provider,
        "documents": [info.sha256 for _, _, info in fax.documents],
        "send_at": fax.send_at.isoformat() if fax.send_at else None,
        "deadline": fax.deadline.isoformat() if fax.deadline else None,
        "metadata": dict(sorted(fax.metadata.items())),
        "options": dict(sorted(fax.options.items())),
        "priority": fax.priority.value,
        "callback_url": fax.callback_url,
    }
    return hashlib.sha256(json.dumps(canonical, sort_keys=True).encode()).hexdigest()


def _job_rows(
    fax: ValidFax,
    key: str | None,
    request_hash: str,
    now: datetime,
    first_try: datetime,
    batch_id: str | None,
    tenant_id: str | None,
) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    """The job row (by attribute name), its document rows and its metadata's tag rows:
    one executemany per chunk is many times faster than an ORM object per job."""
    job_id = uuid.uuid4().hex
    job = {
        "id": job_id,
        "to_number": fax.to,
        "provider": fax.provider,
        "route": list(fax.route),
        "state": JobState.PENDING.value,
        "version": 1,
        "idempotency_key": _scoped(tenant_id, key),
        "request_hash": request_hash,
        "send_at": fax.send_at,
        "deadline": fax.deadline,
        "next_attempt_at": fax.send_at if fax.send_at and fax.send_at > now else first_try,
        "pages": fax.pages,
        "meta": dict(fax.metadata),
        "options": dict(fax.options),
        "batch_id": batch_id,
        "tenant_id": tenant_id,
        "priority": fax.priority.value,
        "callback_url": fax.callback_url,
        "created_at": now,
        "updated_at": now,
        "state_changed_at": now,
    }
    documents = [
        {
            "job_id": job_id,
            "position": i,
            "sha256": info.sha256,
            "name": name[:255] or f"document-{i}",
        }
        for i, (name, _, info) in enumerate(fax.documents)
    ]
    tags = [{"job_id": job_id, "key": k, "value": v} for k, v in fax.metadata.items()]
    return job, documents, tags


def _scoped(tenant_id: str | None, key: str | None) -> str | None:
    """The stored form of a tenant's idempotency key (operators' keys are stored as given)."""
    return f"{tenant_id}:{key}" if key is not None and tenant_id is not None else key


def _existing(key: str, job_id: str, stored_hash: str, request_hash: str) -> Submitted:
    """The job a repeated key names, if the repeat asks for the same fax."""
    if stored_hash != request_hash:
        raise IdempotencyConflict(key, job_id)
    return Submitted(job_id, created=False)


#: Built once (building a statement costs more than running it for one fax).
_TAKEN = select(Job.idempotency_key, Job.id, Job.request_hash).where(
    Job.idempotency_key.in_(bindparam("keys", expanding=True))
)


def _taken(session: Session, keys: list[str], tenant_id: str | None) -> dict[str, tuple[str, str]]:
    """Jobs of this tenant that already hold these keys: key -> (job id, request hash),
    in one query."""
    stored = {_scoped(tenant_id, key): key for key in keys}
    rows = session.connection().execute(_TAKEN, {"keys": list(stored)})
    return {stored[key]: (job_id, hashed) for key, job_id, hashed in rows}


_INSERT_JOB = insert(cast(Table, Job.__table__))
_INSERT_DOCUMENT = insert(cast(Table, JobDocument.__table__))
_INSERT_TAG = insert(cast(Table, JobTag.__table__))
#: Job attributes whose column has another name (``meta`` is ``metadata``).
_COLUMN_OF = {
    prop.key: prop.columns[0].name
    for prop in Job.__mapper__.column_attrs
    if prop.key != prop.columns[0].name
}


def _by_column(row: Mapping[str, Any]) -> dict[str, Any]:
    return {_COLUMN_OF.get(key, key): value for key, value in row.items()}


@cache
def _document_upsert(dialect: str) -> Executable:
    """Built once per dialect and run with the rows as parameters, so it is compiled once
    (a statement with the rows in its VALUES is compiled anew for every submit)."""
    statement = upsert(dialect, Document)
    return statement.on_conflict_do_update(
        index_elements=[Document.sha256], set_={"size": statement.excluded.size}
    )


def _store_documents(session: Session, faxes: Iterable[ValidFax]) -> None:
    """Write each distinct document once, its row and its bytes to the document store,
    in the jobs' transaction. The row is written first and locked (a no-op update when it
    exists), in sha order: a purge of the same content waits for this transaction, so it
    never takes away bytes a job being submitted needs (``dispatcher.retention``)."""
    infos = {info.sha256: (content, info) for fax in faxes for _, content, info in fax.documents}
    rows = [
        {
            "sha256": sha,
            "mime_type": i.mime_type,
            "size": i.size,
            "page_count": i.page_count,
            "created_at": utcnow(),
        }
        for sha, (_, i) in sorted(infos.items())
    ]
    connection = session.connection()  # Core, not the ORM's bulk path: one row, often
    connection.execute(_document_upsert(connection.dialect.name), rows)
    document_store().save(connection, {sha: c for sha, (c, _) in infos.items()})


def validate(
    request: FaxRequest, inspections: MutableMapping[bytes, DocumentInfo] | None = None
) -> ValidFax:
    return validate_fax(
        request.to,
        request.documents,
        request.provider,
        request.send_at,
        request.metadata,
        request.options,
        deadline=request.deadline,
        priority=request.priority,
        callback_url=request.callback_url,
        inspections=inspections,
    )


def submit_many(
    requests: Sequence[FaxRequest],
    *,
    publish: bool = True,
    chunk_size: int = 1000,
    tenant_id: str | None = None,
) -> list[Submitted]:
    """Validate every request first (nothing is written if one is bad), then write them
    in chunked transactions and publish the new ids after each commit."""
    inspections: dict[bytes, DocumentInfo] = {}
    items = [(r.idempotency_key, validate(r, inspections)) for r in requests]
    results: list[Submitted] = []
    for start in range(0, len(items), chunk_size):
        chunk = items[start : start + chunk_size]
        results.extend(submit_valid(chunk, publish=publish, tenant_id=tenant_id))
    return results


def submit_valid(
    items: Sequence[tuple[str | None, ValidFax]],
    *,
    publish: bool = True,
    batch_id: str | None = None,
    tenant_id: str | None = None,
) -> list[Submitted]:
    """Write already validated faxes of one owner (a tenant, or None for the operators),
    each with an optional idempotency key, in one transaction; then publish the new ids.

    With ``publish=False`` nothing goes to the broker: the new jobs are due at once and the
    beat tick dispatches them in batches. That suits a bulk load (a message per job costs
    about a millisecond), and loses nothing: the rows are committed before anything else.
    """
    engine = get_engine()
    _check_signable(items, tenant_id)
    hashes = [_request_hash(fax) for _, fax in items]
    keys = [key for key, _ in items if key]
    now = utcnow()
    first_try = now + redelivery_guard() if publish else now
    try:
        with session_scope(engine) as session:
            _store_documents(session, (fax for _, fax in items))
            taken = _taken(session, keys, tenant_id) if keys else {}
            results: list[Submitted] = []
            jobs: list[dict[str, Any]] = []
            documents: list[dict[str, Any]] = []
            tags: list[dict[str, Any]] = []
            seen: dict[str, int] = {}
            for (key, fax), request_hash in zip(items, hashes, strict=True):
                if key and key in taken:
                    job_id, stored_hash = taken[key]
                    results.append(_existing(key, job_id, stored_hash, request_hash))
                elif key and key in seen:
                    first = seen[key]
                    results.append(
                        _existing(key, results[first].job_id, hashes[first], request_hash)
                    )
                else:
                    job, job_documents, job_tags = _job_rows(
                        fax, key, request_hash, now, first_try, batch_id, tenant_id
                    )
                    jobs.append(job)
                    documents.extend(job_documents)
                    tags.extend(job_tags)
                    if key:
                        seen[key] = len(results)
                    results.append(Submitted(job["id"], created=True, row=job))
            if jobs:
                # Core inserts (by column name): the ORM's bulk path costs more than the
                # statement itself for one job.
                connection = session.connection()
                connection.execute(_INSERT_JOB, [_by_column(job) for job in jobs])
                connection.execute(_INSERT_DOCUMENT, documents)
                if tags:
                    connection.execute(_INSERT_TAG, tags)
    except IntegrityError:
        # Another producer inserted one of these idempotency keys meanwhile.
        if len(items) > 1:
            return [
                r
                for item in items
                for r in submit_valid(
                    [item], publish=publish, batch_id=batch_id, tenant_id=tenant_id
                )
            ]
        key = items[0][0]
        if key is None:
            raise
        with session_scope(engine) as session:
            row = session.execute(
                select(Job.id, Job.request_hash).where(
                    Job.idempotency_key == _scoped(tenant_id, key)
                )
            ).one()
        return [_existing(key, row.id, row.request_hash, hashes[0])]
    if publish:
        due: dict[Priority, list[tuple[str, int]]] = defaultdict(list)
        for s, (_, fax) in zip(results, items, strict=True):
            if s.created and not (fax.send_at and fax.send_at > now):
                due[fax.priority].append((s.job_id, 1))
        for lane, attempts in due.items():
            _publish_committed(attempts, lane)
    return results


def _check_signable(items: Sequence[tuple[str | None, ValidFax]], tenant_id: str | None) -> None:
    """An operator's job may name a callback_url only when its events can be signed."""
    wants_callback = any(fax.callback_url for _, fax in items)
    if wants_callback and tenant_id is None and get_settings().callbacks.secret is None:
        raise ValidationError(
            "callback_url", "FAX_CALLBACKS__SECRET is not set: its events could not be signed"
        )


def _publish_committed(due: list[tuple[str, int]], lane: Priority) -> None:
    """Publish committed jobs. They are accepted whatever happens here: a broker that
    fails now leaves them to the tick, due once their redelivery guard passes. Failing
    the request instead would make a client without an idempotency key send again."""
    try:
        publish_dispatch(due, priority=lane)
    except Exception as exc:
        log.warning(
            "%d accepted jobs not published (%s); the tick will publish them", len(due), exc
        )


def submit(request: FaxRequest, tenant_id: str | None = None) -> Submitted:
    """Accept one fax; returns its job id (the existing one for a repeated key)."""
    return submit_many([request], chunk_size=1, tenant_id=tenant_id)[0]
