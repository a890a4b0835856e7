"""InterFAX REST under ``/interfax``: send, records, completed, search, cancel, balance.

Records follow docs/providers/interfax.md section 3.1 (both ``destinationFax``/``subject`` and
``faxNumber``/``reference``); status is -2 (ready), then -3 (sending), then the scenario code.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from http import HTTPStatus
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request, Response
from starlette.responses import JSONResponse

from dispatcher.providers.interfax import api
from dispatcher.providers.interfax.settings import SANDBOX_PASSWORD, SANDBOX_USERNAME
from dispatcher.sandbox.context import Context
from dispatcher.sandbox.documents import (
    DOCUMENT_TYPES,
    Part,
    count_pages,
    media_type,
    parse_multipart,
)
from dispatcher.sandbox.errors import Answer, Dropped, before_accept
from dispatcher.sandbox.lines import Call, segment_calls
from dispatcher.sandbox.scenarios import normalize_number
from dispatcher.sandbox.state import Mark, Segment, Timeline, to_datetime
from dispatcher.sandbox.traffic import ID, RequestRule
from dispatcher.sandbox.webhooks import Delivery, Notifier

__all__ = [
    "CODE_TYPE",
    "CREDENTIALS",
    "Fax",
    "PREFIX",
    "REQUEST_KINDS",
    "SUCCESS",
    "build_router",
    "calls",
    "control_router",
    "error_response",
    "notifier",
]

PREFIX = "/interfax"
SUCCESS = api.STATUS_SUCCESS
CODE_TYPE = int
CREDENTIALS = {"username": SANDBOX_USERNAME, "password": SANDBOX_PASSWORD}
REQUEST_KINDS = (
    RequestRule("POST", re.compile(r"/outbound/faxes"), "send"),
    RequestRule("GET", re.compile(rf"/outbound/(search|faxes(/{ID})?)"), "status"),
)
# After the .NET client's SupportedMediaTypes list.
_TYPES = DOCUMENT_TYPES | frozenset(
    {
        "application/vnd.ms-powerpoint",
        "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        "application/vnd.oasis.opendocument.text",
        "application/vnd.oasis.opendocument.spreadsheet",
        "application/vnd.oasis.opendocument.presentation",
        "application/vnd.oasis.opendocument.graphics",
        "application/postscript",
        "application/eps",
        "text/html",
        "application/xhtml+xml",
        "text/xml",
        "application/xml",
        "text/csv",
        "image/gif",
        "image/bmp",
        "image/x-ms-bmp",
        "image/x-pcx",
        "message/rfc822",
        "application/zip",
        "application/x-zip-compressed",
    }
)
#: The error code of an error that has none of its own, by status
_ERROR_CODES = {
    401: api.ERROR_AUTHENTICATION,
    404: api.ERROR_NOT_FOUND,
    429: api.ERROR_TOO_MANY_REQUESTS,
}
_PHASES = (api.STATUS_READY, api.STATUS_SENDING)
_STATUS_FILTERS = {
    "all": lambda s: True,
    "completed": lambda s: s >= 0,
    "success": lambda s: s == 0,
    "failed": lambda s: s > 0,
    "inprocess": lambda s: s < 0,
}


class _Ids:
    """InterFAX fax ids: never reset, so they stay unique across sandbox resets, and moved past
    the ids of a restored state so they stay unique across restarts too."""

    def __init__(self, first: int) -> None:
        self._next = first
        self._lock = threading.Lock()

    def take(self) -> int:
        with self._lock:
            self._next += 1
            return self._next - 1

    def move_past(self, used: int) -> None:
        with self._lock:
            self._next = max(self._next, used + 1)


_IDS = _Ids(750_000_001)


@dataclass(slots=True)
class Fax:
    id: int
    number: str
    raw_number: str
    reference: str | None
    contact: str | None
    params: dict[str, str]
    pages: int
    pages_sent: int | None
    timeline: Timeline
    notified: bool = False


def _error_json(
    status: int,
    code: int,
    message: str,
    more_info: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """InterFAX errors; the recordings serve them as ``text/json``."""
    body = {"code": code, "message": message, "moreInfo": more_info}
    return JSONResponse(body, status, headers, media_type="text/json")


def error_response(
    status: int, message: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    """An error with no code of its own (a fault, an unknown route): the code for its status,
    the status's phrase as the message and ``message`` as the detail."""
    code = _ERROR_CODES.get(status, api.ERROR_INTERNAL)
    return _error_json(status, code, HTTPStatus(status).phrase, message, headers)


