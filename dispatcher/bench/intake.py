"""Item 1, intake: ``submit_many`` against a bare Celery ``apply_async`` loop.

Ours is the bulk path, ``submit_many(publish=False)``: validation, document and job rows
in chunked transactions, and no message per job (the rows are due at once and the tick
publishes them in batches). The details also give ``publish=True``, which sends one
message per job after each commit.
"""

from __future__ import annotations

import time
import uuid

from dispatcher.bench.baseline import noop, publish
from dispatcher.bench.harness import bench_stack
from dispatcher.bench.report import Measurement
from dispatcher.bench.workload import interfax_requests
from dispatcher.submission import submit_many

__all__ = ["measure_intake"]


def _submit(count: int, publish: bool) -> float:
    requests = interfax_requests(count)
    start = time.perf_counter()
    submit_many(requests, publish=publish)
    return time.perf_counter() - start


def measure_intake(count: int) -> Measurement:
    with bench_stack("intake") as stack:
        submit_many(interfax_requests(10), publish=False)  # warm-up: engine, catalogue
        ours = _submit(count, publish=False)
        calls = [(uuid.uuid4().hex, 1) for _ in range(count + 1)]
        bare = publish(noop, calls, stack.env["FAX_BROKER_URL"])
    with bench_stack("intake-publish"):
        submit_many(interfax_requests(10), publish=True)
        published = _submit(count, publish=True)
    return Measurement(
        key="intake",
        name="1. intake",
        unit="jobs/s",
        ours=count / ours,
        baseline=count / bare,
        goal=2.0,
        note="ours: submit_many(publish=False); baseline: apply_async of a no-op, same broker",
        details={
            "jobs": count,
            "ours_seconds": ours,
            "baseline_seconds": bare,
            "publish_true_seconds": published,
            "publish_true_jobs_per_second": count / published,
        },
    )
