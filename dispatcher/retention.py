"""Retention: a job's protected data is kept only as long as it is needed.

Once a job has ended, three kinds of data expire, each after its own period
(``FAX_RETENTION__*``): its documents (bytes and names), its recipient (the number,
masked to ``+1202555****`` in the job, its attempts' errors and its events, and the
metadata with its search tags and callback payloads) and the providers' raw status
payloads. Beat purges what has expired in transactions of ``batch_size`` jobs, for at
most ``run_seconds`` a run, so a backlog of a million never makes a long transaction or
a slow tick. The job's record stays: state, attempts, codes and times.

A document's bytes are shared by every job that sends the same content: they go when
the last job that refers to them lets go. Submission and the purge both lock a
document's row (in sha order) before they touch its bytes, so a job submitted with the
same content either commits first (the purge then sees it and keeps the bytes) or waits
and writes the row and the bytes again after the purge.

Each purge claims its jobs with one ``UPDATE ... RETURNING`` that re-checks they have
ended and bumps their version: an operator's retry racing it is refused, never left
with a job whose documents are gone.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    String,
    bindparam,
    delete,
    exists,
    func,
    null,
    select,
    update,
)
from sqlalchemy.orm import InstrumentedAttribute

from config.settings import Settings, get_settings
from dispatcher.clock import utcnow
from dispatcher.errors import IllegalTransition, JobNotFound
from dispatcher.lifecycle import FINAL_STATES, JobState
from dispatcher.privacy import mask_number
from dispatcher.runtime import document_store
from dispatcher.store.db import get_engine
from dispatcher.store.documents import DocumentStore
from dispatcher.store.models import (
    Attempt,
    CallbackDelivery,
    Document,
    Job,
    JobDocument,
    JobTag,
    StatusEvent,
)
from dispatcher.tenants import OPERATOR, Caller

__all__ = ["Kind", "Purged", "expired_counts", "purge_expired", "purge_job"]

_FINAL = [state.value for state in FINAL_STATES]


class Kind(StrEnum):
    """What expires, in the order it is purged."""

    DOCUMENTS = "documents"
    RECIPIENT = "recipient"
    PAYLOADS = "payloads"


_PURGED_AT: dict[Kind, InstrumentedAttribute[datetime | None]] = {
    Kind.DOCUMENTS: Job.documents_purged_at,
    Kind.RECIPIENT: Job.recipient_purged_at,
    Kind.PAYLOADS: Job.payloads_purged_at,
}


def _expired(kind: Kind, cutoff: datetime) -> ColumnElement[bool]:
    """Ended before ``cutoff``, not purged yet: the partial index ``ix_jobs_<kind>_unpurged``."""
    return _PURGED_AT[kind].is_(None) & (Job.finished_at < cutoff) & Job.state.in_(_FINAL)


def _cutoffs(settings: Settings, now: datetime) -> dict[Kind, datetime]:
    periods = settings.retention
    return {
        Kind.DOCUMENTS: now - timedelta(seconds=periods.documents),
        Kind.RECIPIENT: now - timedelta(seconds=periods.recipient),
        Kind.PAYLOADS: now - timedelta(seconds=periods.payloads),
    }


def expired_counts(now: datetime | None = None) -> dict[Kind, int]:
    """How many ended jobs have each kind of data past its retention (``--dry-run``)."""
    now = now or utcnow()
    with get_engine().connect() as connection:
        return {
            kind: connection.scalar(
                select(func.count()).select_from(Job).where(_expired(kind, cutoff))
            )
            or 0
            for kind, cutoff in _cutoffs(get_settings(), now).items()
        }


@dataclass
class Purged:
    """Jobs purged per kind by one run, and whether expired data was left for the next."""

    jobs: dict[Kind, int]
    more: bool


def purge_expired(
    now: datetime | None = None, progress: Callable[[Kind, int], None] | None = None
) -> Purged:
    """Purge what has expired, a transaction of ``batch_size`` jobs at a time, until
    nothing is left or ``run_seconds`` have passed (beat's ``fax.purge``)."""
    settings = get_settings()
    now = now or utcnow()
    store = document_store()
    stop_at = time.monotonic() + settings.retention.run_seconds
    jobs = dict.fromkeys(Kind, 0)
    for kind, cutoff in _cutoffs(settings, now).items():
        while True:
            with get_engine().begin() as connection:
                ids = _claim(
                    connection, kind, _expired(kind, cutoff), now, settings.retention.batch_size
                )
                if ids:
                    _PURGE[kind](connection, store, ids, now)
            jobs[kind] += len(ids)
            if progress is not None and ids:
                progress(kind, len(ids))
            if len(ids) < settings.retention.batch_size:
                break
            if time.monotonic() > stop_at:
                return Purged(jobs, more=True)
    return Purged(jobs, more=False)


def purge_job(job_id: str, caller: Caller = OPERATOR) -> None:
    """Purge every kind of one ended job's data at once (``DELETE /v1/faxes/{id}/data``)."""
    store = document_store()
    now = utcnow()
    with get_engine().begin() as connection:
        row = connection.execute(select(Job.state, Job.tenant_id).where(Job.id == job_id)).first()
        if row is None or not (caller.is_operator or row.tenant_id == caller.tenant_id):
            raise JobNotFound(job_id)
        if JobState(row.state) not in FINAL_STATES:
            raise IllegalTransition(
                job_id, f"{row.state} (a job's data is purged once it has ended)", "purged"
            )
        for kind, purge in _PURGE.items():
            condition = (Job.id == job_id) & _PURGED_AT[kind].is_(None) & Job.state.in_(_FINAL)
            if _claim(connection, kind, condition, now, 1):
                purge(connection, store, [job_id], now)


def _claim(
    connection: Connection, kind: Kind, condition: ColumnElement[bool], now: datetime, limit: int
) -> list[str]:
    """Mark up to ``limit`` jobs meeting ``condition`` as purged of ``kind``, and bump
    their version, in one statement that re-checks the condition as it writes: an
    operator's retry racing the purge either lands first (the job is no longer final and
    is left alone) or finds the version moved and is refused."""
    chosen = select(Job.id).where(condition).order_by(Job.finished_at).limit(limit)
    if connection.dialect.name == "postgresql":
        chosen = chosen.with_for_update(skip_locked=True)
    column = _PURGED_AT[kind]
    claim = (
        update(Job)
        .where(Job.id.in_(chosen.scalar_subquery()), condition)
        .values({column: now, Job.version: Job.version + 1})
        .returning(Job.id)
    )
    return list(connection.scalars(claim))


def _purge_documents(
    connection: Connection, store: DocumentStore, ids: Sequence[str], now: datetime
) -> None:
    shas = sorted(
        set(connection.scalars(select(JobDocument.sha256).where(JobDocument.job_id.in_(ids))))
    )
    if shas and connection.dialect.name == "postgresql":
        # Lock the documents' rows first, in sha order as submission does: a submission or
        # another purge of the same content goes before or after this one, never between.
        connection.execute(
            select(Document.sha256)
            .where(Document.sha256.in_(shas))
            .order_by(Document.sha256)
            .with_for_update()
        )
    connection.execute(delete(JobDocument).where(JobDocument.job_id.in_(ids)))
    _forget_unused(connection, store, shas)


def _forget_unused(connection: Connection, store: DocumentStore, shas: Collection[str]) -> None:
    """Delete the documents among ``shas`` that no job refers to any more (their rows are
    locked): the row, then the bytes."""
    if not shas:
        return
    unused = (
        delete(Document)
        .where(
            Document.sha256.in_(sorted(shas)),
            ~exists().where(JobDocument.sha256 == Document.sha256),
        )
        .returning(Document.sha256)
    )
    gone = list(connection.scalars(unused))
    if gone:
        store.delete(connection, gone)


def _purge_recipient(
    connection: Connection, store: DocumentStore, ids: Sequence[str], now: datetime
) -> None:
    """Mask the number wherever the job's rows hold it, drop its metadata; the raw
    payloads hold the number too, so they go with it. One statement per table for the
    whole batch (an ``executemany``): a batch costs a few round trips, not a few per job."""
    numbers = connection.execute(select(Job.id, Job.to_number).where(Job.id.in_(ids))).all()
    params = [
        {
            "b_id": job_id,
            "b_number": number,
            "b_masked": masked,
            "b_bare": number.lstrip("+"),
            "b_bare_masked": masked.lstrip("+"),
        }
        for job_id, number in numbers
        if (masked := mask_number(number)) != number  # not masked already
    ]
    if params:
        connection.execute(
            update(Job)
            .where(Job.id == bindparam("b_id"))
            .values(to_number=bindparam("b_masked"), meta={}, reason=_masked(Job.reason)),
            params,
        )
        for model, column in ((Attempt, Attempt.error), (StatusEvent, StatusEvent.detail)):
            connection.execute(
                update(model)
                .where(model.job_id == bindparam("b_id"), column.contains(bindparam("b_bare")))
                .values({column: _masked(column)}),
                params,
            )
    connection.execute(delete(JobTag).where(JobTag.job_id.in_(ids)))
    deliveries = connection.execute(
        select(CallbackDelivery.id, CallbackDelivery.payload).where(
            CallbackDelivery.job_id.in_(ids)
        )
    ).all()
    emptied = [
        {"b_id": delivery_id, "b_payload": {**payload, "metadata": {}}}
        for delivery_id, payload in deliveries
        if payload.get("metadata")
    ]
    if emptied:
        connection.execute(
            update(CallbackDelivery)
            .where(CallbackDelivery.id == bindparam("b_id"))
            .values(payload=bindparam("b_payload", type_=CallbackDelivery.payload.type)),
            emptied,
        )
    _purge_payloads(connection, store, ids, now)
    _mark(connection, Kind.PAYLOADS, ids, now)


def _masked(column: Any) -> Any:
    """``column`` with the batch row's number masked, written with or without its ``+``."""
    whole = func.replace(column, bindparam("b_number"), bindparam("b_masked", type_=String()))
    return func.replace(whole, bindparam("b_bare"), bindparam("b_bare_masked", type_=String()))


def _purge_payloads(
    connection: Connection, store: DocumentStore, ids: Sequence[str], now: datetime
) -> None:
    connection.execute(
        update(StatusEvent).where(StatusEvent.job_id.in_(ids)).values(payload=null())
    )


def _mark(connection: Connection, kind: Kind, ids: Sequence[str], now: datetime) -> None:
    column = _PURGED_AT[kind]
    connection.execute(update(Job).where(Job.id.in_(ids), column.is_(None)).values({column: now}))


_PURGE: dict[Kind, Callable[[Connection, DocumentStore, Sequence[str], datetime], None]] = {
    Kind.DOCUMENTS: _purge_documents,
    Kind.RECIPIENT: _purge_recipient,
    Kind.PAYLOADS: _purge_payloads,
}
