"""``POST /v1/webhooks/{provider}``: status callbacks from the providers.

Each callback is verified before it is read: Optum signs its body (HMAC-SHA256, checked by
the adapter); FAX.PLUS and InterFAX do not sign, so their callback URL carries a shared
secret (``?secret=`` or the ``X-Fax-Webhook-Secret`` header). Every event gets an id from
its own content, so a provider's redelivery changes nothing. The statuses are applied
here, in the request: applying one is a short database transaction, the same one a
worker's poll runs, and answering only after it is stored lets the provider redeliver
whatever we failed to store.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Mapping
from typing import Annotated, Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Header, HTTPException, Path, Query, Request
from pydantic import SecretStr
from starlette.concurrency import run_in_threadpool

from config.settings import Settings, get_settings
from dispatcher.api.errors import ERROR_RESPONSES
from dispatcher.errors import ValidationError
from dispatcher.providers.base import webhook_json
from dispatcher.providers.registry import PROVIDERS, get_adapter
from dispatcher.tracking import apply_webhook

__all__ = ["router"]

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"], responses=ERROR_RESPONSES)


# Each runs after the adapter accepted the body, so its shape is known.
def _optum_event(body: bytes) -> list[Any]:
    return [webhook_json(body).get("causationId")]


def _faxplus_event(body: bytes) -> list[Any]:
    payload = webhook_json(body)
    hook, data = payload.get("hook"), payload["data"]
    return [hook.get("id") if isinstance(hook, dict) else None, data["id"], data["status"]]


def _interfax_event(body: bytes) -> list[Any]:
    form = parse_qs(body.decode())
    return [form.get("TransactionID"), form.get("Status")]


#: provider -> (its webhook secret setting, whether the URL must carry it, event id parts)
_PROVIDERS: dict[
    str, tuple[Callable[[Settings], SecretStr | None], bool, Callable[[bytes], list[Any]]]
] = {
    "optum": (lambda s: s.optum.webhook_secret, False, _optum_event),
    "faxplus": (lambda s: s.faxplus.webhook_secret, True, _faxplus_event),
    "interfax": (lambda s: s.interfax.webhook_secret, True, _interfax_event),
}


def _event_id(parts: list[Any], body: bytes) -> str:
    """A bounded id for the event: its identifying fields, or the exact body bytes."""
    seed = json.dumps(parts, default=str).encode() if all(parts) else body
    return hashlib.sha256(seed).hexdigest()


def _apply(
    provider: str,
    headers: Mapping[str, str],
    body: bytes,
    event_parts: Callable[[bytes], list[Any]],
) -> int:
    statuses = list(get_adapter(provider).parse_webhook(headers, body))
    return apply_webhook(provider, statuses, _event_id(event_parts(body), body))


@router.post("/{provider}", summary="Receive a provider's status callback")
async def receive(
    provider: Annotated[str, Path(json_schema_extra={"enum": list(PROVIDERS)})],
    request: Request,
    secret: Annotated[str | None, Query(description="FAX.PLUS, InterFAX: the secret.")] = None,
    header_secret: Annotated[str | None, Header(alias="X-Fax-Webhook-Secret")] = None,
) -> dict[str, int]:
    """``{"applied": n}``: how many statuses changed a job (0 for a replay)."""
    if provider not in _PROVIDERS:
        raise HTTPException(404, f"no webhook receiver for {provider[:32]!r}")
    configured, in_url, event_parts = _PROVIDERS[provider]
    expected = configured(get_settings())
    if expected is None:
        raise HTTPException(
            403, f"{provider} webhooks are off: FAX_{provider.upper()}__WEBHOOK_SECRET is not set"
        )
    if in_url:
        given = (secret or header_secret or "").encode()
        if not hmac.compare_digest(given, expected.get_secret_value().encode()):
            raise HTTPException(401, "missing or wrong webhook secret")
    body = await request.body()
    try:
        applied = await run_in_threadpool(_apply, provider, request.headers, body, event_parts)
    except ValidationError as exc:
        if exc.field == "signature":
            raise HTTPException(401, exc.reason) from None
        raise
    return {"applied": applied}
