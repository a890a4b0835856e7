"""Batches: a bulk submission followed as a whole, from intake to the last fax's end.

A batch is made by the first upload of a file (``POST /v1/batches``, or ``faxctl bulk``),
and later uploads of the same file's parts join it. Its counts of rows, accepted,
duplicates and rejected rows add up across the parts; its jobs' states are read live.
"""

from __future__ import annotations

import uuid
from typing import Any, BinaryIO

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from dispatcher.bulk import RowError, UploadedDocuments, check_stream, submit_plan
from dispatcher.errors import BatchNotFound
from dispatcher.lanes import Priority
from dispatcher.lifecycle import FINAL_STATES
from dispatcher.store.db import session_scope
from dispatcher.store.models import Batch, Job
from dispatcher.tenants import OPERATOR, Caller, admit

__all__ = ["MAX_REJECTED", "open_batch", "record", "submit_upload", "view"]

#: Rejected rows kept with a batch; the counts go on past it.
MAX_REJECTED = 1000


def _load(session: Session, batch_id: str, caller: Caller) -> Batch:
    batch = session.get(Batch, batch_id)
    if batch is None or not (caller.is_operator or batch.tenant_id == caller.tenant_id):
        raise BatchNotFound(batch_id)
    return batch


def open_batch(name: str, batch_id: str | None = None, caller: Caller = OPERATOR) -> str:
    """A new batch named ``name``, or ``batch_id`` when it exists (a later part of a file)."""
    with session_scope() as session:
        if batch_id is not None:
            return _load(session, batch_id, caller).id
        batch = Batch(id=uuid.uuid4().hex, name=name[:255], tenant_id=caller.tenant_id, rejected=[])
        session.add(batch)
        return batch.id


def record(
    batch_id: str, rows: int, accepted: int, duplicates: int, rejected: list[RowError]
) -> None:
    """Add one part's counts to the batch."""
    with session_scope() as session:
        batch = session.get_one(Batch, batch_id, with_for_update=True)
        kept = [*batch.rejected, *({"row": r.row, "error": r.error} for r in rejected)]
        session.execute(
            update(Batch)
            .where(Batch.id == batch_id)
            .values(
                rows=Batch.rows + rows,
                accepted=Batch.accepted + accepted,
                duplicates=Batch.duplicates + duplicates,
                rejected=kept[:MAX_REJECTED],
            )
        )


def submit_upload(
    rows: BinaryIO,
    name: str,
    documents: dict[str, bytes],
    *,
    provider: str | None = None,
    default_document: str | None = None,
    batch_id: str | None = None,
    first_row: int = 1,
    caller: Caller = OPERATOR,
    priority: Priority = Priority.BULK,
) -> dict[str, Any]:
    """Check every row of an uploaded CSV, submit the good ones as the caller's jobs of
    the batch (a new one, or ``batch_id``), and return the batch as it now stands. A file
    that cannot be used as a whole raises ``ValidationError`` and changes nothing."""
    uploads = UploadedDocuments(documents, default_document)
    with check_stream(rows, name, uploads, provider, first_row=first_row) as plan:
        admit(caller, plan.valid)
        batch_id = open_batch(name, batch_id, caller)
        accepted = duplicates = 0
        rejected = list(plan.rejected)
        chunks = submit_plan(plan, batch_id, tenant_id=caller.tenant_id, priority=priority)
        for chunk in chunks:
            accepted += chunk.accepted
            duplicates += chunk.duplicates
            rejected.extend(chunk.rejected)
        record(batch_id, plan.rows, accepted, duplicates, sorted(rejected, key=lambda r: r.row))
    return view(batch_id, caller)


def view(batch_id: str, caller: Caller = OPERATOR) -> dict[str, Any]:
    """The batch, with its jobs counted by state."""
    with session_scope() as session:
        batch = _load(session, batch_id, caller)
        states = dict(
            session.execute(
                select(Job.state, func.count()).where(Job.batch_id == batch_id).group_by(Job.state)
            ).all()
        )
    return {
        "id": batch.id,
        "name": batch.name,
        "created_at": batch.created_at.isoformat(),
        "rows": batch.rows,
        "accepted": batch.accepted,
        "duplicates": batch.duplicates,
        "rejected": batch.rejected,
        "states": states,
        "final": sum(n for state, n in states.items() if state in FINAL_STATES),
    }
