"""Items 3 and 5: latency-bound throughput and worker memory, under 300 ms of sandbox
latency on every request.

One worker host runs ``concurrency`` slots; each InterFAX attempt is one POST, so the
bound is concurrency / latency attempts per second. Memory is the peak RSS of the worker
process under that load, against a bare Celery worker of the same pool and concurrency
making the same POST.
"""

from __future__ import annotations

import importlib.util

from dispatcher.bench.dispatch import Run, run_bare, run_ours
from dispatcher.bench.report import Measurement

__all__ = ["LATENCY_MS", "measure_latency"]

LATENCY_MS = 300.0


def measure_latency(count: int, concurrency: int) -> list[Measurement]:
    bound = concurrency / (LATENCY_MS / 1000)
    runs: dict[str, Run] = {"threads": run_ours(count, concurrency, "threads", LATENCY_MS)}
    if importlib.util.find_spec("gevent") is not None:
        runs["gevent"] = run_ours(count, concurrency, "gevent", LATENCY_MS)
    # A pool that lost attempts does not win on speed.
    pool = max(runs, key=lambda name: (runs[name].sends >= count, runs[name].rate))
    ours = runs[pool]
    bare = run_bare(count, concurrency, pool, LATENCY_MS)
    pools = {
        name: {
            "rate": run.rate,
            "ratio_to_bound": run.rate / bound,
            "peak_rss_mb": run.peak_rss_mb,
            "sends": run.sends,
            "complete": run.sends >= count,
        }
        for name, run in runs.items()
    }
    throughput = Measurement(
        key="latency",
        name=f"3. throughput at {LATENCY_MS:.0f} ms (-c {concurrency})",
        unit="attempts/s",
        ours=ours.rate,
        baseline=bound,
        goal=0.8,
        note=f"baseline is the bound concurrency/latency; best pool: {pool}",
        details={
            "attempts": count,
            "concurrency": concurrency,
            "pool": pool,
            "pools": pools,
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
        note=f"peak RSS of the one worker process ({pool}, -c {concurrency}) vs bare Celery",
        details={"pool": pool, "concurrency": concurrency, "pools": pools},
    )
    return [throughput, memory]
