"""Optum fax management under ``/optum``, to the proposed shapes of docs/providers/optum.md
sections 1-4.

OAuth2 client credentials at ``/oauth/token``; every ``/fax`` call needs the bearer token and
``X-Optum-Tenant-Id`` and sees only its tenant's faxes. One transmission (a send or the one
manual retry) yields one final code from the scenario; automatic retries are not played out.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from http import HTTPStatus
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from starlette.datastructures import UploadFile
from starlette.responses import JSONResponse

from dispatcher.providers.optum import api
from dispatcher.providers.optum.settings import SANDBOX_CLIENT_ID, SANDBOX_CLIENT_SECRET
from dispatcher.sandbox.context import Context
from dispatcher.sandbox.documents import count_pages, extension, media_type
from dispatcher.sandbox.errors import Answer, Dropped, before_accept
from dispatcher.sandbox.lines import Call, segment_end
from dispatcher.sandbox.scenarios import normalize_number
from dispatcher.sandbox.state import Mark, Segment, Timeline, to_datetime
from dispatcher.sandbox.traffic import ID, RequestRule
from dispatcher.sandbox.webhooks import Delivery, Notifier, compact_json, sign

__all__ = [
    "Attempt",
    "CODE_TYPE",
    "CREDENTIALS",
    "Fax",
    "PREFIX",
    "REQUEST_KINDS",
    "SUCCESS",
    "build_router",
    "calls",
    "conflict",
    "control_router",
    "error_response",
    "notifier",
]

PREFIX = "/optum"
SUCCESS = api.STATUS_SENT
CODE_TYPE = str
CREDENTIALS = {"client_id": SANDBOX_CLIENT_ID, "client_secret": SANDBOX_CLIENT_SECRET}
_FAX_ID = rf"(?!search$|webhook$){ID}"  # /fax/{id} must not swallow the fixed routes
REQUEST_KINDS = (
    RequestRule("POST", re.compile(r"/fax"), "send"),
    RequestRule("POST", re.compile(r"/fax/search"), "status"),
    RequestRule("GET", re.compile(rf"/fax/{_FAX_ID}"), "status"),
)
_RFC9110 = "https://tools.ietf.org/html/rfc9110#section-"
_PROBLEM_TYPES = {
    400: "15.5.1",
    401: "15.5.2",
    403: "15.5.4",
    404: "15.5.5",
    405: "15.5.6",
    409: "15.5.10",
    413: "15.5.14",
    415: "15.5.16",
    500: "15.6.1",
    502: "15.6.3",
    503: "15.6.4",
    504: "15.6.5",
}
_US_NUMBER = re.compile(r"^\+?1?[0-9]{10}$")
_FIRST = (api.STATUS_RECEIVED, api.STATUS_ATTEMPT_INITIATED)
_MANUAL = (api.STATUS_RETRY, api.STATUS_RETRY_ATTEMPTED)
_HOLDABLE = {api.STATUS_RECEIVED, api.STATUS_ATTEMPT_INITIATED, api.STATUS_RETRY}
_STOPPABLE = _HOLDABLE | {api.STATUS_RETRY_ATTEMPTED, api.STATUS_HELD}
_EXTENSIONS = {"pdf", "tif", "tiff"}


@dataclass(slots=True)
class Attempt:
    """One transmission; a hold and revive adds a segment to the same attempt."""

    id: str
    number: int
    manual: bool
    code: str
    failed_reason: str | None
    pages_sent: int | None
    segments: list[Segment] = field(default_factory=list)


@dataclass(slots=True)
class Fax:
    id: str
    tenant: str
    number: str
    metadata: dict[str, str]
    pages: int
    created: float
    timeline: Timeline = field(default_factory=Timeline)
    attempts: list[Attempt] = field(default_factory=list)
    notified_at: float | None = None


def _iso(moment: float) -> str:
    return to_datetime(moment).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _problem_json(
    status: int,
    detail: str,
    errors: dict[str, list[str]] | None = None,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    """An RFC 9110 ProblemDetails body, as the proposed Optum error shape."""
    section = _PROBLEM_TYPES.get(status)
    body: dict[str, Any] = {
        "type": _RFC9110 + section if section else "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "traceId": f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-00",
        **extra,
    }
    if errors:
        body["errors"] = errors
    return JSONResponse(body, status, headers, media_type=api.PROBLEM_CONTENT_TYPE)


def error_response(
    status: int, message: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    """A fault or an unknown route: a problem whose detail is ``message``."""
    return _problem_json(status, message, headers=headers)


def _problem(status: int, detail: str, errors: dict[str, list[str]] | None = None) -> Answer:
    return Answer(_problem_json(status, detail, errors))


def _fax_json(fax: Fax, now: float, history: bool = False) -> dict[str, Any]:
    status = str(fax.timeline.status(now))
    attempt = fax.attempts[-1]
    failed = status == api.STATUS_FAILED
    if status == api.STATUS_SENT:
        pages_sent = fax.pages
    elif failed and attempt.failed_reason == "TransmissionError" and attempt.pages_sent:
        pages_sent = attempt.pages_sent
    else:
        pages_sent = 0
    body: dict[str, Any] = {
        "tenantId": fax.tenant,
        "faxId": fax.id,
        "faxStatus": status,
        "createdOn": _iso(fax.created),
        "updatedOn": _iso(fax.timeline.changed_at(now)),
        "phoneNumber": fax.number[-10:],
        "failedReason": attempt.failed_reason if failed else None,
        api.FIELD_METADATA: fax.metadata,
        api.FIELD_PAGES_SENT: pages_sent,
    }
    if history:
        body["faxStatusChangeHistory"] = [
            {"faxStatus": code, "changedOn": _iso(at)} for code, at in fax.timeline.history(now)
        ]
    return body


def _attempt_json(fax: Fax, attempt: Attempt, now: float) -> dict[str, Any]:
    last = attempt.segments[-1]
    cancelled = last.stopped_at is not None and fax.timeline.status(now) in (
        api.STATUS_RECEIVED_FOR_CANCEL,
        api.STATUS_CANCELLED,
    )
    if cancelled:
        state, completed = "Cancelled", last.stopped_at
    elif last.stopped_at is not None or last.due > now:
        state, completed = "InProgress", None
    else:
        state = "Sent" if attempt.code == api.STATUS_SENT else "Failed"
        completed = last.due
    return {
        "attemptId": attempt.id,
        "faxId": fax.id,
        "attemptNumber": attempt.number,
        "isManualRetry": attempt.manual,
        "attemptStatus": state,
        "startedOn": _iso(attempt.segments[0].started),
        "completedOn": _iso(completed) if completed is not None else None,
        "failedReason": attempt.failed_reason if state == "Failed" else None,
        "pagesSent": fax.pages if state == "Sent" else (attempt.pages_sent or 0),
    }


def build_router(ctx: Context) -> APIRouter:
    """The Optum routes, closed over the shared sandbox context."""
    tokens = ctx.store.tokens  # token -> wall-clock expiry; kept across resets and restarts
    faxes: dict[str, Fax] = ctx.store.records["optum"]  # cleared in place on reset
    client = (ctx.credentials["optum"]["client_id"], ctx.credentials["optum"]["client_secret"])

    def authorize(request: Request) -> str:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        expiry = tokens.get(token) if scheme.lower() == "bearer" else None
        if expiry is None or expiry < time.time():
            raise _problem(401, "The bearer token is missing, invalid or expired.")
        tenant = request.headers.get(api.TENANT_HEADER, "").strip()
        if not tenant:
            raise _problem(400, f"The {api.TENANT_HEADER} header is required.")
        return tenant

    router = APIRouter(prefix=PREFIX)
    fax_router = APIRouter(dependencies=[Depends(authorize)])

    def find(fax_id: str, tenant: str) -> Fax:
        fax = faxes.get(fax_id)
        if fax is None or fax.tenant != tenant:
            raise _problem(404, f"Fax {fax_id} not found.")
        return fax

    def start_attempt(fax: Fax, manual: bool, reference: str | None) -> Attempt:
        sent = ctx.store.transmit(
            "optum", fax.id, fax.number, reference, fax.pages, kind="retry" if manual else "send"
        )
        outcome = sent.outcome
        code = str(outcome.code)
        failed = code == api.STATUS_FAILED
        reason = (outcome.failed_reason or "TransmissionError") if failed else None
        attempt = Attempt(
            id=str(uuid.uuid4()),
            number=len(fax.attempts) + 1,
            manual=manual,
            code=code,
            failed_reason=reason,
            pages_sent=outcome.pages_sent,
        )
        run(fax, attempt, Segment(sent.started, sent.hold, _MANUAL if manual else _FIRST, code))
        fax.attempts.append(attempt)
        return attempt

    def run(fax: Fax, attempt: Attempt, segment: Segment) -> None:
        attempt.segments.append(segment)
        fax.timeline.entries.append(segment)
        ctx.store.schedule(segment.due, "optum", fax.id)

    @router.post(api.TOKEN_PATH)
    async def token(request: Request) -> dict[str, Any]:
        form = await request.form()
        client_id, client_secret = form.get("client_id"), form.get("client_secret")
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "basic":
            try:
                client_id, _, client_secret = base64.b64decode(value).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                client_id = client_secret = None
        if form.get("grant_type") != "client_credentials":
            raise Answer(
                _problem_json(
                    400, "grant_type must be client_credentials.", error="unsupported_grant_type"
                )
            )
        if (client_id, client_secret) != client:
            raise Answer(
                _problem_json(401, "Unknown client or bad secret.", error="invalid_client")
            )
        issued = secrets.token_urlsafe(24)
        tokens[issued] = time.time() + api.TOKEN_LIFETIME
        return {"access_token": issued, "token_type": "Bearer", "expires_in": api.TOKEN_LIFETIME}

    @fax_router.post(api.WEBHOOK_ENDPOINTS_PATH)
    async def create_endpoint(request: Request, tenant: str = Depends(authorize)) -> dict[str, Any]:
        body = await _json(request)
        url = body.get("url")
        key = ((body.get("auth") or {}).get("apiKey") or {}).get("key")
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            raise _problem(400, "url must be an https URL.", {"url": ["required"]})
        if not isinstance(key, str) or not key:
            raise _problem(400, "auth.apiKey.key is required.", {"auth.apiKey.key": ["required"]})
        endpoint = {"url": url, "key": key, "createdOn": _iso(ctx.store.now())}
        with ctx.store.lock:
            _endpoints(ctx)[tenant] = endpoint
        return {"url": url, "createdOn": endpoint["createdOn"]}

    @fax_router.get(api.WEBHOOK_ENDPOINTS_PATH)
    async def get_endpoint(tenant: str = Depends(authorize)) -> dict[str, Any]:
        endpoint = _endpoints(ctx).get(tenant)
        if endpoint is None:
            raise _problem(404, "No webhook endpoint is registered.")
        return {"url": endpoint["url"], "createdOn": endpoint["createdOn"]}

    @fax_router.delete(api.WEBHOOK_ENDPOINTS_PATH)
    async def delete_endpoint(tenant: str = Depends(authorize)) -> Response:
        with ctx.store.lock:
            if _endpoints(ctx).pop(tenant, None) is None:
                raise _problem(404, "No webhook endpoint is registered.")
        return Response(status_code=204)

    @fax_router.post(api.SEND_PATH)
    async def send(request: Request, tenant: str = Depends(authorize)) -> Response:
        form = await request.form(max_part_size=api.MAX_DOCUMENT_BYTES + 1)
        raw_number = await _text(form.get(api.PART_FAX_NUMBER))
        number = normalize_number(raw_number) if raw_number else None
        if not raw_number or not _US_NUMBER.match(raw_number.strip()) or number is None:
            raise _problem(
                400,
                "faxNumber must be a 10 or 11 digit US number.",
                {api.PART_FAX_NUMBER: ["invalid" if raw_number else "required"]},
            )
        metadata = _metadata(await _text(form.get(api.PART_METADATA)))
        document = form.get(api.PART_DOCUMENT)
        if not isinstance(document, UploadFile):
            raise _problem(400, "The document part is required.", {api.PART_DOCUMENT: ["required"]})
        content = await document.read()
        ctype = media_type(document.content_type)
        if ctype not in api.DOCUMENT_TYPES and not (
            ctype in (None, "application/octet-stream")
            and extension(document.filename) in _EXTENSIONS
        ):
            raise _problem(415, f"Unsupported document type {ctype}.")
        if len(content) > api.MAX_DOCUMENT_BYTES:
            raise _problem(413, "The document is larger than 10 MiB.")
        if not content:
            raise _problem(400, "The document is empty.", {api.PART_DOCUMENT: ["empty"]})
        refused = await before_accept(ctx.faults, "optum", [number])
        if refused is not None:
            return refused
        with ctx.store.lock:
            fax = Fax(
                id=str(uuid.uuid4()),
                tenant=tenant,
                number=number,
                metadata=metadata,
                pages=count_pages(content, ctype),
                created=ctx.store.now(),
            )
            faxes[fax.id] = fax
            first = start_attempt(fax, False, metadata.get(api.METADATA_REFERENCE_KEY))
            fax.created = first.segments[0].started
            body = _fax_json(fax, ctx.store.now())
        if ctx.faults.drop_after_accept("optum", [number]):
            return Dropped()
        return Response(json.dumps(body), media_type="application/json")

    @fax_router.post(api.SEARCH_PATH)
    async def search(request: Request, tenant: str = Depends(authorize)) -> list[dict[str, Any]]:
        body = await _json(request)
        filters = {
            api.SEARCH_FAX_NUMBER,
            api.SEARCH_FAX_ID,
            api.SEARCH_FAX_STATUS,
            api.SEARCH_FAX_SENT_DATE,
        }
        if not any(body.get(k) for k in filters):
            raise _problem(400, "At least one search filter is required.")
        ids = {i.strip() for i in str(body.get(api.SEARCH_FAX_ID) or "").split(",") if i.strip()}
        raw_number = body.get(api.SEARCH_FAX_NUMBER)
        number = normalize_number(str(raw_number)) if raw_number else None
        if raw_number and number is None:
            raise _problem(400, "faxNumber is not a valid number.", {"faxNumber": ["invalid"]})
        status = body.get(api.SEARCH_FAX_STATUS)
        sent_date = _sent_date(body.get(api.SEARCH_FAX_SENT_DATE))
        history = bool(body.get(api.SEARCH_SHOW_HISTORY))
        now = ctx.store.now()
        with ctx.store.lock:
            rows = [
                _fax_json(f, now, history)
                for f in sorted(faxes.values(), key=lambda f: f.created, reverse=True)
                if f.tenant == tenant
                and (not ids or f.id in ids)
                and (number is None or f.number == number)
                and (sent_date is None or to_datetime(f.created).date() == sent_date)
            ]
        return [r for r in rows if not status or r["faxStatus"] == status]

    @fax_router.get(api.FAX_PATH)
    async def get_fax(fax_id: str, tenant: str = Depends(authorize)) -> dict[str, Any]:
        with ctx.store.lock:
            return _fax_json(find(fax_id, tenant), ctx.store.now())

    @fax_router.delete(api.FAX_PATH)
    async def stop(fax_id: str, tenant: str = Depends(authorize)) -> dict[str, Any]:
        now = ctx.store.now()
        with ctx.store.lock:
            fax = find(fax_id, tenant)
            conflict(fax, now, _STOPPABLE, "stop")
            fax.timeline.stop(now)
            done = now + ctx.scaled(ctx.config.cancel_seconds)
            fax.timeline.entries += [
                Mark(api.STATUS_RECEIVED_FOR_CANCEL, now),
                Mark(api.STATUS_CANCELLED, done),
            ]
            ctx.store.schedule(done, "optum", fax.id)
            return _fax_json(fax, now)

    @fax_router.put(api.RETRY_PATH)
    async def retry(fax_id: str, tenant: str = Depends(authorize)) -> dict[str, Any]:
        with ctx.store.lock:
            fax = find(fax_id, tenant)
            conflict(fax, ctx.store.now(), {api.STATUS_FAILED}, "retry")
            if any(a.manual for a in fax.attempts):
                raise _problem(409, f"Fax {fax_id} was already retried once; retry is not allowed.")
            start_attempt(fax, manual=True, reference=fax.metadata.get(api.METADATA_REFERENCE_KEY))
            return _fax_json(fax, ctx.store.now())

    @fax_router.put(api.HOLD_PATH)
    async def hold(fax_id: str, tenant: str = Depends(authorize)) -> dict[str, Any]:
        now = ctx.store.now()
        with ctx.store.lock:
            fax = find(fax_id, tenant)
            conflict(fax, now, _HOLDABLE, "hold")
            fax.timeline.stop(now)
            fax.timeline.entries.append(Mark(api.STATUS_HELD, now))
            return _fax_json(fax, now)

    @fax_router.put(api.REVIVE_PATH)
    async def revive(fax_id: str, tenant: str = Depends(authorize)) -> dict[str, Any]:
        now = ctx.store.now()
        with ctx.store.lock:
            fax = find(fax_id, tenant)
            conflict(fax, now, {api.STATUS_HELD}, "revive")
            attempt = fax.attempts[-1]
            held = attempt.segments[-1]
            run(fax, attempt, Segment(now, held.hold, held.phases, held.final))
            return _fax_json(fax, now)

    @fax_router.get(api.ATTEMPTS_PATH)
    async def attempts(fax_id: str, tenant: str = Depends(authorize)) -> list[dict[str, Any]]:
        now = ctx.store.now()
        with ctx.store.lock:
            fax = find(fax_id, tenant)
            return [_attempt_json(fax, a, now) for a in fax.attempts]

    @fax_router.get(api.ATTEMPT_PATH)
    async def attempt(
        fax_id: str, attempt_id: str, tenant: str = Depends(authorize)
    ) -> dict[str, Any]:
        now = ctx.store.now()
        with ctx.store.lock:
            fax = find(fax_id, tenant)
            for item in fax.attempts:
                if item.id == attempt_id:
                    return _attempt_json(fax, item, now)
        raise _problem(404, f"Attempt {attempt_id} not found.")

    router.include_router(fax_router)
    return router


def calls(ctx: Context) -> list[Call]:
    """One call per attempt, a manual retry included, from its start to its last segment's end.

    A hold and revive keep the attempt (and so the line) until the revived segment ends.
    """
    with ctx.store.lock:
        faxes: list[Fax] = list(ctx.store.records["optum"].values())
        return [
            Call(
                "optum",
                fax.id,
                fax.metadata.get(api.METADATA_REFERENCE_KEY),
                fax.number,
                attempt.segments[0].started,
                segment_end(attempt.segments[-1]),
            )
            for fax in faxes
            for attempt in fax.attempts
        ]


def _endpoints(ctx: Context) -> dict[str, dict[str, str]]:
    """The registered webhook endpoint of each tenant (one per tenant)."""
    endpoints: dict[str, dict[str, str]] = ctx.store.extras["optum"].setdefault("endpoints", {})
    return endpoints


def _missed_events(ctx: Context) -> list[dict[str, Any]]:
    """Events whose delivery failed after all retries (``GET /_sandbox/optum/missed-events``)."""
    missed: list[dict[str, Any]] = ctx.store.extras["optum"].setdefault("missed", [])
    return missed


def control_router(ctx: Context) -> APIRouter:
    """``/_sandbox/optum/missed-events``: the events no delivery attempt got through."""
    router = APIRouter()

    @router.get("/missed-events")
    async def missed_events() -> list[dict[str, Any]]:
        with ctx.store.lock:
            return list(_missed_events(ctx))

    return router


def conflict(fax: Fax, now: float, allowed: set[str], action: str) -> None:
    status = fax.timeline.status(now)
    if status not in allowed:
        raise _problem(409, f"Fax {fax.id} is in status {status}; {action} is not allowed.")


async def _text(value: UploadFile | str | None) -> str | None:
    """A form field's text, whether sent as a plain field or as a file part."""
    if isinstance(value, UploadFile):
        return (await value.read()).decode(errors="replace")
    return value


