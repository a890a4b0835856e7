"""``faxctl db``: manage the results store."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from config.settings import get_settings
from dispatcher.cli._app import app, console
from dispatcher.runtime import document_store
from dispatcher.store.db import get_engine
from dispatcher.store.db import upgrade as upgrade_database
from dispatcher.store.documents import import_folder

__all__ = ["import_documents", "upgrade"]

db_app = typer.Typer(help="Manage the results store.", no_args_is_help=True)
app.add_typer(db_app, name="db")


@db_app.command()
def upgrade() -> None:
    """Apply the database migrations (SQLite or PostgreSQL, from FAX_DATABASE_URL), and
    move documents an earlier version kept under FAX_HOME/documents into the store."""
    upgrade_database()
    settings = get_settings()
    console.print(f"database is up to date: {settings.resolved_database_url.split('@')[-1]}")
    if settings.legacy_documents_dir.is_dir():
        _import(settings.legacy_documents_dir)


@db_app.command("import-documents")
def import_documents(
    folder: Annotated[Path, typer.Argument(help="A FAX_HOME/documents folder of 0.1.")],
) -> None:
    """Move the documents kept in FOLDER (as version 0.1 kept them) into the store."""
    _import(folder)


def _import(folder: Path) -> None:
    with get_engine().begin() as connection:
        moved, present = import_folder(connection, document_store(), folder)
    console.print(
        f"documents from {folder}: {moved} moved to the {get_settings().document_store} "
        f"store, {present} were there already; the folder is no longer read and can go"
    )
