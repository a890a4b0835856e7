"""``faxctl db``: manage the results store."""

from __future__ import annotations

import typer

from config.settings import get_settings
from dispatcher.cli._app import app, console
from dispatcher.store.db import upgrade as upgrade_database

db_app = typer.Typer(help="Manage the results store.", no_args_is_help=True)
app.add_typer(db_app, name="db")


@db_app.command()
def upgrade() -> None:
    """Apply the database migrations (SQLite or PostgreSQL, from FAX_DATABASE_URL)."""
    upgrade_database()
    url = get_settings().resolved_database_url
    console.print(f"database is up to date: {url.split('@')[-1]}")
