"""Items 3 and 5: latency-bound throughput and worker memory, under 300 ms of sandbox
latency on every request.

One worker host makes ``concurrency`` sends at once; each InterFAX attempt is one POST,
so the bound is concurrency / latency attempts per second. The host's sends are tried as
one threads process, as one process per core and as two per core (and as one gevent
process where gevent is installed); the fastest layout that lost nothing is ours, and
the bare Celery baseline runs the same layout (its task slots are its sends). Memory is
the peak RSS of one worker process under that load, against a bare worker process of the
same layout.
"""

from __future__ import annotations

import importlib.util
import os

from dispatcher.bench.dispatch import Layout, Run, run_bare, run_ours
from dispatcher.bench.report import Measurement

__all__ = ["LATENCY_MS", "layouts", "measure_latency"]

LATENCY_MS = 300.0


def layouts(concurrency: int) -> list[Layout]:
    """The ways to spread ``concurrency`` sends over this host's cores."""
    cores = os.cpu_count() or 1
    counts = sorted({1, cores, 2 * cores})
    tried = [Layout(concurrency // n, n) for n in counts if concurrency // n >= 1]
    if importlib.util.find_spec("gevent") is not None:
        tried.append(Layout(concurrency, 1, "gevent"))
    return tried


def measure_latency(count: int, concurrency: int) -> tuple[Measurement, Measurement, Layout]:
    """Throughput and memory, and the layout that won (item 6 runs on it)."""
    bound = concurrency / (LATENCY_MS / 1000)
    runs: dict[Layout, Run] = {
        layout: run_ours(count, layout, LATENCY_MS) for layout in layouts(concurrency)
    }
    # A layout that lost attempts does not win on speed.
    best = max(runs, key=lambda layout: (runs[layout].sends >= count, runs[layout].rate))
    ours = runs[best]
    bare = run_bare(count, best, LATENCY_MS)
    tried = {
        str(layout): {
            "rate": run.rate,
            "ratio_to_bound": run.rate / bound,
            "peak_rss_mb": run.peak_rss_mb,
            "sends": run.sends,
            "complete": run.sends >= count,
        }
        for layout, run in runs.items()
    }
    throughput = Measurement(
        key="latency",
        name=f"3. throughput at {LATENCY_MS:.0f} ms (-c {concurrency})",
        unit="attempts/s",
        ours=ours.rate,
        baseline=bound,
        goal=0.8,
        note=f"baseline is the bound concurrency/latency; best layout: {best}",
        details={
            "attempts": count,
            "concurrency": concurrency,
            "layout": str(best),
            "layouts": tried,
            "bare_celery_rate": bare.rate,
            "bare_celery_ratio_to_bound": bare.rate / bound,
        },
    )
    memory = Measurement(
        key="memory",
        name="5. worker RSS under item 3",
        unit="MB",
        ours=ours.peak_rss_mb,
        baseline=bare.peak_rss_mb,
        lower_is_better=True,
        note=f"peak RSS of one worker process ({best}) vs a bare Celery one (celery, httpx)",
        details={"layout": str(best), "layouts": tried},
    )
    return throughput, memory, best
