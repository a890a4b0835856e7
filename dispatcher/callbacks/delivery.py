"""Delivering events at least once, from the database.

The tick claims due outbox rows (``claim_due``: their next try is pushed out by a lease,
so a claimed row is not handed out twice while it is being posted) and publishes their
ids on the ``callbacks`` queue. A worker hands them to this process's delivery pool and
returns at once, so a slow or dead receiver holds a delivery thread, never a task slot
that a fax needs. Each try is signed with the Standard Webhooks scheme (``webhook-id``
is the row's id, the same on every try, so a receiver can drop a repeat) and recorded in
``callback_attempts``. A 2xx delivers; anything else waits for the next step of
FAX_CALLBACKS__RETRY_SCHEDULE, and after the last the row is failed. An operator or the
tenant can redeliver any row.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from functools import cache
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy import select, true, update
from sqlalchemy.orm import Session
from standardwebhooks import Webhook

from config.settings import CallbackSettings, Settings, get_settings
from dispatcher.callbacks.targets import check_target
from dispatcher.clock import utcnow
from dispatcher.errors import NotFound, ValidationError
from dispatcher.store.db import session_scope
from dispatcher.store.models import CallbackAttempt, CallbackDelivery, CallbackEndpoint, Tenant
from dispatcher.tenants import Caller

__all__ = [
    "DELIVERED",
    "FAILED",
    "PENDING",
    "claim_due",
    "deliver",
    "deliver_soon",
    "delivery_view",
    "get_delivery",
    "list_deliveries",
    "redeliver",
]

log = logging.getLogger(__name__)

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"


def _lease(settings: Settings) -> timedelta:
    """How long a claimed row is left alone: longer than one try may take."""
    return timedelta(seconds=max(settings.callbacks.timeout + 5.0, 2 * settings.tick_interval))


def claim_due(now: datetime | None = None, limit: int | None = None) -> list[str]:
    """Due rows' ids, each claimed for one lease (the tick publishes them)."""
    settings = get_settings()
    now = now or utcnow()
    due = (CallbackDelivery.state == PENDING, CallbackDelivery.next_attempt_at <= now)
    with session_scope() as session:
        ids = list(
            session.scalars(
                select(CallbackDelivery.id)
                .where(*due)
                .order_by(CallbackDelivery.next_attempt_at)
                .limit(limit or settings.tick_batch_size)
            )
        )
        if not ids:
            return []
        return list(
            session.scalars(
                update(CallbackDelivery)
                .where(CallbackDelivery.id.in_(ids), *due)
                .values(next_attempt_at=now + _lease(settings))
                .returning(CallbackDelivery.id)
                .execution_options(synchronize_session=False)
            )
        )


