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

from dispatcher import operations, queries, selection
from dispatcher.cli._app import (
    EXIT_FAILURE,
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
from dispatcher.queries import Search
from dispatcher.submission import FaxRequest, submit
from dispatcher.tenants import Caller
from dispatcher.validation import normalize_number

__all__ = ["alter", "attempts", "list_", "send", "status"]

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


#: The filters ``list`` and every action on a filter share.
StateOption = Annotated[str | None, typer.Option(help="Only jobs in this state.")]
ProviderOption = Annotated[str | None, typer.Option(help="Only this provider's jobs.")]
BatchOption = Annotated[str | None, typer.Option(help="Only this batch's jobs.")]
SinceOption = Annotated[
    datetime | None, typer.Option(help="Created at or after (local time if no zone).")
]
UntilOption = Annotated[datetime | None, typer.Option(help="Created before.")]


def _local(moment: datetime | None) -> datetime | None:
    """A time from the command line; without a zone it is the machine's local time."""
    return moment.astimezone() if moment is not None else None


@app.command("list")
def list_(
    state: StateOption = None,
    provider: ProviderOption = None,
    priority: Annotated[str | None, typer.Option(help="urgent, normal or bulk.")] = None,
    to: Annotated[str | None, typer.Option(help="Only faxes to this number (E.164).")] = None,
    key: Annotated[str | None, typer.Option(help="The idempotency key it was sent with.")] = None,
    batch: BatchOption = None,
    metadata: Annotated[
        list[str] | None, typer.Option(help="key=value in its metadata (repeatable).")
    ] = None,
    since: SinceOption = None,
    until: UntilOption = None,
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
            since=_local(since),
            until=_local(until),
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


def _act_on_many(action: str, search: Search, yes: bool, as_json: bool) -> None:
    """Count what the search matches, ask, then act on it chunk by chunk."""
    with errors():
        matching = selection.count_matching(action, search)
    if not as_json:
        console.print(f"{matching} jobs match")
    if matching and not yes and not typer.confirm(f"{action} {matching} jobs?"):
        raise fail("nothing done", EXIT_FAILURE)
    with errors():
        result = selection.act_on_matching(
            action,
            search,
            _ACTOR,
            progress=None if as_json else lambda r: console.print(f"{action}: {r.acted} done"),
        )
    if as_json:
        print_json({"matched": matching, "acted": result.acted, "refused": result.refused})
        return
    console.print(f"{action}: {result.acted} of {matching} jobs")
    for why, count in result.refused.items():
        console.print(f"  {count} left: {why}")


def _action_command(action: str, summary: str) -> None:
    """``faxctl <action> ID``, or ``faxctl <action> --state ... --provider ...`` for every
    job that matches (counted and confirmed first; ``--yes`` for scripts)."""

    def command(
        job_id: Annotated[
            str | None, typer.Argument(help="One job's id; leave out to give a filter.")
        ] = None,
        state: StateOption = None,
        provider: ProviderOption = None,
        remediation: Annotated[
            str | None, typer.Option(help="Of their last status: wait_and_retry, ...")
        ] = None,
        family: Annotated[
            str | None, typer.Option(help="Code family of their last status: busy, ...")
        ] = None,
        batch: BatchOption = None,
        tenant: Annotated[str | None, typer.Option(help="Only this tenant's jobs.")] = None,
        since: SinceOption = None,
        until: UntilOption = None,
        yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
        as_json: JsonOption = False,
    ) -> None:
        search = Search(
            state=state,
            provider=provider,
            remediation=remediation,
            family=family,
            batch_id=batch,
            tenant_id=tenant,
            since=_local(since),
            until=_local(until),
        )
        if job_id is not None:
            if search != Search():
                raise fail("give a job id or a filter, not both")
            _operator(selection.ACTIONS[action], job_id, as_json)
        elif search == Search():
            raise fail("give a job id, or a filter (--state, --provider, --batch, ...)")
        else:
            _act_on_many(action, search, yes, as_json)

    command.__doc__ = f"{summary} One job by id, or every job a filter matches."
    app.command(action)(command)


_action_command("cancel", "Cancel (at the provider too, if the fax is in progress).")
_action_command("hold", "Keep pending jobs from being sent until resumed.")
_action_command("resume", "Send held jobs again (after an operator hold, or a fix).")
_action_command("retry", "Give failed jobs a fresh attempt budget and send them again.")
_action_command("push", "Send pending jobs now (their send time and any wait go).")


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
