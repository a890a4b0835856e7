"""``faxctl providers``: each provider's breaker, pause and limits; ``pause`` and
``resume`` stop and restart new sends through one provider for every worker."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from dispatcher import pauses
from dispatcher.cli._app import JsonOption, app, console, errors, fail, print_json
from dispatcher.provider_status import provider_rows
from dispatcher.providers.registry import provider_name

__all__ = ["pause", "resume", "show"]

providers_app = typer.Typer(
    help="Each provider's circuit breaker, pause and rate limits (shared by all workers); "
    "pause or resume one.",
    invoke_without_command=True,
)
app.add_typer(providers_app, name="providers")

_COLUMNS = (
    "provider",
    "endpoint",
    "circuit",
    "consecutive_failures",
    "probe_in_seconds",
    "paused_reason",
    "next_credit_probe_at",
    "sends_per_second",
    "status_reads_per_minute",
)


@providers_app.callback()
def show(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Each provider's circuit breaker state, pause and rate limits."""
    if ctx.invoked_subcommand is not None:
        return
    rows = provider_rows()
    if as_json:
        print_json(rows)
        return
    table = Table(title="providers")
    for column in _COLUMNS:
        table.add_column("paused" if column == "paused_reason" else column.replace("_", " "))
    for row in rows:
        cells = {c: "" if row[c] is None else str(row[c]) for c in _COLUMNS}
        if row["circuit"] != "closed":
            cells["circuit"] = f"[red]{row['circuit']}[/red]"
        if row["paused"]:
            cells["paused_reason"] = f"[red]{row['paused_reason']}[/red] (by {row['paused_by']})"
        table.add_row(*cells.values())
    console.print(table)


@providers_app.command()
def pause(
    name: Annotated[str, typer.Argument(help="The provider to pause.")],
    reason: Annotated[str, typer.Option(help="Shown on every waiting job.")] = "paused by an "
    "operator",
) -> None:
    """Stop new sends through a provider, on every worker: its jobs wait as pending, with
    the reason. Faxes already in progress are still followed."""
    with errors():
        pauses.pause(provider_name(name), reason, "faxctl")
    console.print(f"{name} paused: {reason}")


@providers_app.command()
def resume(name: Annotated[str, typer.Argument(help="The provider to resume.")]) -> None:
    """Send through a paused provider again (its waiting jobs go at the next tick)."""
    with errors():
        resumed = pauses.resume(provider_name(name))
    if not resumed:
        raise fail(f"{name} is not paused")
    console.print(f"{name} resumed")