@cache
def _pool(size: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(size, thread_name_prefix="callback")


@cache
def _client(timeout: float) -> httpx.Client:
    return httpx.Client(timeout=timeout, follow_redirects=False)


def deliver_soon(delivery_ids: Sequence[str]) -> None:
    """Post these rows on this process's delivery pool; returns at once. A row whose
    worker dies meanwhile is claimed again once its lease runs out."""
    pool = _pool(get_settings().callbacks.concurrency)
    for delivery_id in delivery_ids:
        pool.submit(_deliver_logged, delivery_id)


def _deliver_logged(delivery_id: str) -> None:
    try:
        deliver(delivery_id)
    except Exception:  # the row stays pending: its lease runs out and it is tried again
        log.exception("callback %s: delivery failed unexpectedly", delivery_id)


def _secret(row: CallbackDelivery, settings: CallbackSettings) -> str | None:
    """The endpoint's secret; for a job's own callback_url, its tenant's (operators':
    FAX_CALLBACKS__SECRET)."""
    with session_scope() as session:
        if row.endpoint_id is not None:
            endpoint = session.get(CallbackEndpoint, row.endpoint_id)
            return None if endpoint is None or endpoint.disabled_at else endpoint.secret
        if row.tenant_id is not None:
            return session.get_one(Tenant, row.tenant_id).callback_secret
    return settings.secret.get_secret_value() if settings.secret else None


def _post(
    row: CallbackDelivery, secret: str, settings: CallbackSettings
) -> tuple[int | None, str | None]:
    """One try: the receiver's status code, or why there is none."""
    try:
        check_target(row.url, settings)
    except ValidationError as exc:
        return None, exc.reason
    body = json.dumps(row.payload, separators=(",", ":"))
    now = utcnow()
    headers = {
        "content-type": "application/json",
        "webhook-id": row.id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(secret).sign(row.id, now, body),
    }
    try:
        response = _client(settings.timeout).post(row.url, content=body, headers=headers)
    except httpx.HTTPError as exc:
        return None, f"{type(exc).__name__}: {exc}"[:500]
    return response.status_code, None


def deliver(delivery_id: str) -> str:
    """Make one try at a pending row and record it; returns the row's state after it."""
    settings = get_settings()
    with session_scope() as session:
        row = session.get(CallbackDelivery, delivery_id)
        if row is None or row.state != PENDING:
            return row.state if row else "unknown"
        session.expunge(row)
    tries = row.attempts
    secret = _secret(row, settings.callbacks)
    started = time.monotonic()
    status: int | None = None
    error: str | None = "the endpoint was disabled, or no signing secret is configured"
    final = secret is None
    if secret is not None:
        status, error = _post(row, secret, settings.callbacks)
    seconds = time.monotonic() - started
    delivered = status is not None and 200 <= status < 300
    if not delivered and error is None:
        error = f"the receiver answered {status}"
    schedule = settings.callbacks.retry_schedule
    now = utcnow()
    if delivered:
        state, next_at = DELIVERED, None
    elif final or tries >= len(schedule):
        state, next_at = FAILED, None
    else:
        state, next_at = PENDING, now + timedelta(seconds=settings.scaled(schedule[tries]))
    with session_scope() as session:
        moved = (
            session.connection()
            .execute(
                update(CallbackDelivery)
                .where(
                    CallbackDelivery.id == delivery_id,
                    CallbackDelivery.state == PENDING,
                    CallbackDelivery.attempts == tries,
                )
                .values(
                    state=state,
                    attempts=tries + 1,
                    next_attempt_at=next_at,
                    last_status=status,
                    last_error=None if delivered else error,
                    delivered_at=now if delivered else None,
                )
            )
            .rowcount
        )
        if moved:  # else another worker's try of the same row was recorded first
            session.add(
                CallbackAttempt(
                    delivery_id=delivery_id,
                    attempted_at=now,
                    status_code=status,
                    error=None if delivered else error,
                    seconds=seconds,
                )
            )
    if state == FAILED:  # the URL's host only: its path or query may carry a token
        host = urlsplit(row.url).hostname
        log.warning("callback %s to %s failed for good: %s", delivery_id, host, error)
    return state


def delivery_view(
    row: CallbackDelivery, attempts: Sequence[CallbackAttempt] = ()
) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": row.id,
        "endpoint_id": row.endpoint_id,
        "job_id": row.job_id,
        "url": row.url,
        "event_type": row.event_type,
        "state": row.state,
        "attempts": row.attempts,
        "next_attempt_at": row.next_attempt_at.isoformat() if row.next_attempt_at else None,
        "last_status": row.last_status,
        "last_error": row.last_error,
        "created_at": row.created_at.isoformat(),
        "delivered_at": row.delivered_at.isoformat() if row.delivered_at else None,
    }
    if attempts:
        view["tries"] = [
            {
                "attempted_at": a.attempted_at.isoformat(),
                "status_code": a.status_code,
                "error": a.error,
                "seconds": a.seconds,
            }
            for a in attempts
        ]
    return view


def _owned(caller: Caller) -> Any:
    """Operators see every delivery; a tenant its own."""
    if caller.tenant_id is None:
        return true()
    return CallbackDelivery.tenant_id == caller.tenant_id


def list_deliveries(
    caller: Caller,
    *,
    endpoint_id: str | None = None,
    job_id: str | None = None,
    state: str | None = None,
    limit: int = 50,
    before: str | None = None,
) -> list[dict[str, Any]]:
    """The caller's deliveries, newest first; ``before`` is the previous page's last id."""
    query = (
        select(CallbackDelivery)
        .where(_owned(caller))
        .order_by(CallbackDelivery.created_at.desc(), CallbackDelivery.id.desc())
        .limit(limit)
    )
    if endpoint_id:
        query = query.where(CallbackDelivery.endpoint_id == endpoint_id)
    if job_id:
        query = query.where(CallbackDelivery.job_id == job_id)
    if state:
        query = query.where(CallbackDelivery.state == state)
    with session_scope() as session:
        if before:
            anchor = session.get(CallbackDelivery, before)
            if anchor is None:
                raise ValidationError("before", "not a cursor from a previous page")
            query = query.where(
                (CallbackDelivery.created_at < anchor.created_at)
                | (
                    (CallbackDelivery.created_at == anchor.created_at)
                    & (CallbackDelivery.id < anchor.id)
                )
            )
        return [delivery_view(row) for row in session.scalars(query)]


def _load(session: Session, caller: Caller, delivery_id: str) -> CallbackDelivery:
    row = session.scalars(
        select(CallbackDelivery).where(CallbackDelivery.id == delivery_id, _owned(caller))
    ).first()
    if row is None:
        raise NotFound("delivery", delivery_id)
    return row


def get_delivery(caller: Caller, delivery_id: str) -> dict[str, Any]:
    """One delivery with every try of it."""
    with session_scope() as session:
        row = _load(session, caller, delivery_id)
        tries = session.scalars(
            select(CallbackAttempt)
            .where(CallbackAttempt.delivery_id == delivery_id)
            .order_by(CallbackAttempt.id)
        ).all()
        return delivery_view(row, tries)


def redeliver(caller: Caller, delivery_id: str) -> dict[str, Any]:
    """Try a delivery again now, with a fresh retry schedule (delivered or failed too)."""
    with session_scope() as session:
        row = _load(session, caller, delivery_id)
        row.state, row.attempts, row.next_attempt_at = PENDING, 0, utcnow()
        row.delivered_at = None
    return get_delivery(caller, delivery_id)
