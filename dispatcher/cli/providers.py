"""``faxctl providers``: each provider's circuit breaker, limits and where it points."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from config.settings import get_settings
from dispatcher import guards
from dispatcher.cli._app import JsonOption, app, console, print_json
from dispatcher.providers.registry import PROVIDERS, definition
from dispatcher.routing import current_routing

__all__ = ["providers"]


def _where(provider: str) -> str:
    settings = get_settings()
    own = definition(provider).load_settings()
    if own.configured():
        return own.base_url
    return f"sandbox at {settings.sandbox_url}" if settings.sandbox_url else "not configured"


def _row(provider: str) -> dict[str, Any]:
    status = guards.breaker(provider).status()
    limits = current_routing().limits.get(provider)
    return {
        "provider": provider,
        "endpoint": _where(provider),
        "circuit": status.state.value,
        "consecutive_failures": status.failures,
        "probe_in_seconds": round(status.retry_in, 1),
        "sends_per_second": limits.sends_per_second if limits else None,
        "status_reads_per_minute": limits.status_reads_per_minute if limits else None,
    }


@app.command()
def providers(as_json: JsonOption = False) -> None:
    """Each provider's circuit breaker state and rate limits (shared by all workers)."""
    rows = [_row(provider) for provider in PROVIDERS]
    if as_json:
        print_json(rows)
        return
    table = Table(title="providers")
    for column in rows[0]:
        table.add_column(column.replace("_", " "))
    for row in rows:
        circuit = row["circuit"]
        row = {**row, "circuit": circuit if circuit == "closed" else f"[red]{circuit}[/red]"}
        table.add_row(*("" if v is None else str(v) for v in row.values()))
    console.print(table)
