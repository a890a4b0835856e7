"""The endpoints a tenant (or the operators) registered to receive its jobs' events."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select

from config.settings import get_settings
from dispatcher.callbacks.outbox import EVENT_TYPES
from dispatcher.callbacks.targets import check_target
from dispatcher.clock import utcnow
from dispatcher.errors import NotFound, ValidationError
from dispatcher.store.db import session_scope
from dispatcher.store.models import CallbackEndpoint
from dispatcher.tenants import Caller, new_webhook_secret

__all__ = ["disable", "endpoint_view", "list_endpoints", "register"]


def endpoint_view(endpoint: CallbackEndpoint) -> dict[str, Any]:
    return {
        "id": endpoint.id,
        "url": endpoint.url,
        "event_types": list(endpoint.event_types),
        "created_at": endpoint.created_at.isoformat(),
        "disabled_at": endpoint.disabled_at.isoformat() if endpoint.disabled_at else None,
    }


def register(caller: Caller, url: str, event_types: Sequence[str]) -> dict[str, Any]:
    """A new endpoint for the caller's jobs' events of ``event_types``; the answer holds
    its signing secret, shown this once."""
    wanted = list(dict.fromkeys(event_types))
    unknown = [t for t in wanted if t not in EVENT_TYPES]
    if not wanted or unknown:
        raise ValidationError("event_types", f"choose from {', '.join(EVENT_TYPES)}")
    url = check_target(url, get_settings().callbacks, "url")
    endpoint = CallbackEndpoint(
        id=uuid.uuid4().hex,
        tenant_id=caller.tenant_id,
        url=url,
        secret=new_webhook_secret(),
        event_types=wanted,
        created_at=utcnow(),
    )
    with session_scope() as session:
        session.add(endpoint)
        return {**endpoint_view(endpoint), "secret": endpoint.secret}


def _owned(caller: Caller) -> Any:
    if caller.tenant_id is None:
        return CallbackEndpoint.tenant_id.is_(None)
    return CallbackEndpoint.tenant_id == caller.tenant_id


def list_endpoints(caller: Caller) -> list[dict[str, Any]]:
    query = select(CallbackEndpoint).where(_owned(caller)).order_by(CallbackEndpoint.created_at)
    with session_scope() as session:
        return [endpoint_view(e) for e in session.scalars(query)]


def disable(caller: Caller, endpoint_id: str) -> dict[str, Any]:
    """No new events go to the endpoint; its pending deliveries end as failed."""
    with session_scope() as session:
        endpoint = session.scalars(
            select(CallbackEndpoint).where(CallbackEndpoint.id == endpoint_id, _owned(caller))
        ).first()
        if endpoint is None:
            raise NotFound("endpoint", endpoint_id)
        endpoint.disabled_at = endpoint.disabled_at or utcnow()
        return endpoint_view(endpoint)
