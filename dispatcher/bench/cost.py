"""Item 6, the whole fax: end to end through every process of ours, its rate and its CPU
cost, against bare Celery doing one send task and one poll task per fax.

Ours is the deployment: the batch API (uvicorn) takes the faxes as a billing run would
(CSV uploads of ``BATCH_ROWS``), beat ticks, the workers send and poll. The CPU seconds
of those processes (not the sandbox's, not this process's uploads) are divided by the
faxes that reached a final state. The bare run publishes one ``bench.send`` per fax from
this process (that CPU is counted: it stands for our API), and its worker sends, then
polls once. Every number is plain, so on both sides a fax is one send and one status
read that finds it done.
"""

from __future__ import annotations

import csv
import io
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import psutil
from sqlalchemy import func, select

from dispatcher.bench.baseline import FINISHED, publish, send
from dispatcher.bench.dispatch import Layout
from dispatcher.bench.harness import BenchStack, bench_stack
from dispatcher.bench.report import Measurement
from dispatcher.bench.workload import document, plain_numbers
from dispatcher.broker import redis_client
from dispatcher.lifecycle import FINAL_STATES
from dispatcher.store.db import session_scope
from dispatcher.store.models import Job

__all__ = ["measure_cost"]

TIME_SCALE = 0.001
BATCH_ROWS = 500
TOKEN = "bench-" + "t" * 40


@dataclass(frozen=True, slots=True)
class _Run:
    faxes: int
    seconds: float
    cpu_seconds: float

    @property
    def rate(self) -> float:
        return self.faxes / self.seconds

    @property
    def cpu_ms_per_fax(self) -> float:
        return 1000 * self.cpu_seconds / self.faxes if self.faxes else 0.0


def _cpu_seconds(processes: list[subprocess.Popen[bytes]]) -> float:
    total = 0.0
    for process in processes:
        try:
            times = psutil.Process(process.pid).cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


def _wait(
    done: Callable[[], int], count: int, start: float, timeout: float, stall: float = 15.0
) -> tuple[int, float]:
    """Until ``count`` are done, or none was done for ``stall`` seconds (a bare task that
    failed is not retried: its fax never ends), or ``timeout``: how many were done, and
    the seconds from ``start`` to the last of them."""
    seen, last = 0, time.monotonic()
    while (finished := done()) < count:
        now = time.monotonic()
        if finished > seen:
            seen, last = finished, now
        if now - last > stall or now - start > timeout:
            return seen, last - start
        time.sleep(0.2)
    return finished, time.monotonic() - start


def _finished() -> int:
    final = [state.value for state in FINAL_STATES]
    with session_scope() as session:
        return session.scalar(select(func.count()).where(Job.state.in_(final))) or 0


def _upload(url: str, numbers: list[str]) -> None:
    """The faxes through the batch API, as a billing run sends them."""
    pdf = document()
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=url, headers=headers, timeout=300) as client:
        for start in range(0, len(numbers), BATCH_ROWS):
            rows = io.StringIO()
            writer = csv.writer(rows)
            writer.writerow(["to", "provider", "document"])
            chunk = numbers[start : start + BATCH_ROWS]
            writer.writerows([number, "interfax", "bench.pdf"] for number in chunk)
            files = [
                ("rows", ("rows.csv", rows.getvalue().encode(), "text/csv")),
                ("documents", ("bench.pdf", pdf, "application/pdf")),
            ]
            client.post("/v1/batches", files=files, data={"priority": "normal"}).raise_for_status()


def _workers(stack: BenchStack, layout: Layout, bare: bool) -> list[subprocess.Popen[bytes]]:
    if bare:
        return [
            stack.start_worker(
                layout.sends, layout.pool, app="dispatcher.bench.baseline", queues="bench"
            )
            for _ in range(layout.processes)
        ]
    return [
        stack.start_worker(layout.tasks, layout.pool, sends=layout.sends)
        for _ in range(layout.processes)
    ]


def _run_ours(count: int, layout: Layout, timeout: float) -> _Run:
    extra = {"FAX_TICK_INTERVAL": "0.2", "FAX_API_TOKENS": f'["{TOKEN}"]'}
    with bench_stack("cost", time_scale=TIME_SCALE, extra_env=extra) as stack:
        stack.start_sandbox()
        url, api = stack.start_http(
            "api", "dispatcher.api:create_app", factory=True, ready_path="/healthz"
        )
        processes = [api, *_workers(stack, layout, bare=False), stack.start_beat()]
        cpu, start = _cpu_seconds(processes), time.monotonic()
        _upload(url, plain_numbers(count))
        finished, seconds = _wait(_finished, count, start, timeout)
        return _Run(finished, seconds, _cpu_seconds(processes) - cpu)


def _run_bare(count: int, layout: Layout, timeout: float) -> _Run:
    with bench_stack("cost-bare", time_scale=TIME_SCALE) as stack:
        stack.start_sandbox()
        workers = _workers(stack, layout, bare=True)
        calls = [(n, f"bare-{uuid.uuid4().hex[:12]}") for n in plain_numbers(count + 1)]
        cpu, own, start = _cpu_seconds(workers), time.process_time(), time.monotonic()
        publish(send, calls, stack.env["FAX_BROKER_URL"])
        published = time.process_time() - own
        redis = redis_client()
        finished, seconds = _wait(lambda: int(redis.get(FINISHED) or 0), count + 1, start, timeout)
        return _Run(finished, seconds, _cpu_seconds(workers) - cpu + published)


def measure_cost(
    count: int, layout: Layout, bare_send_rate: float, timeout: float = 900.0
) -> tuple[Measurement, Measurement]:
    """The CPU per fax against bare Celery's, and our end-to-end rate against the bare
    send rate of item 2."""
    ours = _run_ours(count, layout, timeout)
    bare = _run_bare(count, layout, timeout)
    unfinished = "" if ours.faxes >= count else f"; {count - ours.faxes} not final"
    shape = f"{count:,} faxes, {layout}"
    details = {
        "faxes": count,
        "layout": str(layout),
        "ours": {"final": ours.faxes, "seconds": ours.seconds, "cpu_seconds": ours.cpu_seconds},
        "bare": {"final": bare.faxes, "seconds": bare.seconds, "cpu_seconds": bare.cpu_seconds},
        "bare_whole_fax_rate": bare.rate,
        "time_scale": TIME_SCALE,
    }
    return (
        Measurement(
            key="cost",
            name="6a. CPU per fax, end to end (API, beat, workers)",
            unit="ms CPU/fax",
            ours=ours.cpu_ms_per_fax,
            baseline=bare.cpu_ms_per_fax,
            goal=1.5,
            lower_is_better=True,
            note=f"baseline: bare Celery, one send task and one poll task per fax; {shape}",
            details=details,
        ),
        Measurement(
            key="end_to_end",
            name=f"6b. end to end ({count:,} faxes), submit to final",
            unit="faxes/s",
            ours=ours.rate,
            baseline=bare_send_rate,
            goal=0.8,
            note=(
                f"{ours.seconds:.1f} s wall through the batch API, beat and the workers"
                f"{unfinished}; baseline: the bare Celery send rate of item 2"
            ),
            details=details,
        ),
    )
