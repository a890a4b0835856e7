"""The typer application every command module registers on, and shared output helpers."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from dispatcher.errors import (
    IdempotencyConflict,
    IllegalTransition,
    NotFound,
    ProviderError,
    ValidationError,
)

__all__ = ["errors", "fail", "print_json", "print_rows"]

app = typer.Typer(
    name="faxctl",
    help="Send faxes and operate the fax dispatcher.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console()
err_console = Console(stderr=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_INVALID = 2
EXIT_NOT_FOUND = 3
EXIT_CONFLICT = 4


def print_json(data: Any) -> None:
    """Machine-readable output: plain JSON on stdout, nothing else."""
    typer.echo(json.dumps(data, indent=2, default=str))


def print_rows(
    rows: Sequence[Mapping[str, Any]], columns: Sequence[str], title: str | None = None
) -> None:
    """A table of ``rows`` for people: one column per name in ``columns``, blank for None."""
    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*("" if row[c] is None else str(row[c]) for c in columns))
    console.print(table)


def fail(message: str, code: int = EXIT_INVALID) -> typer.Exit:
    """Print an error on stderr and return the Exit to raise."""
    err_console.print(f"[red]error:[/red] {message}", highlight=False)
    return typer.Exit(code)


@contextmanager
def errors() -> Iterator[None]:
    """Map dispatcher errors to the documented exit codes."""
    try:
        yield
    except ValidationError as exc:
        raise fail(str(exc), EXIT_INVALID) from None
    except NotFound as exc:
        raise fail(str(exc), EXIT_NOT_FOUND) from None
    except (IllegalTransition, IdempotencyConflict) as exc:
        raise fail(str(exc), EXIT_CONFLICT) from None
    except ProviderError as exc:
        raise fail(str(exc)) from None
