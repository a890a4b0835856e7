"""``faxctl bulk``: one fax per CSV row, with a progress bar, per-row errors and safe re-runs.

On a host with database access the file is checked and submitted here
(``dispatcher.bulk``); with ``--api`` it goes to a remote API in parts
(``POST /v1/batches``). Either way the rows form a batch, whose delivery the command then
follows until every fax has ended (``--no-follow`` stops after intake).
"""

from __future__ import annotations

import csv
import io
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
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

from dispatcher import batches
from dispatcher.bulk import BulkPlan, ChunkResult, RowError, check_csv, submit_plan
from dispatcher.cli._app import (
    EXIT_FAILURE,
    EXIT_INVALID,
    EXIT_OK,
    JsonOption,
    app,
    console,
    err_console,
    fail,
    print_json,
)
from dispatcher.client import FaxApiError, FaxClient, InvalidRequest
from dispatcher.errors import ValidationError
from dispatcher.schemas import Batch

__all__ = ["bulk"]

EXIT_INTERRUPTED = 130
SHOWN_ERRORS = 50
#: Rows per request to a remote API (with the documents they name).
PART_ROWS = 1000
#: Seconds between two looks at a batch's delivery.
FOLLOW_EVERY = 1.0
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
        "Each row is keyed by its key cell (a key column), else by what it asks for (number, "
        "provider, document, send time, metadata), so running a file again (after a crash, "
        "Ctrl-C, or fixing its rejected rows) submits only the rows that are not in yet and "
        "counts the rest as duplicates. Jobs are written to the database and the beat tick "
        "dispatches them in batches.",
        "--api URL (or FAX_API_URL) sends the file to a remote API, 1000 rows a request with "
        "the documents they name; the token comes from FAX_API_TOKEN.",
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
        "file": plan.name,
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


def _submit(plan: BulkPlan, batch_id: str, tally: _Tally, quiet: bool) -> None:
    tally.submitted = True
    with (
        _progress(quiet, MofNCompleteColumn(), _RowRate()) as progress,
        _ctrl_c_between_chunks() as stop,
    ):
        task = progress.add_task("submitting", total=plan.valid)
        try:
            for chunk in submit_plan(plan, batch_id):
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
    api: Annotated[
        str | None,
        typer.Option(envvar="FAX_API_URL", help="Send to this API (token: FAX_API_TOKEN)."),
    ] = None,
    follow: Annotated[
        bool, typer.Option("--follow/--no-follow", help="Follow delivery until all have ended.")
    ] = True,
    as_json: JsonOption = False,
) -> None:
    """Submit one fax per CSV row (see ``HELP``)."""
    for path in (csv_file, document):
        if path is not None and not path.is_file():
            raise fail(f"{path}: no such file", EXIT_INVALID)
    if api:
        token = os.environ.get("FAX_API_TOKEN")
        if not token:
            raise fail("--api needs the API token in FAX_API_TOKEN", EXIT_INVALID)
        if strict:
            raise fail("--strict checks the whole file first: run it on a host with the database")
        with FaxClient(api, token) as client:
            summary, interrupted = _remote(client, csv_file, document, provider, as_json)
            if follow and not interrupted:
                summary["delivery"] = _follow_delivery(
                    lambda: client.batch(summary["batch"]).model_dump(), as_json
                )
    else:
        summary, interrupted = _local(csv_file, document, provider, strict, as_json)
        if follow and not interrupted and summary["submitted"]:
            summary["delivery"] = _follow_delivery(lambda: batches.view(summary["batch"]), as_json)
    if as_json:
        print_json(summary)
    else:
        _print_summary(summary)
    if interrupted:
        raise typer.Exit(EXIT_INTERRUPTED)
    raise typer.Exit(EXIT_INVALID if summary["rejected"] else EXIT_OK)


def _local(
    csv_file: Path, document: Path | None, provider: str | None, strict: bool, quiet: bool
) -> tuple[dict[str, Any], bool]:
    """Check and submit here, as a batch; the summary, and whether Ctrl-C stopped it."""
    started = time.perf_counter()
    try:
        plan = _check(csv_file, document, provider, quiet)
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
        if not quiet:
            _report_rejected(plan.rejected)
        tally = _Tally(rejected=list(plan.rejected))
        batch_id = batches.open_batch(csv_file.name)
        if not (strict and plan.rejected):
            _submit(plan, batch_id, tally, quiet)
        batches.record(batch_id, plan.rows, tally.accepted, tally.duplicates, tally.rejected)
        summary = _summary(plan, tally, time.perf_counter() - started)
    summary["batch"] = batch_id
    return summary, tally.interrupted