def _error(status: int, code: int, message: str, more: str | None = None) -> Answer:
    return Answer(_error_json(status, code, message, more))


def _time(moment: float) -> str:
    return to_datetime(moment).strftime(api.TIME_FORMAT)


def _record(ctx: Context, fax: Fax, now: float, base: str) -> dict[str, Any]:
    """The full outbound fax object; in-progress counters are 0 and completionTime null."""
    history = fax.timeline.history(now)
    status = int(history[-1][0])
    done = status >= 0
    started, ended = history[0][1], history[-1][1]
    if status == api.STATUS_SUCCESS:
        pages_sent = fax.pages
    elif status == api.STATUS_PARTIAL:
        pages_sent = fax.pages_sent if fax.pages_sent is not None else max(0, fax.pages - 1)
    else:
        pages_sent = 0
    params = fax.params
    return {
        "submitTime": _time(started),
        "contact": fax.contact,
        "destinationFax": "00" + fax.number.lstrip("+"),
        "faxNumber": fax.raw_number,
        "replyEmail": params.get("replyAddress", ""),
        "subject": fax.reference,
        "reference": fax.reference,
        "pagesSubmitted": fax.pages,
        "senderCSID": params.get("csid", "Interfax"),
        "attemptsToPerform": int(params.get("retriesToPerform", "4") or 4),
        "pageSize": params.get("pageSize", "A4").capitalize(),
        "resolution": params.get("resolution", "standard").capitalize(),
        "pageResolution": params.get("resolution", "standard").capitalize(),
        "pageOrientation": params.get("pageOrientation", "portrait").capitalize(),
        "rendering": params.get("rendering", "fine").capitalize(),
        "pageHeader": params.get("pageHeader", "0"),
        "userId": ctx.credentials["interfax"]["username"],
        "pagesSent": pages_sent if done else 0,
        "completionTime": _time(ended) if done else None,
        "remoteCSID": "Interfax" if done and pages_sent else "",
        "duration": int(ended - started) if done else 0,
        "priority": 2,
        "units": float(pages_sent) if done else 0.0,
        "costPerUnit": 0.15,
        "attemptsMade": 1 if status != api.STATUS_READY else 0,
        "id": fax.id,
        "uri": f"{base}/outbound/faxes/{fax.id}",
        "status": status,
    }


_SUMMARY = [
    "id",
    "uri",
    "status",
    "userId",
    "pagesSent",
    "completionTime",
    "remoteCSID",
    "duration",
    "priority",
    "units",
    "costPerUnit",
    "attemptsMade",
    "reference",
]


