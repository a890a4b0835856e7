"""Item 2, dispatch overhead: attempts per second of our dispatch path against the
sandbox at 0 ms latency, against a bare Celery task that makes the same InterFAX POST.

Both run with the same number of sends at once, on the same broker and sandbox: the
bare worker as that many task slots, ours as a send pool of that size (its task slots
run the batches, polls and ticks).
The messages are queued before the worker starts, and the rate is read from the
sandbox's send log (its steady part), so neither side's start-up is counted.
"""

from __future__ import annotations

import statistics
import subprocess
import time
import uuid
from dataclasses import dataclass

from dispatcher.bench.baseline import post, publish
from dispatcher.bench.harness import BenchStack, bench_stack, rss_mb, steady_rate
from dispatcher.bench.report import Measurement
from dispatcher.bench.workload import interfax_requests, plain_numbers
from dispatcher.submission import submit_many

__all__ = ["Layout", "Run", "measure_dispatch", "run_bare", "run_ours"]


@dataclass(frozen=True, slots=True)
class Layout:
    """How one worker host runs: ``processes`` Celery workers making ``sends`` provider
    sends at once each. Ours does them on its send pool and runs ``tasks`` task slots;
    the bare baseline has no pool, so its task slots are its sends."""

    sends: int
    processes: int = 1
    pool: str = "threads"
    tasks: int = 4

    @property
    def concurrency(self) -> int:
        return self.sends * self.processes

    def __str__(self) -> str:
        return f"{self.processes} x {self.pool}, {self.sends} sends at once each"


@dataclass(frozen=True, slots=True)
class Run:
    """One host run: steady sends/s, wall seconds, peak RSS of one worker, sends seen."""

    rate: float
    seconds: float
    peak_rss_mb: float
    sends: int


def _drain(
    stack: BenchStack, workers: list[subprocess.Popen[bytes]], count: int, stall: float = 10.0
) -> Run:
    """Wait until the sandbox has ``count`` sends, or none came for ``stall`` seconds (a
    worker that lost messages), sampling each worker's memory."""
    start = last_progress = time.monotonic()
    peak, seen = 0.0, 0
    while (sent := stack.send_count()) < count:
        peak = max(peak, *(rss_mb(worker) for worker in workers))
        if sent > seen:
            seen, last_progress = sent, time.monotonic()
        elif time.monotonic() - last_progress > stall:
            break
        time.sleep(0.5)
    seconds = time.monotonic() - start
    for worker in workers:
        stack.stop_child(worker)
    return Run(steady_rate(stack.sends()), seconds, peak, sent)


def run_ours(count: int, layout: Layout, latency_ms: float = 0.0) -> Run:
    with bench_stack("dispatch") as stack:
        stack.start_sandbox(latency_ms)
        submit_many(interfax_requests(count), publish=True)
        workers = [
            stack.start_worker(layout.tasks, layout.pool, sends=layout.sends)
            for _ in range(layout.processes)
        ]
        return _drain(stack, workers, count)


def run_bare(count: int, layout: Layout, latency_ms: float = 0.0) -> Run:
    with bench_stack("dispatch-bare") as stack:
        stack.start_sandbox(latency_ms)
        calls = [(n, f"bare-{uuid.uuid4().hex[:12]}") for n in plain_numbers(count)]
        publish(post, calls, stack.env["FAX_BROKER_URL"])
        workers = [
            stack.start_worker(
                layout.sends, layout.pool, app="dispatcher.bench.baseline", queues="bench"
            )
            for _ in range(layout.processes)
        ]
        return _drain(stack, workers, count)


def measure_dispatch(count: int, concurrency: int, rounds: int = 3) -> tuple[Measurement, float]:
    """The measurement, and the bare rate (item 6 compares against it).

    Ours and bare alternate for ``rounds`` rounds and each side's median counts: this
    machine's speed drifts over a minute, and alternating keeps the drift out of the ratio.
    """
    layout = Layout(concurrency)
    runs = [(run_ours(count, layout), run_bare(count, layout)) for _ in range(rounds)]
    ours = statistics.median(o.rate for o, _ in runs)
    bare = statistics.median(b.rate for _, b in runs)
    measurement = Measurement(
        key="dispatch",
        name="2. dispatch overhead (0 ms)",
        unit="attempts/s",
        ours=ours,
        baseline=bare,
        goal=0.75,
        note=(
            f"InterFAX sends, {concurrency} at once (ours: send pool, -c {layout.tasks}; "
            f"bare: -c {concurrency}); median of {rounds} alternating rounds"
        ),
        details={
            "attempts": count,
            "concurrency": concurrency,
            "ours_rates": [o.rate for o, _ in runs],
            "baseline_rates": [b.rate for _, b in runs],
        },
    )
    return measurement, bare
