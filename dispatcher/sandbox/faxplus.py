"""FAX.PLUS v3 under ``/faxplus/v3``: upload, outbox, fax records (CDRs) and hooks.

A send creates one outbox item (outbox statuses only) and one fax record per destination,
whose id is the ``return_ids`` id; ``GET /faxes/{id}`` is 404 until transmission ends, then
returns a record the official SDK deserializes (docs/providers/faxplus.md section 7.4).
"""

from __future__ import annotations

import re
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from starlette.responses import JSONResponse

from dispatcher.providers.faxplus import api
from dispatcher.providers.faxplus.settings import SANDBOX_TOKEN
from dispatcher.sandbox.context import Context
from dispatcher.sandbox.documents import DOCUMENT_TYPES, count_pages, extension, media_type
from dispatcher.sandbox.errors import Answer, Dropped, before_accept
from dispatcher.sandbox.lines import Call, segment_calls
from dispatcher.sandbox.scenarios import normalize_number
from dispatcher.sandbox.state import Segment, Timeline, to_datetime
from dispatcher.sandbox.traffic import ID, RequestRule
from dispatcher.sandbox.webhooks import Delivery, Notifier, compact_json

__all__ = [
    "CODE_TYPE",
    "CREDENTIALS",
    "FaxItem",
    "OutboxItem",
    "PREFIX",
    "REQUEST_KINDS",
    "SUCCESS",
    "build_router",
    "calls",
    "control_router",
    "error_response",
    "notifier",
]

PREFIX = "/faxplus/v3"
SUCCESS = api.STATUS_SUCCESS
CODE_TYPE = str
CREDENTIALS = {"token": SANDBOX_TOKEN}
REQUEST_KINDS = (
    RequestRule("POST", re.compile(rf"/accounts/{ID}/outbox"), "send"),
    RequestRule("GET", re.compile(rf"/accounts/{ID}/(outbox|faxes)(/{ID})?"), "status"),
)
#: The uid of the sandbox's one account, which ``self`` stands for.
_UID = "5a4db0c1d2e3f40516273849aabbccdd"
_EXTENSIONS = frozenset(
    {"pdf", "doc", "docx", "txt", "rtf", "jpg", "jpeg", "png", "tif", "tiff", "xls", "xlsx"}
)
_FROM = re.compile(r"^([+][0-9]{8,}([*]{0,10}[0-9]+)?)|(no_number)|(NO_NUMBER)$")
_SORT_KEYS = {"date", "from", "to", "comment", "pages"}
#: The error code of an error that has none of its own, by status
_ERROR_CODES = {
    401: api.ERROR_INVALID_TOKEN,
    404: api.ERROR_NOT_FOUND,
    429: api.ERROR_RATE_LIMITED,
}


@dataclass(slots=True)
class OutboxItem:
    id: str
    src: str
    to: list[str]
    files: list[str]
    comment: dict[str, Any]
    options: dict[str, Any]
    started: float
    due: float
    page_count: int
    fax_ids: dict[str, str]
    cancelled: bool = False


@dataclass(slots=True)
class FaxItem:
    id: str
    outbox_id: str
    src: str
    to: str
    comment: str
    pages: int
    timeline: Timeline
    pages_sent: int | None
    retry: dict[str, int] = field(default_factory=dict)
    cancelled: bool = False


def _time(moment: float) -> str:
    return to_datetime(moment).strftime(api.TIME_FORMAT)


