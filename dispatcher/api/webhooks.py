"""``POST /v1/webhooks/{provider}``: status callbacks from the providers, taken as hints.

Each callback is verified as well as its provider allows: Optum signs its body
(HMAC-SHA256, checked by the adapter), but its signature covers no timestamp, so an
event id seen before, or an event older than FAX_WEBHOOK_MAX_AGE, is refused as a
replay; FAX.PLUS and InterFAX do not sign, so their callback URL carries a shared secret
(``?secret=`` or the ``X-Fax-Webhook-Secret`` header).

Even then a callback only says which faxes to look at: their statuses are read from the
provider, by a poll, before anything changes (``dispatcher.tracking.poll_now``). A forged,
replayed, repeated or late callback can therefore make nothing happen that the provider
does not confirm, and the order in which callbacks arrive does not matter.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, Path, Query, Request
from starlette.concurrency import run_in_threadpool

from dispatcher.api.errors import ERROR_RESPONSES
from dispatcher.errors import ValidationError
from dispatcher.providers.registry import PROVIDERS, definition
from dispatcher.runtime import get_adapter
from dispatcher.tracking import poll_now, take_event

__all__ = ["receive", "router"]

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"], responses=ERROR_RESPONSES)


def _take(provider: str, headers: Mapping[str, str], body: bytes) -> int:
    callback = get_adapter(provider).parse_webhook(headers, body)
    if callback.event_id is not None and not take_event(
        provider, callback.event_id, callback.sent_at
    ):
        return 0  # a redelivery of an event already taken: nothing to do again
    return poll_now(provider, [status.fax_id for status in callback.statuses])


@router.post("/{provider}", summary="Receive a provider's status callback")
async def receive(
    provider: Annotated[str, Path(json_schema_extra={"enum": list(PROVIDERS)})],
    request: Request,
    secret: Annotated[str | None, Query(description="FAX.PLUS, InterFAX: the secret.")] = None,
    header_secret: Annotated[str | None, Header(alias="X-Fax-Webhook-Secret")] = None,
) -> dict[str, int]:
    """``{"polled": n}``: how many jobs follow the faxes named, whose statuses are now
    read from the provider (0 for a replay, or faxes no job follows)."""
    if provider not in PROVIDERS:
        raise HTTPException(404, f"no webhook receiver for {provider[:32]!r}")
    rule = definition(provider).webhook
    expected = definition(provider).load_settings().webhook_secret
    if expected is None:
        raise HTTPException(
            403, f"{provider} webhooks are off: FAX_{provider.upper()}__WEBHOOK_SECRET is not set"
        )
    if rule.secret_in_url:
        given = (secret or header_secret or "").encode()
        if not hmac.compare_digest(given, expected.get_secret_value().encode()):
            raise HTTPException(401, "missing or wrong webhook secret")
    body = await request.body()
    try:
        polled = await run_in_threadpool(_take, provider, request.headers, body)
    except ValidationError as exc:
        if exc.field == "signature":
            raise HTTPException(401, exc.reason) from None
        raise
    return {"polled": polled}
