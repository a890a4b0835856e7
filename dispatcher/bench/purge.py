"""Item 10, retention: a backlog of a million expired faxes on PostgreSQL, each with its
document, a provider payload and a search tag, purged by one run of ``fax.purge`` while
the tick goes on. The figure is the longest purge transaction against a budget of a
second; beside it, the tick's time during the purge and before it, and the purge's rate.
"""

from __future__ import annotations

import hashlib
import statistics
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from sqlalchemy import insert, text

from dispatcher import retention
from dispatcher.bench.harness import bench_stack
from dispatcher.bench.report import Measurement
from dispatcher.bench.scheduler import new_database, postgres
from dispatcher.bench.workload import plain_numbers
from dispatcher.clock import utcnow
from dispatcher.runtime import document_store
from dispatcher.scheduler import tick
from dispatcher.store.db import get_engine
from dispatcher.store.models import Document, Job, JobDocument, JobTag, StatusEvent

__all__ = ["measure_purge"]

BUDGET_MS = 1000.0
DOCUMENTS = 1000
CHUNK = 10_000


def _rows(count: int, shas: list[str]) -> Iterator[dict[str, list[dict[str, Any]]]]:
    """Chunks of rows: ended faxes forty days ago, each with its document, event, tag."""
    ended = utcnow() - timedelta(days=40)
    numbers = plain_numbers(min(count, 100_000))
    chunk: dict[str, list[dict[str, Any]]] = {"jobs": [], "docs": [], "events": [], "tags": []}
    for i in range(count):
        job_id = f"{i:032x}"
        number = numbers[i % len(numbers)]
        chunk["jobs"].append(
            {
                "id": job_id,
                "to_number": number,
                "provider": "interfax",
                "state": "succeeded",
                "version": 1,
                "request_hash": "0" * 64,
                "attempt_count": 1,
                "immediate_retries": 0,
                "budget_start": 0,
                "pages": 1,
                "meta": {"invoice": f"inv-{i}"},
                "options": {},
                "priority": "bulk",
                "created_at": ended,
                "updated_at": ended,
                "state_changed_at": ended,
                "finished_at": ended,
            }
        )
        chunk["docs"].append(
            {"job_id": job_id, "position": 0, "sha256": shas[i % len(shas)], "name": "a.pdf"}
        )
        chunk["events"].append(
            {
                "job_id": job_id,
                "source": "poll",
                "code": "0",
                "payload": {"faxNumber": number, "status": 0},
                "observed_at": ended,
            }
        )
        chunk["tags"].append({"job_id": job_id, "key": "invoice", "value": f"inv-{i}"})
        if len(chunk["jobs"]) == CHUNK:
            yield chunk
            chunk = {"jobs": [], "docs": [], "events": [], "tags": []}
    if chunk["jobs"]:
        yield chunk


def _load(count: int) -> None:
    engine = get_engine()
    contents = {f"document {n}".encode(): None for n in range(DOCUMENTS)}
    shas = [hashlib.sha256(content).hexdigest() for content in contents]
    with engine.begin() as connection:
        connection.execute(
            insert(Document),
            [
                {"sha256": sha, "mime_type": "text/plain", "size": 10, "page_count": 1}
                for sha in shas
            ],
        )
        document_store().save(connection, dict(zip(shas, contents, strict=True)))
        for chunk in _rows(count, shas):
            connection.execute(insert(Job), chunk["jobs"])
            connection.execute(insert(JobDocument), chunk["docs"])
            connection.execute(insert(StatusEvent), chunk["events"])
            connection.execute(insert(JobTag), chunk["tags"])
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM ANALYZE"))


def _tick_ms() -> float:
    start = time.perf_counter()
    tick()
    return (time.perf_counter() - start) * 1000


def _claim_plan() -> list[str]:
    """The plan of the purge's choice of jobs: an index scan of the unpurged, not a scan
    of every ended job."""
    cutoff = utcnow() - timedelta(days=7)
    query = (
        "EXPLAIN SELECT id FROM jobs WHERE documents_purged_at IS NULL AND finished_at < "
        ":cutoff AND state IN ('succeeded', 'failed', 'cancelled') ORDER BY finished_at "
        "LIMIT 500"
    )
    with get_engine().connect() as connection:
        return [row[0] for row in connection.execute(text(query), {"cutoff": cutoff})]


def measure_purge(count: int, run_seconds: float) -> Measurement | None:
    """None without PostgreSQL (the embedded server is in the bench extra)."""
    with postgres() as server:
        if server is None:
            return None
        env = {"FAX_RETENTION__RUN_SECONDS": str(run_seconds)}
        database = new_database(server, "fax_bench_purge")
        with bench_stack("purge", database_url=database, extra_env=env):
            start = time.monotonic()
            _load(count)
            loaded = time.monotonic() - start
            idle = [_tick_ms() for _ in range(5)]
            plan = _claim_plan()
            commits: list[float] = []
            began = time.perf_counter()
            worker = threading.Thread(
                target=retention.purge_expired,
                kwargs={"progress": lambda kind, n: commits.append(time.perf_counter())},
            )
            worker.start()
            during = [_tick_ms()]
            while worker.is_alive():
                time.sleep(0.2)
                during.append(_tick_ms())
            worker.join()
            elapsed = time.perf_counter() - began
            left = retention.expired_counts()
    transactions = [(b - a) * 1000 for a, b in zip([began, *commits], commits, strict=False)]
    purged = count - left[retention.Kind.DOCUMENTS]
    return Measurement(
        key="purge",
        name=f"10. purge {count:,} expired faxes, PostgreSQL, longest transaction",
        unit="ms",
        ours=max(transactions),
        baseline=BUDGET_MS,
        goal=1.0,
        lower_is_better=True,
        note=(
            f"one {run_seconds:g} s run purged the documents of {purged:,} faxes "
            f"({purged / elapsed:,.0f}/s) in {len(transactions)} transactions of 500, median "
            f"{statistics.median(transactions):.0f} ms; the tick meanwhile "
            f"{statistics.median(during):.0f} ms (median), {statistics.median(idle):.0f} ms before"
        ),
        details={
            "jobs": count,
            "load_seconds": loaded,
            "transactions_ms": transactions,
            "tick_ms_during": during,
            "tick_ms_idle": idle,
            "claim_plan": plan,
            "left": {kind.value: n for kind, n in left.items()},
        },
    )
