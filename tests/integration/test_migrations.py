"""The Alembic migrations build exactly the schema the models describe, on both backends,
and carry an existing database forward without losing a row."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

from dispatcher.store.db import engine_for, upgrade
from dispatcher.store.models import Base


def test_the_migrated_schema_matches_the_models(db_url: str) -> None:
    with engine_for(db_url).connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert differences == []


def test_an_existing_database_keeps_its_jobs_across_the_upgrade(tmp_path: Path) -> None:
    # Given a database at the first schema with a job in it
    url = f"sqlite:///{tmp_path / 'old.db'}"
    upgrade(url, "0001")
    with engine_for(url).begin() as connection:
        connection.execute(
            text(
                "INSERT INTO jobs (id, to_number, provider, route, state, version, request_hash,"
                " attempt_count, immediate_retries, budget_start, pages, resend_from_page,"
                " metadata, options, created_at, updated_at) VALUES ('j1', '+12025550100',"
                " 'interfax', '[]', 'in_progress', 3, 'h', 1, 0, 0, 1, 0, '{}', '{}',"
                " '2026-11-01 10:00:00', '2026-11-02 11:00:00')"
            )
        )

    # When it is upgraded
    upgrade(url)

    # Then the job is there, in its state since its last change
    with engine_for(url).connect() as connection:
        row = connection.execute(text("SELECT state, state_changed_at FROM jobs")).one()
    assert row.state == "in_progress"
    assert str(row.state_changed_at).startswith("2026-11-02 11:00:00")
