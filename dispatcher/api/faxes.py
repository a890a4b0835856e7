"""``/v1/faxes``: submit a fax, read it back, and act on it as an operator would.

Routes are plain ``def`` functions: FastAPI runs them in its threadpool, so the blocking
database and broker calls never stall the event loop.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Header, Path, Query, Response, UploadFile

from dispatcher import operations, queries, retention
from dispatcher.api.auth import CallerDep, require_caller
from dispatcher.api.cursor import page_of
from dispatcher.api.errors import ERROR_RESPONSES
from dispatcher.errors import JobNotFound, ValidationError
from dispatcher.lanes import Priority, parse_priority
from dispatcher.lifecycle import JobState
from dispatcher.providers.registry import PROVIDERS, provider_name
from dispatcher.queries import Search
from dispatcher.schemas import Attempt, Event, Fax, FaxChanges, FaxPage
from dispatcher.store.models import Job
from dispatcher.submission import FaxRequest, submit
from dispatcher.tenants import admit
from dispatcher.text import CONTROL
from dispatcher.validation import normalize_number

__all__ = [
    "PROVIDER_ENUM",
    "alter_fax",
    "create_fax",
    "get_attempts",
    "get_events",
    "get_fax",
    "list_faxes",
    "purge_fax_data",
    "router",
    "upload_name",
]

router = APIRouter(
    prefix="/v1/faxes",
    tags=["faxes"],
    dependencies=[Depends(require_caller)],
    responses=ERROR_RESPONSES,
)

_JOB_ID = re.compile(r"[0-9a-f]{32}")
MAX_PAGE = 500
#: The OpenAPI enum of a provider field (checked against the registry).
PROVIDER_ENUM: dict[str, Any] = {"enum": list(PROVIDERS)}
LANES: dict[str, Any] = {"enum": [lane.value for lane in Priority]}


def _job_id(job_id: Annotated[str, Path(description="The id returned on submit.")]) -> str:
    """Anything that is not one of our ids cannot name a job: 404 before any query."""
    if not _JOB_ID.fullmatch(job_id):
        raise JobNotFound(job_id[:64])
    return job_id


JobId = Annotated[str, Depends(_job_id)]


def _time(field: str, raw: str | None) -> datetime | None:
    if raw is None or not raw.strip():
        return None
    try:
        value = datetime.fromisoformat(raw.strip())
    except ValueError:
        raise ValidationError(
            field, "must be an ISO 8601 time, e.g. 2030-01-31T09:00:00Z"
        ) from None
    if value.tzinfo is None:
        raise ValidationError(field, "must include a time zone (Z or +hh:mm)")
    return value


def _object(field: str, raw: str | None) -> dict[str, Any]:
    if raw is None or not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        raise ValidationError(field, "must be a JSON object") from None
    if not isinstance(value, dict):
        raise ValidationError(field, "must be a JSON object")
    return value


def _idempotency_key(raw: str | None) -> str | None:
    if raw is None or not raw.strip():
        return None
    key = raw.strip()
    if len(key) > 255 or CONTROL.search(key):
        raise ValidationError("Idempotency-Key", "at most 255 printable characters")
    return key


def upload_name(index: int, upload: UploadFile) -> str:
    """An uploaded file's name, with no control characters (it reaches logs and views)."""
    return CONTROL.sub("", upload.filename or "") or f"document-{index}"


def _document(index: int, upload: UploadFile) -> tuple[str, bytes]:
    return upload_name(index, upload), upload.file.read()


@router.post("", status_code=201, response_model=Fax, summary="Submit a fax")
def create_fax(
    caller: CallerDep,
    response: Response,
    to: Annotated[str, Form(description="Destination in E.164, e.g. +12025550100.")],
    documents: Annotated[list[UploadFile], File(description="PDF, TIFF, PNG, JPEG, ...")],
    provider: Annotated[
        str | None, Form(description="Default: the route's.", json_schema_extra=PROVIDER_ENUM)
    ] = None,
    send_at: Annotated[str | None, Form(description="ISO 8601 time with a zone.")] = None,
    deadline: Annotated[
        str | None, Form(description="ISO 8601 time with a zone; no attempt starts after it.")
    ] = None,
    metadata: Annotated[str | None, Form(description="A JSON object of strings.")] = None,
    options: Annotated[
        str | None, Form(description='JSON: {"max_attempts": 1-20, "retry_delay": seconds}')
    ] = None,
    priority: Annotated[
        str | None,
        Form(description="Its lane: urgent, normal (default) or bulk.", json_schema_extra=LANES),
    ] = None,
    callback_url: Annotated[
        str | None, Form(description="Where this fax's events are posted (https).")
    ] = None,
    idempotency_key: Annotated[
        str | None, Header(alias="Idempotency-Key", description="Makes a retry safe.")
    ] = None,
) -> dict[str, Any]:
    """201 with the new job; 200 with the existing job when the key was seen with the same
    content; 409 when the key was used for different content; 429 over the tenant's rate
    or daily quota."""
    admit(caller, 1)
    request = FaxRequest(
        to=to,
        documents=[_document(i, d) for i, d in enumerate(documents)],
        provider=provider or None,
        idempotency_key=_idempotency_key(idempotency_key),
        send_at=_time("send_at", send_at),
        metadata=_object("metadata", metadata),
        options=_object("options", options),
        deadline=_time("deadline", deadline),
        priority=priority or None,
        callback_url=callback_url or None,
    )
    result = submit(request, tenant_id=caller.tenant_id)
    response.headers["Location"] = f"{router.prefix}/{result.job_id}"
    if result.row is not None:
        return queries.new_job_view(result.row)
    response.status_code = 200
    return queries.get_job(result.job_id, caller)