async def _json(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise _problem(400, "The body must be a JSON object.")
    return body


def _metadata(raw: str | None) -> dict[str, str]:
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        data = None
    if (
        not isinstance(data, dict)
        or len(data) > 20
        or not all(isinstance(k, str) and len(k) <= 64 for k in data)
        or not all(isinstance(v, str) and len(v) <= 256 for v in data.values())
    ):
        raise _problem(
            400,
            "metadata must be a JSON object of at most 20 string keys (<=64) and values (<=256).",
            {api.PART_METADATA: ["invalid"]},
        )
    return data


def _sent_date(raw: Any) -> date | None:
    if not raw:
        return None
    try:
        return date.fromisoformat(str(raw)[:10])
    except ValueError as exc:
        raise _problem(
            400, "faxSentDate must be YYYY-MM-DD.", {"faxSentDate": ["invalid"]}
        ) from exc


def notifier(ctx: Context) -> Notifier:
    """A signed event when a fax reaches a terminal status, with 3 retries then a missed event."""

    def deliveries(fax_id: str) -> list[Delivery]:
        now = ctx.store.now()
        with ctx.store.lock:
            fax = ctx.store.records["optum"].get(fax_id)
            if fax is None or fax.timeline.status(now) not in api.TERMINAL_STATUSES:
                return []
            changed = fax.timeline.changed_at(now)
            endpoint = _endpoints(ctx).get(fax.tenant)
            if endpoint is None or fax.notified_at == changed:
                return []
            fax.notified_at = changed
            data = _fax_json(fax, now)
        event_type = re.sub(r"(?<!^)(?=[A-Z])", "_", data["faxStatus"]).lower()
        body = compact_json(
            {
                "id": fax_id,
                "source": api.EVENT_SOURCE,
                "specVersion": api.EVENT_SPEC_VERSION,
                "type": event_type,
                "dataContentType": "application/json",
                "data": {"type": event_type, **data},
                "time": _iso(now),
                "causationId": str(uuid.uuid4()),
            }
        )

        def missed() -> None:
            with ctx.store.lock:
                fax.timeline.entries.append(
                    Mark(api.STATUS_WEBHOOK_UPDATE_FAILED, ctx.store.now(), informational=True)
                )
                _missed_events(ctx).append(
                    {"faxId": fax_id, "url": endpoint["url"], "eventPayload": body.decode()}
                )

        return [
            Delivery(
                "optum",
                fax_id,
                endpoint["url"],
                body,
                {api.SIGNATURE_HEADER: sign(endpoint["key"], body)},
                tuple(ctx.scaled(d) for d in ctx.config.webhook_retry_delays),
                missed,
            )
        ]

    return deliveries