def _error_json(
    status: int, error: str, description: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": error, "description": description}, status, headers)


def error_response(
    status: int, message: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    """An error with no code of its own (a fault, an unknown route): the code for its status."""
    code = _ERROR_CODES.get(status, "bad_request" if status < 500 else "server_error")
    return _error_json(status, code, message, headers)


def _error(status: int, code: str, description: str) -> Answer:
    return Answer(_error_json(status, code, description))


def _extras(ctx: Context) -> dict[str, Any]:
    extras = ctx.store.extras["faxplus"]
    for key in ("outbox", "files", "hooks"):
        extras.setdefault(key, {})
    return extras


def _fax_json(fax: FaxItem, now: float) -> dict[str, Any]:
    """The CDR, with every field the SDK requires and only its enum values."""
    history = fax.timeline.history(now)
    status = str(history[-1][0])
    if status == api.STATUS_SUCCESS:
        pages = fax.pages
    elif status == api.STATUS_PARTIALLY_SENT:
        pages = fax.pages_sent if fax.pages_sent is not None else max(0, fax.pages - 1)
    else:
        pages = 0
    started, ended = history[0][1], history[-1][1]
    return {
        "id": fax.id,
        "owner_id": _UID,
        "comment": fax.comment,
        "cost": pages,
        "cost_details": {"multiplier": 1, "notification_cost": 0},
        "description": "OK" if status == api.STATUS_SUCCESS else status,
        "direction": "outgoing",
        "duration": int(ended - started),
        "file": f"{fax.id}.tiff",
        "file_name": f"fax-to-{fax.to.lstrip('+')}",
        "from": fax.src,
        "to": fax.to,
        "header": None,
        "is_read": False,
        "is_spam": False,
        "last_update": _time(ended),
        "max_retry": fax.retry.get("count"),
        "retry_delay": fax.retry.get("delay"),
        "pages": pages,
        "scheduled_time": None,
        "start_time": _time(started),
        "status": status,
        "submit_time": _time(started),
    }


def _outbox_status(item: OutboxItem, now: float) -> list[tuple[str, float]]:
    statuses = api.OUTBOX_STATUSES
    span = item.due - item.started
    changes = []
    for i, status in enumerate(statuses):
        at = item.started + span * i / len(statuses)
        if i == 0 or at <= now:
            changes.append((status, at))
    return changes


def _outbox_json(item: OutboxItem, now: float) -> dict[str, Any]:
    changes = _outbox_status(item, now)
    return {
        "id": item.id,
        "uid": _UID,
        "status": changes[-1][0],
        "src": item.src,
        "to": item.to,
        "files": item.files,
        "comment": item.comment,
        "options": item.options,
        "retry": item.options.get("retry") or {"count": 0, "delay": 0},
        "page_count": item.page_count,
        "should_enhance": bool(item.options.get("enhancement", True)),
        "ip": "127.0.0.1",
        "send_time": _time(item.started) + " +0000",
        "submit_time": _time(item.started) + " +0000",
        "last_updated_status_time": _time(changes[-1][1]),
        "status_changes": [{"at": _time(at), "status": status} for status, at in changes],
        "initiated_from": {"from_id": "", "type": ""},
        "contact_name": "",
        "designated_src": "",
        "extra_info": {},
        api.OUTBOX_FAX_IDS: item.fax_ids,
        "file_changes": [],
    }


def _completed(fax: FaxItem | None, now: float) -> FaxItem | None:
    if fax is None or fax.cancelled or fax.timeline.running(now) is not None:
        return None
    return fax


def build_router(ctx: Context) -> APIRouter:
    """The FAX.PLUS routes, closed over the shared sandbox context."""

    token = ctx.credentials["faxplus"]["token"]

    def authorize(request: Request) -> None:
        if request.headers.get("authorization") != f"Bearer {token}":
            raise _error(401, api.ERROR_INVALID_TOKEN, "The access token is missing or invalid.")

    router = APIRouter(prefix=PREFIX, dependencies=[Depends(authorize)])

    def check_user(user_id: str) -> None:
        if user_id not in (api.USER_ID, _UID):
            raise _error(404, api.ERROR_NOT_FOUND, f"User {user_id} not found.")

    @router.get("/accounts/{user_id}")
    async def get_user(user_id: str) -> dict[str, Any]:
        check_user(user_id)
        return {
            "uid": _UID,
            "account_type": "individual",
            "creation_date": "2024-01-01 00:00:00",
            "email": "sandbox@example.com",
            "status": "active",
            "name": "Sandbox",
            "account_data": {},
            "settings": {},
        }

    @router.post("/accounts/{user_id}/files")
    async def upload_file(user_id: str, request: Request) -> dict[str, str]:
        check_user(user_id)
        fmt = request.query_params.get("format")
        if fmt is not None and fmt not in ("pdf", "tiff"):
            raise _error(400, api.ERROR_INVALID_FILE, "format must be pdf or tiff.")
        form = await request.form()
        upload = form.get(api.UPLOAD_FIELD)
        if upload is None or isinstance(upload, str):
            raise _error(400, api.ERROR_INVALID_FILE, f"Missing file part {api.UPLOAD_FIELD}.")
        content = await upload.read()
        ctype = media_type(upload.content_type)
        if not content:
            raise _error(400, api.ERROR_INVALID_FILE, "The file is empty.")
        if extension(upload.filename) not in _EXTENSIONS and ctype not in DOCUMENT_TYPES:
            raise _error(400, "failed_mimetype_not_supported", "Unsupported file type.")
        path = f"/transient-{uuid.uuid4()}"
        with ctx.store.lock:
            _extras(ctx)["files"][path] = count_pages(content, ctype)
        return {"path": path}

    @router.post("/accounts/{user_id}/outbox", status_code=201)
    async def send_fax(user_id: str, request: Request) -> Response:
        check_user(user_id)
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise _error(400, "invalid_request", "The body must be a JSON object.")
        src, destinations, files, comment, options = _validate_outbox(ctx, body)
        refused = await before_accept(ctx.faults, "faxplus", destinations)
        if refused is not None:
            return refused
        now = ctx.store.now()
        with ctx.store.lock:
            known = _extras(ctx)["files"]
            pages = sum(known[path] for path in files)
            item = OutboxItem(
                id=secrets.token_hex(16),
                src=src,
                to=destinations,
                files=files,
                comment=comment,
                options=options,
                started=now,
                due=now,
                page_count=pages,
                fax_ids={},
            )
            for number in destinations:
                fax_id = secrets.token_hex(16)
                sent = ctx.store.transmit("faxplus", fax_id, number, comment["text"] or None, pages)
                segment = Segment(sent.started, sent.hold, api.OUTBOX_STATUSES, sent.outcome.code)
                ctx.store.records["faxplus"][fax_id] = FaxItem(
                    id=fax_id,
                    outbox_id=item.id,
                    src=src,
                    to=number,
                    comment=comment["text"],
                    pages=pages,
                    timeline=Timeline([segment]),
                    pages_sent=sent.outcome.pages_sent,
                    retry=dict(options.get("retry") or {}),
                )
                item.fax_ids[number] = fax_id
                item.due = max(item.due, segment.due)
                ctx.store.schedule(segment.due, "faxplus", fax_id)
            _extras(ctx)["outbox"][item.id] = item
        if ctx.faults.drop_after_accept("faxplus", destinations):
            return Dropped()
        body_out = {"ids": item.fax_ids} if body.get("return_ids") else {}
        return JSONResponse(body_out, status_code=201)

    @router.get("/accounts/{user_id}/outbox")
    async def list_outbox(user_id: str) -> dict[str, Any]:
        check_user(user_id)
        now = ctx.store.now()
        with ctx.store.lock:
            items = [i for i in _extras(ctx)["outbox"].values() if not i.cancelled and i.due > now]
            return {"records": [_outbox_json(i, now) for i in items]}

    def find_outbox(outbox_id: str) -> OutboxItem:
        item: OutboxItem | None = _extras(ctx)["outbox"].get(outbox_id)
        if item is None or item.cancelled or item.due <= ctx.store.now():
            raise _error(404, api.ERROR_NOT_FOUND, f"Outbox fax {outbox_id} not found.")
        return item

    @router.get("/accounts/{user_id}/outbox/{outbox_id}")
    async def get_outbox(user_id: str, outbox_id: str) -> dict[str, Any]:
        check_user(user_id)
        with ctx.store.lock:
            return _outbox_json(find_outbox(outbox_id), ctx.store.now())

    @router.put("/accounts/{user_id}/outbox/{outbox_id}")
    async def update_outbox(user_id: str, outbox_id: str, request: Request) -> Response:
        check_user(user_id)
        body = await request.json()
        text = body.get("comment") if isinstance(body, dict) else None
        if not isinstance(text, str):
            raise _error(400, "invalid_request", "comment must be a string.")
        with ctx.store.lock:
            item = find_outbox(outbox_id)
            item.comment = {**item.comment, "text": text}
            for fax_id in item.fax_ids.values():
                ctx.store.records["faxplus"][fax_id].comment = text
        return Response(status_code=204)

    @router.delete("/accounts/{user_id}/outbox/{outbox_id}")
    async def delete_outbox(user_id: str, outbox_id: str) -> Response:
        """Cancel: the item leaves the outbox and no fax record is ever created."""
        check_user(user_id)
        now = ctx.store.now()
        with ctx.store.lock:
            item = find_outbox(outbox_id)
            item.cancelled = True
            for fax_id in item.fax_ids.values():
                fax = ctx.store.records["faxplus"][fax_id]
                fax.cancelled = True
                fax.timeline.stop(now)
        return Response(status_code=204)

    @router.get("/accounts/{user_id}/faxes")
    async def list_faxes(user_id: str, request: Request) -> dict[str, Any]:
        check_user(user_id)
        query = request.query_params
        category = query.get("category")
        if category not in (None, "inbox", "sent", "spam"):
            raise _error(400, "invalid_request", "category must be inbox, sent or spam.")
        limit = _int_param(query.get("limit"), 50, 1, 50, "limit")
        offset = _int_param(query.get("offset"), 0, 0, None, "offset")
        sort_by = query.get("sort_by", "date")
        order = query.get("order", "desc")
        if sort_by not in _SORT_KEYS or order not in ("asc", "desc"):
            raise _error(400, "invalid_request", "Bad sort_by or order.")
        now = ctx.store.now()
        with ctx.store.lock:
            records = [
                _fax_json(fax, now)
                for fax in ctx.store.records["faxplus"].values()
                if _completed(fax, now) and category in (None, "sent")
            ]
        after, before = query.get("after"), query.get("before")
        records = [
            r
            for r in records
            if (after is None or r["submit_time"] >= after)
            and (before is None or r["submit_time"] <= before)
        ]
        key = "submit_time" if sort_by == "date" else sort_by
        records.sort(key=lambda r: (r[key], r["id"]), reverse=order == "desc")
        return {"data": {"records": records[offset : offset + limit]}}

    @router.get("/accounts/{user_id}/faxes/{fax_id}")
    async def get_fax(user_id: str, fax_id: str) -> dict[str, Any]:
        check_user(user_id)
        now = ctx.store.now()
        with ctx.store.lock:
            fax = _completed(ctx.store.records["faxplus"].get(fax_id), now)
            if fax is None:
                raise _error(404, api.ERROR_NOT_FOUND, f"Fax {fax_id} not found.")
            return _fax_json(fax, now)

    @router.post("/hooks", status_code=201)
    async def create_hook(request: Request) -> dict[str, str]:
        body = await request.json()
        target = body.get("target") if isinstance(body, dict) else None
        event = body.get("event") if isinstance(body, dict) else None
        if not isinstance(target, str) or not target.startswith(("http://", "https://")):
            raise _error(400, "invalid_request", "target must be an http(s) URL.")
        if event not in ("fax_sent", "fax_received"):
            raise _error(400, "invalid_request", "event must be fax_sent or fax_received.")
        hook_id = secrets.token_hex(12)
        with ctx.store.lock:
            _extras(ctx)["hooks"][hook_id] = {"id": hook_id, "target": target, "event": event}
        return {"id": hook_id}

    @router.get("/hooks")
    async def list_hooks(event: str | None = None) -> dict[str, Any]:
        with ctx.store.lock:
            hooks = list(_extras(ctx)["hooks"].values())
        return {"data": [h for h in hooks if event is None or h["event"] == event]}

    @router.delete("/hooks/{hook_id}")
    async def delete_hook(hook_id: str) -> Response:
        with ctx.store.lock:
            if _extras(ctx)["hooks"].pop(hook_id, None) is None:
                raise _error(404, api.ERROR_NOT_FOUND, f"Hook {hook_id} not found.")
        return Response(status_code=204)

    return router


def _int_param(raw: str | None, default: int, low: int, high: int | None, name: str) -> int:
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if value < low or (high is not None and value > high):
        raise _error(400, "invalid_request", f"{name} is out of range.")
    return value


def _validate_outbox(
    ctx: Context, body: dict[str, Any]
) -> tuple[str, list[str], list[str], dict[str, Any], dict[str, Any]]:
    """The outbox payload's checks, answered with FAX.PLUS error codes."""
    src = body.get("from")
    if not isinstance(src, str) or not all(_FROM.match(s.strip()) for s in src.split(",")):
        raise _error(400, "invalid_from", "from must be one of your numbers or no_number.")
    to = body.get("to")
    if not isinstance(to, list) or not to:
        raise _error(400, "invalid_request", "to must be a non-empty list of numbers.")
    if len(to) > api.MAX_DESTINATIONS:
        raise _error(400, api.ERROR_TOO_MANY_DESTINATIONS, "At most 4000 destinations.")
    destinations: list[str] = []
    for number in to:
        normalized = normalize_number(number) if isinstance(number, str) else None
        if normalized is None or not number.startswith("+"):
            raise _error(400, api.ERROR_INVALID_NUMBER, f"{number!r} is not an E.164 number.")
        if normalized not in destinations:
            destinations.append(normalized)
    files = body.get("files")
    if not isinstance(files, list) or not files:
        raise _error(400, "invalid_request", "files must be a non-empty list of file paths.")
    if len(files) > api.MAX_FILES:
        raise _error(400, api.ERROR_TOO_MANY_FILES, "At most 10 files per fax.")
    with ctx.store.lock:
        known = _extras(ctx)["files"]
        missing = [f for f in files if f not in known]
    if missing:
        raise _error(400, api.ERROR_INVALID_FILE, f"Unknown files: {missing}.")
    comment = body.get("comment", {"text": "", "tags": []})
    if not isinstance(comment, dict):
        raise _error(400, "invalid_request", "comment is not of type 'object'.")
    comment = {"text": str(comment.get("text") or ""), "tags": list(comment.get("tags") or [])}
    options = body.get("options") or {}
    if not isinstance(options, dict):
        raise _error(400, "invalid_request", "options is not of type 'object'.")
    retry = options.get("retry") or {}
    count, delay = retry.get("count", 0), retry.get("delay", 0)
    if not (
        isinstance(count, int) and 0 <= count <= 3 and isinstance(delay, int) and 0 <= delay <= 30
    ):
        raise _error(400, "invalid_request", "retry count must be 0..3 and delay 0..30.")
    return src, destinations, files, comment, options


def calls(ctx: Context) -> list[Call]:
    """One call per destination fax: its single segment, cut short by a cancel."""
    with ctx.store.lock:
        faxes: list[FaxItem] = list(ctx.store.records["faxplus"].values())
        return [
            call
            for fax in faxes
            for call in segment_calls(
                "faxplus", fax.id, fax.comment or None, fax.to, fax.timeline.entries
            )
        ]


def control_router(ctx: Context) -> None:
    """None: hooks are registered through the FAX.PLUS API itself."""


def notifier(ctx: Context) -> Notifier:
    """The ``fax_sent`` hook deliveries for a fax that just completed."""

    def deliveries(fax_id: str) -> list[Delivery]:
        now = ctx.store.now()
        with ctx.store.lock:
            fax = _completed(ctx.store.records["faxplus"].get(fax_id), now)
            hooks = [h for h in _extras(ctx)["hooks"].values() if h["event"] == "fax_sent"]
            if fax is None or not hooks:
                return []
            record = _fax_json(fax, now)
        data = {
            "id": fax_id,
            "uid": _UID,
            "pages": record["pages"],
            "from": record["from"],
            "to": record["to"],
            "start_time": record["start_time"],
            "file": record["file"],
            "file_name": record["file_name"],
            "status": record["status"],
            "cost": record["cost"],
        }
        return [
            Delivery(
                "faxplus",
                fax_id,
                hook["target"],
                compact_json(
                    {
                        "hook": {
                            "id": fax_id,
                            "event": api.WEBHOOK_EVENT_FAX_SENT,
                            "event_time": _time(now),
                            "target": hook["target"],
                        },
                        "data": data,
                    }
                ),
            )
            for hook in hooks
        ]

    return deliveries
