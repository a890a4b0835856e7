"""``faxctl explain`` and ``faxctl catalogue``: read the status catalogue."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from dispatcher.catalogue import classify, entries
from dispatcher.cli._app import JsonOption, app, console, print_json
from dispatcher.providers.registry import PROVIDERS

__all__ = ["catalogue", "explain"]


def _known(provider: str) -> str:
    if provider not in PROVIDERS:
        raise typer.BadParameter(f"{provider!r} is not one of {', '.join(PROVIDERS)}")
    return provider


ProviderArg = Annotated[str, typer.Argument(callback=_known, help=", ".join(PROVIDERS))]


@app.command(context_settings={"ignore_unknown_options": True})
def explain(
    provider: ProviderArg,
    code: Annotated[str, typer.Argument(help="The provider's status code")],
    as_json: JsonOption = False,
) -> None:
    """What a provider's status code means and what the dispatcher does next."""
    entry = classify(provider, code)
    if as_json:
        print_json(entry.to_dict())
        return
    console.print(f"[bold]{entry.provider} {entry.code}[/bold]: {entry.label}")
    console.print(f"  outcome      {entry.outcome.value}")
    console.print(f"  remediation  {entry.remediation.value}")
    console.print(f"  family       {entry.family.value}")
    console.print(f"  reroutable   {'yes' if entry.reroutable else 'no'}")
    console.print(f"  known        {'yes' if entry.known else 'no (safe default)'}")
    console.print(f"  {entry.description}")


@app.command()
def catalogue(
    provider: ProviderArg,
    as_json: JsonOption = False,
) -> None:
    """Every known status code of one provider."""
    rows = entries(provider)
    if as_json:
        print_json([entry.to_dict() for entry in rows])
        return
    table = Table(title=f"{provider} status catalogue")
    for column in ("code", "label", "outcome", "remediation", "family", "reroutable"):
        table.add_column(column)
    for e in rows:
        table.add_row(
            e.code,
            e.label,
            e.outcome.value,
            e.remediation.value,
            e.family.value,
            "yes" if e.reroutable else "",
        )
    console.print(table)
