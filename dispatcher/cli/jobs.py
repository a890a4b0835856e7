"""``faxctl send|status|attempts|list|cancel|hold|resume|retry|push|alter``: one fax at a
time."""

from __future__ import annotations

import getpass
import socket
from collections.abc import Callable
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import typer

from dispatcher import operations, queries
from dispatcher.cli._app import (
    EXIT_INVALID,
    JsonOption,
    app,
    console,
    errors,
    fail,
    print_json,
    print_rows,
)
from dispatcher.lanes import parse_priority
from dispatcher.providers.registry import PROVIDERS
from dispatcher.submission import FaxRequest, submit
from dispatcher.tenants import Caller
from dispatcher.validation import normalize_number

__all__ = [
    "alter",
    "attempts",
    "cancel",
    "hold",
    "list_",
    "push",
    "resume",
    "retry",
    "send",
    "status",
]

JobId = Annotated[str, typer.Argument(help="The job id faxctl send printed.")]


@app.command()
def send(
    to: Annotated[str, typer.Argument(help="Destination in E.164, e.g. +12025550100.")],
    documents: Annotated[list[Path], typer.Argument(help="PDF, TIFF, PNG, JPEG or text files.")],
    provider: Annotated[
        str | None, typer.Option(help=f"One of {', '.join(PROVIDERS)}; default: the route.")
    ] = None,
    idempotency_key: Annotated[str | None, typer.Option(help="Makes a re-run safe.")] = None,
    send_at: Annotated[
        datetime | None, typer.Option(help="ISO time with zone; send no earlier.")
    ] = None,
    deadline: Annotated[
        datetime | None, typer.Option(help="ISO time with zone; no attempt starts after it.")
    ] = None,
    priority: Annotated[str | None, typer.Option(help="urgent, normal (default) or bulk.")] = None,
    callback_url: Annotated[
        str | None, typer.Option(help="Where its events are posted (needs FAX_CALLBACKS__SECRET).")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Submit one fax; prints its job id."""
    blobs = []
    for path in documents:
        if not path.is_file():
            raise fail(f"{path}: no such file", EXIT_INVALID)
        blobs.append((path.name, path.read_bytes()))
    with errors():
        result = submit(
            FaxRequest(
                to=to,
                documents=blobs,
                provider=provider,
                idempotency_key=idempotency_key,
                send_at=send_at,
                deadline=deadline,
                priority=priority,
                callback_url=callback_url,
            )
        )
    if as_json:
        print_json({"id": result.job_id, "created": result.created})
    else:
        console.print(result.job_id if result.created else f"{result.job_id} (already submitted)")


@app.command()
def status(job_id: JobId, as_json: JsonOption = False) -> None:
    """A job's state, last provider code and next step."""
    with errors():
        view = queries.get_job(job_id)
    if as_json:
        print_json(view)
        return
    for key in (
        "id",
        "state",
        "provider",
        "to",
        "attempts",
        "last_code",
        "remediation",
        "next_attempt_at",
        "next_poll_at",
        "reason",
    ):
        if view.get(key) is not None:
            console.print(f"[bold]{key:>16}[/bold]  {view[key]}", highlight=False)


@app.command()
def attempts(job_id: JobId, as_json: JsonOption = False) -> None:
    """Every attempt of a job, in order, with the provider's code for each."""
    with errors():
        rows = queries.attempts(job_id)
    if as_json:
        print_json(rows)
        return
    print_rows(
        rows,
        (
            "number",
            "kind",
            "provider",
            "provider_fax_id",
            "code",
            "remediation",
            "started_at",
            "finished_at",
            "pages_sent",
            "error",
        ),
        title=f"attempts of {job_id}",
    )


@app.command("list")
def list_(
    state: Annotated[str | None, typer.Option(help="Only jobs in this state.")] = None,
    provider: Annotated[str | None, typer.Option(help="Only this provider's jobs.")] = None,
    priority: Annotated[str | None, typer.Option(help="urgent, normal or bulk.")] = None,
    to: Annotated[str | None, typer.Option(help="Only faxes to this number (E.164).")] = None,
    key: Annotated[str | None, typer.Option(help="The idempotency key it was sent with.")] = None,
    batch: Annotated[str | None, typer.Option(help="Only this batch's jobs.")] = None,
    metadata: Annotated[
        list[str] | None, typer.Option(help="key=value in its metadata (repeatable).")
    ] = None,
    since: Annotated[
        datetime | None, typer.Option(help="Created at or after (ISO time with zone).")
    ] = None,
    until: Annotated[datetime | None, typer.Option(help="Created before.")] = None,
    before: Annotated[str | None, typer.Option(help="The last id of the previous page.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
    as_json: JsonOption = False,
) -> None:
    """The newest jobs that match every filter given."""
    with errors():
        search = queries.Search(
            state=state,
            provider=provider,
            priority=parse_priority(priority),
            to=normalize_number(to) if to else None,
            idempotency_key=key,
            batch_id=batch,
            since=since,
            until=until,
            metadata=queries.metadata_pairs(metadata or []),
        )
        rows = queries.list_jobs(search, limit=limit, before=before)
    if as_json:
        print_json(rows)
        return
    print_rows(rows, ("id", "state", "provider", "to", "attempts", "last_code", "reason"))


#: Who an action from this command line is recorded as, in the job's events.
_ACTOR = Caller(None, f"faxctl:{getpass.getuser()}@{socket.gethostname()}"[:64])


def _operator(action: Callable[..., Any], job_id: str, as_json: bool) -> None:
    with errors():
        action(job_id, caller=_ACTOR)
        view = queries.get_job(job_id)
    if as_json:
        print_json(view)
    else:
        console.print(f"{job_id}: {view['state']}")


@app.command()
def cancel(job_id: JobId, as_json: JsonOption = False) -> None:
    """Cancel a job (at the provider too, if it is being faxed)."""
    _operator(operations.cancel, job_id, as_json)


@app.command()
def hold(job_id: JobId, as_json: JsonOption = False) -> None:
    """Keep a pending job from being sent until resumed."""
    _operator(operations.hold, job_id, as_json)


@app.command()
def resume(job_id: JobId, as_json: JsonOption = False) -> None:
    """Send a held job again (after adding credit, or after an operator hold)."""
    _operator(operations.resume, job_id, as_json)


@app.command()
def retry(job_id: JobId, as_json: JsonOption = False) -> None:
    """Give a failed job a fresh attempt budget and send it again."""
    _operator(operations.retry, job_id, as_json)


@app.command()
def push(job_id: JobId, as_json: JsonOption = False) -> None:
    """Send a pending job now (its send time and any wait before its next attempt go)."""
    _operator(operations.push, job_id, as_json)


@app.command()
def alter(
    job_id: JobId,
    to: Annotated[str | None, typer.Option(help="A new destination (E.164).")] = None,
    send_at: Annotated[
        datetime | None, typer.Option(help="ISO time with zone; send no earlier.")
    ] = None,
    deadline: Annotated[
        datetime | None, typer.Option(help="ISO time with zone; no attempt starts after it.")
    ] = None,
    priority: Annotated[str | None, typer.Option(help="urgent, normal or bulk.")] = None,
    provider: Annotated[str | None, typer.Option(help=f"One of {', '.join(PROVIDERS)}.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Change a pending or held job, each value checked as at submit; its events record
    who changed what from what."""
    changes = operations.Alteration(to, send_at, deadline, priority, provider)
    _operator(partial(operations.alter, changes=changes), job_id, as_json)
