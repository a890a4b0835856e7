"""``faxctl bulk``: one fax per CSV row, with a progress bar, per-row errors and safe re-runs.

The reading, checking and submitting live in ``dispatcher.bulk``; this module only shows
progress and the summary.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.text import Text

from dispatcher.bulk import BulkPlan, ChunkResult, RowError, check_csv, submit_plan
from dispatcher.cli._app import (
    EXIT_INVALID,
    EXIT_OK,
    JsonOption,
    app,
    console,
    err_console,
    fail,
    print_json,
)
from dispatcher.errors import ValidationError

EXIT_INTERRUPTED = 130
SHOWN_ERRORS = 50
HELP = "\n\n".join(
    [
        "Submit one fax per row of a CSV file; safe to run again.",
        "Columns (header names are case-insensitive): to (required, +country number), "
        "provider, document (a path relative to the CSV's folder that must stay inside it; "
        "--document is used when the cell is empty), send_at (ISO 8601 with a time zone) "
        "and meta_NAME (metadata NAME). Other columns are reported once as a warning and "
        "ignored. Blank rows are skipped. The file must be UTF-8.",
        "Every row is checked before anything is submitted. A bad row is reported with its "
        "row number as a spreadsheet shows it (the header is row 1, the first data row is "
        "row 2) and the reason; the good rows are still submitted, unless --strict.",
        "Each row's idempotency key is bulk:<first 16 hex digits of the file's sha256>:<row>, "
        "so running the same file again (after a crash or Ctrl-C) submits only the rows "
        "that are not in yet and counts the rest as duplicates. Any edit to the file changes "
        "every key, so re-run it unchanged. Jobs are written to the database and the beat "
        "tick dispatches them in batches.",
        "Exit codes: 0 every row accepted or already submitted; 2 some rows rejected, or the "
        "file cannot be used (then nothing is submitted); 130 interrupted.",
    ]
)


class _RowRate(ProgressColumn):
    """Rows per second (rich's own speed column counts bytes)."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.0f} rows/s" if speed else "? rows/s", style="progress.data.speed")


def _progress(quiet: bool, *columns: ProgressColumn) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        *columns,
        TimeRemainingColumn(),
        console=err_console,
        disable=quiet,
    )


def _check(csv_file: Path, document: Path | None, provider: str | None, quiet: bool) -> BulkPlan:
    with _progress(quiet, DownloadColumn(), TransferSpeedColumn()) as progress:
        task = progress.add_task("checking  ", total=csv_file.stat().st_size)
        return check_csv(
            csv_file,
            document=document,
            provider=provider,
            progress=lambda done: progress.update(task, completed=done),
        )


def _report_rejected(rejected: list[RowError]) -> None:
    for item in rejected[:SHOWN_ERRORS]:
        err_console.print(f"[red]row {item.row}:[/red] {item.error}", highlight=False)
    if len(rejected) > SHOWN_ERRORS:
        err_console.print(f"... and {len(rejected) - SHOWN_ERRORS} more rows (--json lists all)")


@dataclass
class _Tally:
    """What the run did so far; rejected rows from both passes."""

    rejected: list[RowError]
    accepted: int = 0
    duplicates: int = 0
    submitted: bool = False
    interrupted: bool = False

    def add(self, chunk: ChunkResult) -> None:
        self.accepted += chunk.accepted
        self.duplicates += chunk.duplicates
        self.rejected.extend(chunk.rejected)


def _summary(plan: BulkPlan, tally: _Tally, seconds: float) -> dict[str, Any]:
    return {
        "file": str(plan.path),
        "sha256": plan.sha256,
        "rows": plan.rows,
        "accepted": tally.accepted,
        "duplicates": tally.duplicates,
        "rejected": [
            {"row": r.row, "error": r.error} for r in sorted(tally.rejected, key=lambda r: r.row)
        ],
        "blank_rows": plan.blank,
        "ignored_columns": list(plan.ignored_columns),
        "submitted": tally.submitted,
        "interrupted": tally.interrupted,
        "seconds": round(seconds, 3),
        "rows_per_second": round(plan.rows / seconds) if seconds else None,
    }


def _print_summary(summary: dict[str, Any]) -> None:
    note = ""
    if summary["interrupted"]:
        note = " [yellow](interrupted: run the same command again to submit the rest)[/yellow]"
    elif not summary["submitted"]:
        note = " [yellow](--strict: nothing submitted)[/yellow]"
    console.print(
        f"accepted {summary['accepted']:,}, already submitted {summary['duplicates']:,}, "
        f"rejected {len(summary['rejected']):,}, blank rows {summary['blank_rows']:,}: "
        f"{summary['rows']:,} rows in {summary['seconds']:.1f} s "
        f"({summary['rows_per_second'] or 0:,} rows/s){note}",
        highlight=False,
    )


@contextmanager
def _ctrl_c_between_chunks() -> Iterator[threading.Event]:
    """The first Ctrl-C lets the chunk in flight commit and then stops, so the summary
    matches the database; a second one interrupts at once (still losing nothing)."""
    stop = threading.Event()
    previous = signal.getsignal(signal.SIGINT)

    def handle(*_: object) -> None:
        stop.set()
        signal.signal(signal.SIGINT, previous)

    signal.signal(signal.SIGINT, handle)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)


def _submit(plan: BulkPlan, tally: _Tally, quiet: bool) -> None:
    tally.submitted = True
    with (
        _progress(quiet, MofNCompleteColumn(), _RowRate()) as progress,
        _ctrl_c_between_chunks() as stop,
    ):
        task = progress.add_task("submitting", total=plan.valid)
        try:
            for chunk in submit_plan(plan):
                tally.add(chunk)
                progress.advance(task, chunk.rows)
                if stop.is_set():
                    tally.interrupted = True
                    break
        except KeyboardInterrupt:
            tally.interrupted = True


@app.command(help=HELP)
def bulk(
    csv_file: Annotated[Path, typer.Argument(help="A UTF-8 CSV file with a header row.")],
    document: Annotated[
        Path | None, typer.Option(help="The document for rows with no document cell.")
    ] = None,
    provider: Annotated[
        str | None, typer.Option(help="The provider for rows with no provider cell.")
    ] = None,
    strict: Annotated[
        bool, typer.Option("--strict", help="Submit nothing if any row is rejected.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Submit one fax per CSV row (see ``HELP``)."""
    for path in (csv_file, document):
        if path is not None and not path.is_file():
            raise fail(f"{path}: no such file", EXIT_INVALID)
    started = time.perf_counter()
    try:
        plan = _check(csv_file, document, provider, as_json)
    except ValidationError as exc:
        raise fail(str(exc), EXIT_INVALID) from None
    except KeyboardInterrupt:
        raise fail("interrupted while checking: nothing was submitted", EXIT_INTERRUPTED) from None
    with plan:
        if plan.ignored_columns:
            err_console.print(
                f"[yellow]warning:[/yellow] ignoring columns {', '.join(plan.ignored_columns)}",
                highlight=False,
            )
        if not as_json:
            _report_rejected(plan.rejected)
        tally = _Tally(rejected=list(plan.rejected))
        if not (strict and plan.rejected):
            _submit(plan, tally, as_json)
        summary = _summary(plan, tally, time.perf_counter() - started)
    if as_json:
        print_json(summary)
    else:
        _print_summary(summary)
    if tally.interrupted:
        raise typer.Exit(EXIT_INTERRUPTED)
    raise typer.Exit(EXIT_INVALID if tally.rejected else EXIT_OK)
