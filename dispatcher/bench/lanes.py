"""Item 8, priority lanes: how long an urgent fax takes from submit to its provider send
with 100,000 bulk faxes due ahead of it, next to the same with nothing ahead. The goal
is within two ticks of the figure with no backlog.

Beat is played by a thread that ticks every ``TICK`` seconds; sends take
``LATENCY_MS`` at the sandbox, as a real provider's do. The urgent fax's send is seen in
the sandbox's own log (``/_sandbox/sends?reference=``).
"""

from __future__ import annotations

import statistics
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from sqlalchemy import insert

from dispatcher.bench.dispatch import Layout
from dispatcher.bench.harness import BenchStack, bench_stack
from dispatcher.bench.report import Measurement
from dispatcher.bench.workload import document, plain_numbers
from dispatcher.clock import utcnow
from dispatcher.documents import inspect_document
from dispatcher.lanes import Priority
from dispatcher.scheduler import tick
from dispatcher.sending import reference_for
from dispatcher.store.db import get_engine
from dispatcher.store.models import Job, JobDocument
from dispatcher.submission import FaxRequest, submit_many

__all__ = ["measure_lanes"]

TICK = 1.0
LATENCY_MS = 300.0
URGENT_RUNS = 5


@contextmanager
def _beat(interval: float) -> Iterator[None]:
    """Tick every ``interval`` seconds in a thread, as beat would."""
    stop = threading.Event()

    def run() -> None:
        while not stop.wait(interval):
            tick()

    thread = threading.Thread(target=run, name="bench-beat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _bulk_rows(count: int) -> Iterator[dict[str, Any]]:
    now = utcnow()
    for number in plain_numbers(count):
        yield {
            "id": uuid.uuid4().hex,
            "to_number": number,
            "provider": "interfax",
            "route": ["interfax"],
            "state": "pending",
            "version": 1,
            "request_hash": "0" * 64,
            "next_attempt_at": now,
            "attempt_count": 0,
            "immediate_retries": 0,
            "budget_start": 0,
            "pages": 1,
            "meta": {},
            "options": {},
            "priority": Priority.BULK.value,
            "created_at": now,
            "updated_at": now,
            "state_changed_at": now,
        }


def _backlog(count: int, pdf_sha: str) -> None:
    """``count`` bulk jobs due now, written as a bulk load writes them (no message)."""
    rows = list(_bulk_rows(count))
    with get_engine().begin() as connection:
        for start in range(0, count, 10_000):
            chunk = rows[start : start + 10_000]
            connection.execute(insert(Job), chunk)
            connection.execute(
                insert(JobDocument),
                [
                    {"job_id": r["id"], "position": 0, "sha256": pdf_sha, "name": "b.pdf"}
                    for r in chunk
                ],
            )


def _urgent_seconds(stack: BenchStack, number: str) -> float:
    """Submit one urgent fax; seconds until the provider has accepted it."""
    request = FaxRequest(number, [("u.pdf", document())], provider="interfax", priority="urgent")
    start = time.monotonic()
    job_id = submit_many([request], publish=True)[0].job_id
    reference = reference_for(job_id, 1)
    url = f"{stack.sandbox_url}/_sandbox/sends"
    while not httpx.get(url, params={"reference": reference}).json():
        if time.monotonic() - start > 120:
            raise RuntimeError("the urgent fax was not sent within 120 s")
        time.sleep(0.01)
    return time.monotonic() - start


def measure_lanes(backlog: int, layout: Layout) -> Measurement:
    extra = {"FAX_TICK_INTERVAL": str(TICK)}
    with bench_stack("lanes", extra_env=extra) as stack:
        stack.start_sandbox(latency_ms=LATENCY_MS)
        for _ in range(layout.processes):
            stack.start_worker(layout.tasks, layout.pool, sends=layout.sends)
        urgent_numbers = iter(f"+1919555{i:04d}" for i in range(2 * URGENT_RUNS))
        with _beat(TICK):
            idle = [_urgent_seconds(stack, next(urgent_numbers)) for _ in range(URGENT_RUNS)]
            sha = _document_sha()
            _backlog(backlog, sha)
            flowing = URGENT_RUNS + 1 + min(1000, backlog // 2)
            while stack.send_count() < flowing:  # the bulk run is under way
                time.sleep(0.2)
            busy = []
            for _ in range(URGENT_RUNS):
                busy.append(_urgent_seconds(stack, next(urgent_numbers)))
                time.sleep(0.5)
            bulk_sent = stack.send_count() - 2 * URGENT_RUNS
    idle_s, busy_s = statistics.median(idle), statistics.median(busy)
    return Measurement(
        key="lanes",
        name=f"8. urgent fax behind {backlog:,} bulk faxes, submit to send",
        unit="s",
        ours=busy_s,
        baseline=idle_s + 2 * TICK,
        goal=1.0,
        lower_is_better=True,
        note=(
            f"median of {URGENT_RUNS}: {busy_s:.2f} s with the backlog, {idle_s:.2f} s with "
            f"none; baseline is that plus two ticks ({TICK:g} s each); sends take "
            f"{LATENCY_MS:g} ms; {bulk_sent:,} bulk faxes sent meanwhile"
        ),
        details={
            "idle_seconds": idle,
            "backlog_seconds": busy,
            "backlog": backlog,
            "tick": TICK,
            "latency_ms": LATENCY_MS,
            "layout": str(layout),
        },
    )


def _document_sha() -> str:
    """The bench document, stored once through a real submission (its row and bytes)."""
    submit_many(
        [FaxRequest("+19195559999", [("b.pdf", document())], provider="interfax", priority="bulk")],
        publish=False,
    )
    return inspect_document(document(), "b.pdf").sha256