@router.get("", response_model=FaxPage, summary="Search faxes, newest first")
def list_faxes(
    caller: CallerDep,
    state: JobState | None = None,
    provider: Annotated[str | None, Query(json_schema_extra=PROVIDER_ENUM)] = None,
    priority: Annotated[str | None, Query(json_schema_extra=LANES)] = None,
    to: Annotated[str | None, Query(description="The destination (E.164).")] = None,
    idempotency_key: Annotated[str | None, Query(description="The key it was sent with.")] = None,
    batch: Annotated[str | None, Query(description="The batch it came in.")] = None,
    metadata: Annotated[
        list[str] | None,
        Query(description="`key=value`, repeatable: each pair must be in its metadata."),
    ] = None,
    since: Annotated[str | None, Query(description="Created at or after (ISO 8601).")] = None,
    until: Annotated[str | None, Query(description="Created before (ISO 8601).")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    before: Annotated[str | None, Query(description="The previous page's `next`.")] = None,
) -> dict[str, Any]:
    """A page of the caller's jobs that match every filter given, and the cursor of the
    next page (null on the last one)."""
    if before is not None and not _JOB_ID.fullmatch(before):
        raise ValidationError("before", "not a cursor from a previous page")
    search = Search(
        state=state.value if state else None,
        provider=provider_name(provider) if provider else None,
        priority=parse_priority(priority),
        to=normalize_number(to) if to else None,
        idempotency_key=idempotency_key or None,
        batch_id=batch or None,
        since=_time("since", since),
        until=_time("until", until),
        metadata=queries.metadata_pairs(metadata or []),
    )
    try:
        items = queries.list_jobs(search, caller, limit=limit + 1, before=before)
    except JobNotFound:
        raise ValidationError("before", "not a cursor from a previous page") from None
    return page_of(items, limit)


@router.get("/{job_id}", response_model=Fax, summary="Read one fax")
def get_fax(job_id: JobId, caller: CallerDep) -> dict[str, Any]:
    return queries.get_job(job_id, caller)


@router.get(
    "/{job_id}/attempts", response_model=list[Attempt], summary="Every attempt of a fax, in order"
)
def get_attempts(job_id: JobId, caller: CallerDep) -> list[dict[str, Any]]:
    return queries.attempts(job_id, caller)


@router.get(
    "/{job_id}/events", response_model=list[Event], summary="Every status seen for a fax, in order"
)
def get_events(job_id: JobId, caller: CallerDep) -> list[dict[str, Any]]:
    return queries.events(job_id, caller)


def _action(name: str, act: Callable[..., Job], summary: str) -> None:
    """One ``POST /{job_id}/<name>`` route: 409 when the job's state does not allow it.
    The job's events record who acted."""

    def route(job_id: JobId, caller: CallerDep) -> dict[str, Any]:
        act(job_id, caller=caller)
        return queries.get_job(job_id, caller)

    route.__name__ = f"{name}_fax"
    router.post(f"/{{job_id}}/{name}", response_model=Fax, summary=summary)(route)


@router.delete(
    "/{job_id}/data",
    response_model=Fax,
    summary="Purge an ended fax's documents, number, metadata and raw payloads now",
)
def purge_fax_data(job_id: JobId, caller: CallerDep) -> dict[str, Any]:
    """What retention would purge later, at once; the record (state, attempts, codes,
    times) stays. 409 while the fax has not ended."""
    retention.purge_job(job_id, caller)
    return queries.get_job(job_id, caller)


_action("cancel", operations.cancel, "Cancel a fax (at the provider too, if in progress)")
_action("hold", operations.hold, "Keep a pending fax from being sent")
_action("resume", operations.resume, "Send a held fax again")
_action("retry", operations.retry, "Give a failed fax a fresh attempt budget")
_action("push", operations.push, "Send a pending fax now")


@router.patch("/{job_id}", response_model=Fax, summary="Change a pending or held fax")
def alter_fax(
    job_id: JobId, caller: CallerDep, changes: FaxChanges | None = None
) -> dict[str, Any]:
    """Each value given is checked as at submit; the job's events record who changed what
    from what. 409 while the fax is being sent or in progress."""
    changes = changes or FaxChanges()
    operations.alter(
        job_id,
        operations.Alteration(
            changes.to,
            _time("send_at", changes.send_at),
            _time("deadline", changes.deadline),
            changes.priority,
            changes.provider,
        ),
        caller,
    )
    return queries.get_job(job_id, caller)