def build_router(ctx: Context) -> APIRouter:
    """The InterFAX routes, closed over the shared sandbox context."""

    accepted = ctx.credentials["interfax"]
    expected = f"{accepted['username']}:{accepted['password']}"

    def authorize(request: Request) -> None:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        try:
            given = base64.b64decode(value, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            given = ""
        if scheme.lower() != "basic" or not secrets.compare_digest(given, expected):
            raise _error(401, api.ERROR_AUTHENTICATION, "Authentication error")

    router = APIRouter(prefix=PREFIX, dependencies=[Depends(authorize)])
    faxes: dict[str, Fax] = ctx.store.records["interfax"]  # cleared in place on reset
    _IDS.move_past(max((fax.id for fax in faxes.values()), default=0))

    def base_url(request: Request) -> str:
        return str(request.base_url).rstrip("/") + PREFIX

    def find(fax_id: str) -> Fax:
        fax = faxes.get(fax_id)
        if fax is None:
            raise _error(
                404,
                api.ERROR_NOT_FOUND,
                "Fax resource not found",
                f"Fax resource {fax_id} not found",
            )
        return fax

    @router.post(api.SEND_PATH, status_code=201)
    async def send(request: Request) -> Response:
        query = request.query_params
        raw_number = query.get(api.PARAM_FAX_NUMBER, "")
        number = normalize_number(raw_number) if raw_number else None
        if number is None:
            raise _error(
                400, api.ERROR_NO_RECIPIENT, "No valid recipient", f"faxNumber={raw_number!r}"
            )
        reference = query.get(api.PARAM_REFERENCE)
        if reference is not None and len(reference) > 60:
            raise _error(400, api.ERROR_NO_RECIPIENT, "Invalid reference", "at most 60 characters")
        pages = _document_pages(request.headers, await request.body())
        refused = await before_accept(ctx.faults, "interfax", [number])
        if refused is not None:
            return refused
        fax_id = _IDS.take()
        with ctx.store.lock:
            sent = ctx.store.transmit("interfax", str(fax_id), number, reference, pages)
            segment = Segment(sent.started, sent.hold, _PHASES, int(sent.outcome.code))
            faxes[str(fax_id)] = Fax(
                id=fax_id,
                number=number,
                raw_number=raw_number,
                reference=reference,
                contact=query.get("contact"),
                params=dict(query),
                pages=pages,
                pages_sent=sent.outcome.pages_sent,
                timeline=Timeline([segment]),
            )
            ctx.store.schedule(segment.due, "interfax", str(fax_id))
        if ctx.faults.drop_after_accept("interfax", [number]):
            return Dropped()
        location = f"{base_url(request)}/outbound/faxes/{fax_id}"
        return Response(status_code=201, headers={"Location": location})

    @router.get(api.SEND_PATH)
    async def list_faxes(request: Request) -> list[dict[str, Any]]:
        query = request.query_params
        limit = _int(query.get("limit"), 25)
        last_id = _int(query.get("lastId"), None)
        descending = query.get("sortOrder", "desc").lower() != "asc"
        now, base = ctx.store.now(), base_url(request)
        with ctx.store.lock:
            rows = sorted(faxes.values(), key=lambda f: f.id, reverse=descending)
            if last_id is not None:
                rows = [f for f in rows if (f.id < last_id if descending else f.id > last_id)]
            return [_record(ctx, f, now, base) for f in rows[:limit]]

    @router.get(api.COMPLETED_PATH)
    async def completed(request: Request) -> list[dict[str, Any]]:
        wanted = re.findall(r"\d+", request.query_params.get(api.PARAM_IDS, ""))
        now, base = ctx.store.now(), base_url(request)
        with ctx.store.lock:
            records = [_record(ctx, faxes[i], now, base) for i in wanted if i in faxes]
        return [{k: r[k] for k in _SUMMARY} for r in records if r["status"] >= 0]

    @router.get(api.SEARCH_PATH)
    async def search(request: Request) -> list[dict[str, Any]]:
        query = request.query_params
        ids = set(re.findall(r"\d+", query.get(api.PARAM_IDS, "")))
        reference = query.get(api.PARAM_REFERENCE)
        raw_number = query.get(api.PARAM_FAX_NUMBER)
        number = normalize_number(raw_number) if raw_number else None
        status_filter = _status_filter(query.get("status", "All"))
        date_from = _date(query.get("dateFrom"))
        date_to = _date(query.get("dateTo"))
        limit = _int(query.get("limit"), 25)
        offset = _int(query.get("offset"), 0)
        descending = query.get("sortOrder", "desc").lower() != "asc"
        now, base = ctx.store.now(), base_url(request)
        with ctx.store.lock:
            rows = sorted(faxes.values(), key=lambda f: f.id, reverse=descending)
            records = [
                _record(ctx, f, now, base)
                for f in rows
                if (not ids or str(f.id) in ids)
                and (reference is None or f.reference == reference)
                and (raw_number is None or f.number == number)
                and (date_from is None or f.timeline.history(now)[0][1] >= date_from)
                and (date_to is None or f.timeline.history(now)[0][1] <= date_to)
            ]
        records = [r for r in records if status_filter(r["status"])]
        return records[offset : offset + limit]

    @router.get(api.FAX_PATH)
    async def get_fax(fax_id: str, request: Request) -> dict[str, Any]:
        with ctx.store.lock:
            return _record(ctx, find(fax_id), ctx.store.now(), base_url(request))

    @router.post(api.CANCEL_PATH)
    async def cancel(fax_id: str) -> Response:
        now = ctx.store.now()
        with ctx.store.lock:
            fax = find(fax_id)
            if int(fax.timeline.status(now)) >= 0:
                raise _error(
                    409,
                    api.ERROR_WRONG_STATUS,
                    "Transaction is in a wrong status for this operation",
                    f"Transaction ID {fax_id} has already completed",
                )
            fax.timeline.stop(now)
            fax.timeline.entries.append(Mark(api.STATUS_CANCELLED, now))
            ctx.store.schedule(now, "interfax", fax_id)
        return Response(status_code=200)

    @router.get(api.BALANCE_PATH)
    async def balance() -> Response:
        return Response("100.0000", media_type="text/json")

    return router


def _document_pages(headers: Any, body: bytes) -> int:
    """Validate the document(s) of a send and count their pages."""
    content_type = headers.get("content-type", "")
    if media_type(content_type) in ("multipart/form-data", "multipart/mixed"):
        parts = parse_multipart(content_type, body)
    else:
        parts = [Part(media_type(content_type), headers.get("content-location"), body)]
    if not parts:
        raise _error(400, api.ERROR_NO_DOCUMENTS, "No valid documents attached")
    pages = 0
    for part in parts:
        if part.content_location and not part.content:
            pages += 1
            continue
        if not part.content:
            raise _error(400, api.ERROR_NO_DOCUMENTS, "No valid documents attached", "empty part")
        if part.content_type not in _TYPES:
            raise _error(
                415,
                api.ERROR_NO_DOCUMENTS,
                "Unsupported media type",
                f"{part.content_type or 'no content type'} is not supported",
            )
        pages += count_pages(part.content, part.content_type)
    return pages


def _int(raw: str | None, default: Any) -> Any:
    try:
        return int(raw) if raw is not None else default
    except ValueError as exc:
        raise _error(400, api.ERROR_NO_RECIPIENT, "Invalid argument", str(exc)) from exc


def _status_filter(raw: str) -> Any:
    named = _STATUS_FILTERS.get(raw.lower())
    if named is not None:
        return named
    code = _int(raw, None)
    return lambda s: s == code


def _date(raw: str | None) -> float | None:
    if not raw:
        return None
    try:
        return datetime.fromisoformat(raw.replace("Z", "+00:00")).timestamp()
    except ValueError as exc:
        raise _error(400, api.ERROR_NO_RECIPIENT, "Invalid argument", str(exc)) from exc


def calls(ctx: Context) -> list[Call]:
    """One call per fax: its single segment, cut short by a cancel."""
    with ctx.store.lock:
        faxes: list[Fax] = list(ctx.store.records["interfax"].values())
        return [
            call
            for fax in faxes
            for call in segment_calls(
                "interfax", str(fax.id), fax.reference, fax.number, fax.timeline.entries
            )
        ]


def control_router(ctx: Context) -> APIRouter:
    """``/_sandbox/interfax/callback``: where Web Feedback (the completion callback) goes."""
    router = APIRouter()

    @router.put("/callback")
    async def callback(request: Request) -> dict[str, Any]:
        """Set the InterFAX Web Feedback URL (null turns it off) until the next reset."""
        body = await request.json()
        url = body.get("url") if isinstance(body, dict) else None
        ctx.store.extras["interfax"]["callback_url"] = url
        return {"url": url}

    return router


def notifier(ctx: Context) -> Notifier:
    """Web Feedback: one form-encoded POST when a fax completes, to the configured URL."""

    def deliveries(fax_id: str) -> list[Delivery]:
        url = ctx.store.extras["interfax"].get("callback_url")
        now = ctx.store.now()
        with ctx.store.lock:
            fax = ctx.store.records["interfax"].get(fax_id)
            if url is None or fax is None or fax.notified or int(fax.timeline.status(now)) < 0:
                return []
            fax.notified = True
            record = _record(ctx, fax, now, "")
        fmt = api.CALLBACK_TIME_FORMAT
        form = {
            "TransactionIDType": "Outbound",
            api.CALLBACK_TRANSACTION_ID: str(fax.id),
            api.CALLBACK_STATUS: str(record["status"]),
            api.CALLBACK_PAGES_SENT: str(record["pagesSent"]),
            "CompletionTime": to_datetime(now).strftime(fmt),
            "SubmitTime": to_datetime(fax.timeline.history(now)[0][1]).strftime(fmt),
            "Contact": fax.contact or "",
            "CostPerUnit": str(record["costPerUnit"]),
            "Units": str(record["units"]),
            "DestinationFax": record["destinationFax"],
            "Duration": str(record["duration"]),
            "RemoteCSID": record["remoteCSID"],
            "Subject": fax.reference or "",
            "Reference": fax.reference or "",
            "UserID": ctx.credentials["interfax"]["username"],
        }
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        return [Delivery("interfax", fax_id, url, urlencode(form).encode(), headers)]

    return deliveries