def _parts(csv_file: Path) -> Iterator[tuple[int, list[list[str]]]]:
    """The file's header and rows, PART_ROWS rows at a time, each part with the header and
    the header's row number in the whole file (blank rows kept, so numbers match)."""
    with csv_file.open(newline="", encoding="utf-8-sig") as handle:
        records = csv.reader(handle)
        header = next(records, None)
        if header is None:
            raise fail(f"{csv_file.name}: the file is empty: it needs a header row")
        part: list[list[str]] = []
        first = 1
        for row in records:
            part.append(row)
            if len(part) == PART_ROWS:
                yield first, [header, *part]
                first, part = first + PART_ROWS, []
        if part:
            yield first, [header, *part]


def _part_documents(
    csv_file: Path, rows: list[list[str]], default: Path | None
) -> dict[str, bytes]:
    """The documents a part's rows name (relative to the CSV's folder, inside it), by the
    name the rows use; a cell naming no readable file is left to the API to reject."""
    header = [cell.strip().lower() for cell in rows[0]]
    files: dict[str, bytes] = {}
    if default is not None:
        files[default.name] = default.read_bytes()
    if "document" not in header:
        return files
    index = header.index("document")
    folder = csv_file.parent.resolve()
    for row in rows[1:]:
        cell = row[index].strip() if index < len(row) else ""
        path = (folder / cell).resolve()
        if cell and cell not in files and path.is_relative_to(folder) and path.is_file():
            files[cell] = path.read_bytes()
    return files


def _remote(
    client: FaxClient, csv_file: Path, document: Path | None, provider: str | None, quiet: bool
) -> tuple[dict[str, Any], bool]:
    """Send the file to the API in parts, as one batch; the summary, and whether Ctrl-C
    stopped it (between parts: a run again sends only what is not in yet)."""
    started = time.perf_counter()
    batch: Batch | None = None
    interrupted = False
    with (
        _progress(quiet, MofNCompleteColumn(), _RowRate()) as progress,
        _ctrl_c_between_chunks() as stop,
    ):
        task = progress.add_task("uploading ", total=None)
        try:
            for first_row, rows in _parts(csv_file):
                text = io.StringIO()
                csv.writer(text).writerows(rows)
                batch = client.upload_batch(
                    text.getvalue().encode(),
                    csv_file.name,
                    _part_documents(csv_file, rows, document),
                    provider=provider,
                    default_document=document.name if document else None,
                    batch=batch.id if batch else None,
                    first_row=first_row,
                )
                progress.advance(task, len(rows) - 1)
                if stop.is_set():
                    interrupted = True
                    break
        except FaxApiError as exc:
            code = EXIT_INVALID if isinstance(exc, InvalidRequest) else EXIT_FAILURE
            where = "" if exc.field is None else f"{exc.field}: "
            raise fail(where + exc.message, code) from None
        except KeyboardInterrupt:
            interrupted = True
    if batch is None:
        raise fail("interrupted before anything was sent", EXIT_INTERRUPTED)
    rejected = [RowError(r.row, r.error) for r in batch.rejected]
    if not quiet:
        _report_rejected(rejected)
    seconds = time.perf_counter() - started
    summary = {
        "file": str(csv_file),
        "batch": batch.id,
        "rows": batch.rows,
        "accepted": batch.accepted,
        "duplicates": batch.duplicates,
        "rejected": [{"row": r.row, "error": r.error} for r in rejected],
        "blank_rows": 0,
        "ignored_columns": [],
        "submitted": True,
        "interrupted": interrupted,
        "seconds": round(seconds, 3),
        "rows_per_second": round(batch.rows / seconds) if seconds else None,
    }
    return summary, interrupted


def _follow_delivery(read: Callable[[], dict[str, Any]], quiet: bool) -> dict[str, int]:
    """A bar of the batch's faxes that have ended, until all have (Ctrl-C stops following,
    not the faxes). Returns the batch's jobs by state at the end."""
    with _progress(quiet, MofNCompleteColumn()) as progress:
        task = progress.add_task("delivering", total=None)
        try:
            while True:
                batch = read()
                total = sum(batch["states"].values())
                progress.update(task, total=total, completed=batch["final"])
                if batch["final"] >= total:
                    return dict(batch["states"])
                time.sleep(FOLLOW_EVERY)
        except KeyboardInterrupt:
            return dict(batch["states"])
