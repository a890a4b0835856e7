"""``faxctl up`` and ``faxctl demo``: the whole local stack in the foreground."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer
from rich.live import Live
from rich.table import Table

from config.settings import get_settings
from dispatcher.cli._app import EXIT_FAILURE, app, console, print_json
from dispatcher.client import FaxClient
from dispatcher.demo import DemoFax, sample_batch, sample_document
from dispatcher.schemas import Fax
from dispatcher.stack import LocalStack

__all__ = ["demo", "up"]

DEMO_TIME_SCALE = "0.02"


class _Stop(Exception):
    """Raised from the SIGTERM handler so the stack stops as on Ctrl-C."""


def _raise_stop(*_: Any) -> None:
    raise _Stop


@contextmanager
def _running_stack(concurrency: int, processes: int = 1) -> Iterator[LocalStack]:
    stack = LocalStack(get_settings(), concurrency=concurrency, processes=processes)
    previous = signal.signal(signal.SIGTERM, _raise_stop)
    try:
        with console.status("starting the stack..."):
            stack.start()
        yield stack
    finally:
        with console.status("stopping..."):
            stack.stop()
        signal.signal(signal.SIGTERM, previous)


def _print_where(stack: LocalStack) -> None:
    table = Table(title="fax-dispatcher is running", show_header=False)
    for name, where in stack.describe().items():
        table.add_row(name, where.split("@")[-1] if name == "database" else where)
    table.add_row("state", str(stack.home / "stack.json"))
    table.add_row("credentials", str(stack.home / "credentials.json"))
    table.add_row("logs", str(stack.home / "logs"))
    console.print(table)


@app.command()
def up(
    concurrency: Annotated[int, typer.Option(help="Worker threads, per worker process.")] = 16,
    processes: Annotated[
        int, typer.Option(min=1, help="Worker processes; one per core uses every core.")
    ] = 1,
) -> None:
    """Run broker, database, sandbox, worker, beat, API and Flower until Ctrl-C or SIGTERM.

    A process that dies is started again (after 1 s, doubling up to 30 s if it keeps dying).
    """
    try:
        with _running_stack(concurrency, processes) as stack:
            _print_where(stack)
            console.print("Ctrl-C to stop.")
            while True:
                for event in stack.supervise():
                    console.print(f"{time.strftime('%H:%M:%S')} {event}", highlight=False)
                time.sleep(0.5)
    except (KeyboardInterrupt, _Stop):
        console.print("stopped.")


def _table(rows: list[tuple[DemoFax, Fax]]) -> Table:
    table = Table(title="demo batch")
    for column in ("provider", "scenario", "state", "attempts", "last code", "reason"):
        table.add_column(column)
    for fax, job in rows:
        done = job.state == fax.expected
        state = f"[green]{job.state}[/green]" if done else job.state
        table.add_row(
            fax.provider,
            fax.scenario,
            state,
            str(job.attempts),
            job.last_code or "",
            (job.reason or "")[:60],
        )
    return table


def _run_batch(api: FaxClient, timeout: float) -> list[tuple[DemoFax, Fax]]:
    """Send the sample batch through the stack's HTTP API, as a service on another host
    would, and follow it live."""
    document = sample_document()
    batch = [
        (
            fax,
            api.submit(
                fax.to, [("statement.pdf", document)], provider=fax.provider, options=fax.options
            ).id,
        )
        for fax in sample_batch()
    ]
    deadline = time.monotonic() + timeout
    with Live(console=console, refresh_per_second=4) as live:
        while True:
            rows = [(fax, api.get(job_id)) for fax, job_id in batch]
            live.update(_table(rows))
            if all(job.state in {"succeeded", "failed", "cancelled"} for _, job in rows):
                return rows
            if time.monotonic() > deadline:
                return rows
            time.sleep(0.25)


@app.command()
def demo(
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the batch.")] = 300.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Start the stack, send a sample batch through the sandbox, and show it live."""
    os.environ.setdefault("FAX_TIME_SCALE", DEMO_TIME_SCALE)
    get_settings.cache_clear()
    try:
        with _running_stack(concurrency=16) as stack, stack.api_client() as api:
            _print_where(stack)
            rows = _run_batch(api, timeout)
    except (KeyboardInterrupt, _Stop):
        console.print("stopped.")
        raise typer.Exit(EXIT_FAILURE) from None
    missed = [(fax, job) for fax, job in rows if job.state != fax.expected]
    summary: dict[str, Any] = {
        "jobs": len(rows),
        "as_expected": len(rows) - len(missed),
        "missed": [
            {
                "provider": f.provider,
                "scenario": f.scenario,
                "expected": f.expected,
                "state": j.state,
                "reason": j.reason,
            }
            for f, j in missed
        ],
    }
    if as_json:
        print_json(summary)
    else:
        console.print(
            f"{summary['as_expected']} of {len(rows)} jobs ended where their scenario leads."
        )
        for item in summary["missed"]:
            console.print(
                f"[red]{item['provider']} {item['scenario']}[/red]: expected "
                f"{item['expected']}, got {item['state']} ({item['reason']})"
            )
    if missed:
        raise typer.Exit(EXIT_FAILURE)
