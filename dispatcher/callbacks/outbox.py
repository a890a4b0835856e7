"""The outbox: an event's rows are written in the transaction that moves its job.

So an event is never lost (the state change and the rows commit together) and never
made up (a rolled-back change writes none). Each row is one event for one target, with
its payload frozen at the moment of the change.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import bindparam, insert, select
from sqlalchemy.orm import Session

from dispatcher.clock import utcnow
from dispatcher.store.models import CallbackDelivery, CallbackEndpoint, Job

__all__ = ["EVENT_TYPES", "enqueue", "payload"]

#: Every event type a target may ask for.
EVENT_TYPES = ("fax.succeeded", "fax.failed", "fax.cancelled", "fax.held", "fax.attempt_failed")

_INSERT = insert(CallbackDelivery)


def payload(job: Job, event_type: str) -> dict[str, Any]:
    """The Standard Webhooks body: ``type``, ``timestamp`` and the job as ``data``. No
    destination number and no document: what the producer gave as metadata, and the
    outcome."""
    now = utcnow()
    return {
        "type": event_type,
        "timestamp": now.isoformat(),
        "data": {
            "id": job.id,
            "state": job.state,
            "provider": job.provider,
            "code": job.last_code,
            "outcome": job.last_outcome,
            "reason": job.reason,
            "attempts": job.attempt_count,
            "pages": job.pages,
            "pages_sent": job.pages_sent,
            "metadata": job.meta or {},
            "batch_id": job.batch_id,
            "finished_at": job.finished_at.isoformat() if job.finished_at else None,
        },
    }


#: Built once (building a statement costs more than running it), one per kind of owner.
_ENDPOINT_COLUMNS = (CallbackEndpoint.id, CallbackEndpoint.url, CallbackEndpoint.event_types)
_LIVE = CallbackEndpoint.disabled_at.is_(None)
_ENDPOINTS_OF_TENANT = select(*_ENDPOINT_COLUMNS).where(
    _LIVE, CallbackEndpoint.tenant_id == bindparam("tenant")
)
_ENDPOINTS_OF_OPERATOR = select(*_ENDPOINT_COLUMNS).where(
    _LIVE, CallbackEndpoint.tenant_id.is_(None)
)

_MEMO = "callback_endpoints"

#: id, url, the event types it asked for.
_Endpoint = tuple[str, str, list[str]]


def _endpoints(session: Session, tenant_id: str | None) -> list[_Endpoint]:
    """The live endpoints of an owner, read once per transaction: a poll that ends fifty
    jobs of one tenant reads them once, not fifty times."""
    transaction = session.get_transaction()
    memo = session.info.get(_MEMO)
    if memo is None or memo[0] is not transaction:
        memo = session.info[_MEMO] = (transaction, {})
    found: dict[str | None, list[_Endpoint]] = memo[1]
    if tenant_id not in found:
        statement = _ENDPOINTS_OF_OPERATOR if tenant_id is None else _ENDPOINTS_OF_TENANT
        rows = session.connection().execute(statement, {"tenant": tenant_id})
        found[tenant_id] = [(row.id, row.url, row.event_types) for row in rows]
    return found[tenant_id]


def enqueue(session: Session, job: Job, event_type: str) -> int:
    """Write the rows of ``event_type`` for ``job``: one for its ``callback_url``, one per
    live endpoint of its owner that asked for the type. Returns how many."""
    endpoints = _endpoints(session, job.tenant_id)
    targets: list[tuple[str | None, str]] = [
        (endpoint_id, url) for endpoint_id, url, types in endpoints if event_type in types
    ]
    if job.callback_url:
        targets.append((None, job.callback_url))
    if not targets:
        return 0
    body = payload(job, event_type)
    now = utcnow()
    session.connection().execute(
        _INSERT,
        [
            {
                "id": f"msg_{uuid.uuid4().hex}",
                "endpoint_id": endpoint_id,
                "tenant_id": job.tenant_id,
                "job_id": job.id,
                "url": url,
                "event_type": event_type,
                "payload": body,
                "state": "pending",
                "attempts": 0,
                "next_attempt_at": now,
                "created_at": now,
            }
            for endpoint_id, url in targets
        ],
    )
    return len(targets)
