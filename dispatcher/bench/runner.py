"""Runs every measurement in order, each on its own stack; ``quick`` shrinks the sizes
(for the smoke test and a first look), never the shape of the work."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from dispatcher.bench.cost import measure_cost
from dispatcher.bench.dispatch import measure_dispatch
from dispatcher.bench.hosts import measure_hosts
from dispatcher.bench.http_intake import measure_http_intake
from dispatcher.bench.intake import measure_intake
from dispatcher.bench.lanes import measure_lanes
from dispatcher.bench.latency import measure_latency
from dispatcher.bench.purge import measure_purge
from dispatcher.bench.report import Measurement
from dispatcher.bench.scheduler import measure_scheduler
from dispatcher.bench.search import measure_search

__all__ = ["Sizes", "run"]


@dataclass(frozen=True, slots=True)
class Sizes:
    intake: int = 10_000
    http_intake: int = 3_000
    dispatch: int = 2_000
    dispatch_concurrency: int = 8
    dispatch_rounds: int = 3
    latency: int = 2_000
    latency_concurrency: int = 100
    scheduler: int = 100_000
    scheduler_postgres: int = 1_000_000
    end_to_end: int = 10_000
    hosts: int = 3_000
    lanes_backlog: int = 100_000
    search: int = 1_000_000
    purge: int = 1_000_000
    purge_seconds: float = 30.0

    @classmethod
    def quick(cls) -> Sizes:
        return cls(
            intake=500,
            http_intake=200,
            dispatch=200,
            dispatch_rounds=1,
            latency=300,
            scheduler=5_000,
            scheduler_postgres=20_000,
            end_to_end=100,
            hosts=100,
            lanes_backlog=2_000,
            search=20_000,
            purge=20_000,
            purge_seconds=2.0,
        )


def run(sizes: Sizes, progress: Callable[[str], None] = lambda _: None) -> list[Measurement]:
    results: list[Measurement] = []
    progress("intake")
    results.append(measure_intake(sizes.intake))
    progress("HTTP intake")
    results.extend(measure_http_intake(sizes.http_intake))
    progress("dispatch overhead")
    dispatch, bare_rate = measure_dispatch(
        sizes.dispatch, sizes.dispatch_concurrency, sizes.dispatch_rounds
    )
    results.append(dispatch)
    progress("latency-bound throughput and memory")
    throughput, memory, layout = measure_latency(sizes.latency, sizes.latency_concurrency)
    progress("scheduler")
    scheduler = measure_scheduler(sizes.scheduler, sizes.scheduler_postgres)
    progress("end to end")
    cost, end_to_end = measure_cost(sizes.end_to_end, layout, bare_rate)
    progress("end to end across hosts")
    hosts = measure_hosts(sizes.hosts, layout)
    progress("priority lanes")
    lanes = measure_lanes(sizes.lanes_backlog, layout)
    progress("search")
    search = measure_search(sizes.search)
    progress("retention purge")
    purge = measure_purge(sizes.purge, sizes.purge_seconds)
    optional = [m for m in (hosts, search, purge) if m is not None]
    return [*results, throughput, *scheduler, memory, cost, end_to_end, lanes, *optional]
