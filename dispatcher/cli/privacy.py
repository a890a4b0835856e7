"""``faxctl purge`` and ``faxctl keys rotate-documents|new-document-key``: protected data
kept only as long as its retention, and documents encrypted under the current key."""

from __future__ import annotations

from typing import Annotated

import typer
from cryptography.fernet import Fernet

from dispatcher import retention
from dispatcher.cli._app import JsonOption, app, console, errors, print_json, print_rows
from dispatcher.cli.tenants import keys_app
from dispatcher.runtime import document_store
from dispatcher.store.db import get_engine
from dispatcher.store.documents import rotate_documents

__all__ = ["new_document_key", "purge", "rotate"]


@app.command()
def purge(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what has expired; purge nothing.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Purge the protected data of ended faxes past FAX_RETENTION__* (beat does it every
    FAX_RETENTION__INTERVAL): documents, numbers (masked) and metadata, raw payloads.
    The faxes' records stay."""
    with errors():
        if dry_run:
            counts = {kind.value: n for kind, n in retention.expired_counts().items()}
            if as_json:
                print_json({"expired": counts})
                return
            print_rows(
                [{"data": kind, "faxes past retention": n} for kind, n in counts.items()],
                ["data", "faxes past retention"],
                title="would be purged",
            )
            return
        done = dict.fromkeys((kind.value for kind in retention.Kind), 0)
        while True:
            run = retention.purge_expired(
                progress=lambda kind, n: console.print(f"{kind}: {n} faxes purged")
            )
            for kind, n in run.jobs.items():
                done[kind.value] += n
            if not run.more:
                break
    if as_json:
        print_json({"purged": done})
    else:
        console.print(f"purged: {done}")


@keys_app.command("rotate-documents")
def rotate(
    batch_size: Annotated[int, typer.Option(min=1, help="Documents per transaction.")] = 50,
) -> None:
    """Re-encrypt every stored document with the first key of FAX_DOCUMENT_KEYS (and
    encrypt any stored before encryption), in batches; safe to stop and run again. Then
    the old keys can be dropped from FAX_DOCUMENT_KEYS."""
    seen = rotated = 0
    unreadable: list[str] = []
    with errors():
        for looked, changed, failed in rotate_documents(get_engine(), document_store(), batch_size):
            seen, rotated = seen + looked, rotated + changed
            unreadable += failed
            console.print(f"{seen} documents looked at, {rotated} re-encrypted")
    if unreadable:
        console.print(
            f"[red]{len(unreadable)} documents could not be read (missing, the store not "
            f"answering, or under a key no longer in FAX_DOCUMENT_KEYS), e.g. "
            f"{unreadable[0]}; run it again once that is fixed[/red]"
        )
        raise typer.Exit(1)


@keys_app.command("new-document-key")
def new_document_key() -> None:
    """Print a new key for FAX_DOCUMENT_KEYS (put it first to encrypt with it)."""
    typer.echo(Fernet.generate_key().decode())
