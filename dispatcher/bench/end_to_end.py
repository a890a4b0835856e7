"""Item 6, end to end: faxes through the sandbox from submit to a final state.

A mix over the three providers: most go to plain numbers (they succeed), one in
``SCENARIO_EVERY`` goes to a sandbox scenario number (+12025550100..0107: busy, no
answer, unallocated, invalid, temporary failure, out of credit, partial). Those share
eight lines, which the line lease serializes, so they are kept a small share. Times
are scaled by ``TIME_SCALE`` so backoffs and polls are quick; the bench drives the tick
(as beat would). A provider out of credit pauses itself until its probe goes through.
"""

from __future__ import annotations

import time
from collections import Counter

from sqlalchemy import func, select

from dispatcher.bench.dispatch import Layout
from dispatcher.bench.harness import bench_stack
from dispatcher.bench.report import Measurement
from dispatcher.bench.workload import document, plain_numbers
from dispatcher.lifecycle import FINAL_STATES
from dispatcher.providers.registry import PROVIDERS
from dispatcher.scheduler import tick
from dispatcher.store.db import session_scope
from dispatcher.store.models import Job
from dispatcher.submission import FaxRequest, submit_many

__all__ = ["measure_end_to_end"]

TIME_SCALE = 0.001
SCENARIO_EVERY = 50
SCENARIOS = [f"+1202555010{i}" for i in range(8)]


def _requests(count: int) -> list[FaxRequest]:
    pdf = document()
    plain = iter(plain_numbers(count))
    requests = []
    for i in range(count):
        to = SCENARIOS[(i // SCENARIO_EVERY) % 8] if i % SCENARIO_EVERY == 0 else next(plain)
        # "No answer, every time" gives up after 3 attempts, as in the demo.
        options = {"max_attempts": 3} if to == SCENARIOS[2] else {}
        requests.append(
            FaxRequest(
                to, [("bench.pdf", pdf)], provider=PROVIDERS[i % len(PROVIDERS)], options=options
            )
        )
    return requests


def _states() -> Counter[str]:
    with session_scope() as session:
        rows = session.execute(select(Job.state, func.count()).group_by(Job.state)).all()
    return Counter({str(state): n for state, n in rows})


def measure_end_to_end(
    count: int, layout: Layout, bare_rate: float, timeout: float = 900.0
) -> Measurement:
    final = {state.value for state in FINAL_STATES}
    extra = {"FAX_TICK_INTERVAL": "0.2"}
    with bench_stack("e2e", time_scale=TIME_SCALE, extra_env=extra) as stack:
        stack.start_sandbox()
        for _ in range(layout.processes):
            stack.start_worker(layout.tasks, layout.pool, sends=layout.sends)
        requests = _requests(count)
        start = time.monotonic()
        submit_many(requests, publish=False)
        while True:
            tick()
            states = _states()
            done = sum(n for state, n in states.items() if state in final)
            if done == count or time.monotonic() - start > timeout:
                break
            time.sleep(0.1)
        wall = time.monotonic() - start
        sends = stack.send_count()
    unfinished = "" if done == count else f"; {count - done} not final after {timeout:.0f} s"
    return Measurement(
        key="end_to_end",
        name=f"6. end to end ({count:,} faxes)",
        unit="jobs/s",
        ours=done / wall,
        baseline=bare_rate,
        note=(
            f"{wall:.1f} s wall, submit to final{unfinished}; baseline is the bare Celery "
            "POST rate of item 2 (one send per fax, no polls, no retries)"
        ),
        details={
            "faxes": count,
            "wall_seconds": wall,
            "final_states": dict(states),
            "sandbox_sends": sends,
            "layout": str(layout),
            "time_scale": TIME_SCALE,
        },
    )
