"""Item 7, end to end across worker hosts: the same faxes sent by one worker host, then by
two, on PostgreSQL. Each host is its own FAX_HOME and working directory and shares only
the database, broker and sandbox URLs with the others, as on separate machines; the bench
drives the tick, as beat would. The ratio is how far a second host scales (on one machine
both hosts share its cores)."""

from __future__ import annotations

import time

from dispatcher.bench.dispatch import Layout
from dispatcher.bench.harness import bench_stack
from dispatcher.bench.report import Measurement
from dispatcher.bench.scheduler import new_database, postgres
from dispatcher.bench.workload import document, plain_numbers
from dispatcher.lifecycle import FINAL_STATES
from dispatcher.providers.registry import PROVIDERS
from dispatcher.queries import count_final
from dispatcher.scheduler import tick
from dispatcher.submission import FaxRequest, submit_many

__all__ = ["measure_hosts"]

TIME_SCALE = 0.001


def _run(hosts: int, count: int, layout: Layout, database_url: str) -> tuple[float, int]:
    """Seconds from submit to the last final state, and how many ended."""
    extra = {"FAX_TICK_INTERVAL": "0.2"}
    with bench_stack(
        f"hosts-{hosts}", time_scale=TIME_SCALE, database_url=database_url, extra_env=extra
    ) as stack:
        stack.start_sandbox()
        for host in range(hosts):
            home = stack.home / f"host-{host}"
            home.mkdir()
            for _ in range(layout.processes):
                stack.start_worker(layout.tasks, layout.pool, sends=layout.sends, home=home)
        pdf = document()
        requests = [
            FaxRequest(to, [("bench.pdf", pdf)], provider=PROVIDERS[i % len(PROVIDERS)])
            for i, to in enumerate(plain_numbers(count))
        ]
        start = time.monotonic()
        submit_many(requests, publish=False)
        done = 0
        while done < count and time.monotonic() - start < 600:
            tick()
            done = count_final()
            time.sleep(0.1)
        return time.monotonic() - start, done


def measure_hosts(count: int, layout: Layout) -> Measurement | None:
    """None without PostgreSQL (the embedded server is a dev extra)."""
    with postgres() as server:
        if server is None:
            return None
        one, done_one = _run(1, count, layout, new_database(server, "fax_bench_one_host"))
        two, done_two = _run(2, count, layout, new_database(server, "fax_bench_two_hosts"))
    final = {state.value for state in FINAL_STATES}
    return Measurement(
        key="hosts",
        name=f"7. end to end, 2 worker hosts vs 1 ({count:,} faxes)",
        unit="jobs/s",
        ours=done_two / two,
        baseline=done_one / one,
        note=(
            f"each host {layout}; one host {one:.1f} s, two hosts {two:.1f} s, submit to "
            f"final ({sorted(final)}); the hosts share this machine's cores"
        ),
        details={
            "faxes": count,
            "one_host_seconds": one,
            "two_hosts_seconds": two,
            "final": {"one_host": done_one, "two_hosts": done_two},
            "layout": str(layout),
            "time_scale": TIME_SCALE,
        },
    )
