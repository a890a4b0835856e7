"""Engines, sessions and migrations for the results store (SQLite or PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from config.settings import get_settings

if TYPE_CHECKING:
    from alembic.config import Config

__all__ = [
    "alembic_config",
    "engine_for",
    "get_engine",
    "session_scope",
    "sessionmaker_for",
    "upgrade",
    "upsert",
]

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets the API read while a worker writes; busy_timeout makes writers queue, not fail.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    # A purged number or document is overwritten in the file, not left in a free page.
    cursor.execute("PRAGMA secure_delete=ON")
    cursor.close()


@cache
def engine_for(url: str) -> Engine:
    """One pooled engine per database URL per process."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30}, hide_parameters=True)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    # hide_parameters: a database error's message must not carry a job's number to a log.
    size = get_settings().database_pool_size
    return create_engine(
        url, pool_pre_ping=True, pool_size=size, max_overflow=size // 2, hide_parameters=True
    )


def upsert(dialect: str, table: Any) -> postgresql.Insert | sqlite.Insert:
    """``INSERT`` with ``ON CONFLICT`` for the database ``dialect`` names (both speak it)."""
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)


def get_engine() -> Engine:
    return engine_for(get_settings().resolved_database_url)


@cache
def sessionmaker_for(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def session_scope(engine: Engine | None = None) -> Iterator[Session]:
    """A session that commits on success and rolls back on error."""
    session = sessionmaker_for(engine or get_engine())()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def alembic_config(url: str) -> Config:
    from alembic.config import Config  # migrations only: alembic is 8 MB a worker never uses

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str | None = None, revision: str = "head") -> None:
    """Apply the Alembic migrations to the configured (or given) database."""
    from alembic import command

    url = url or get_settings().resolved_database_url
    engine = engine_for(url)
    cfg = alembic_config(url)
    with engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, revision)
