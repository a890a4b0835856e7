"""Item 1, HTTP intake: faxes per second through ``POST /v1/faxes`` (one document, an
``Idempotency-Key``) and through the batch API (``POST /v1/batches``: a CSV and its one
document), against a bare FastAPI endpoint served the same way that takes the same
upload and writes one row to the same database (``dispatcher.bench.bare_api``).

Each server is one uvicorn process, as ``faxctl api`` runs it, on a fresh database; the
load comes from this process, ``CONCURRENCY`` requests in flight on one asyncio client,
the same for both. The details give each server's CPU per fax, steadier than the rates
on a shared machine.
"""

from __future__ import annotations

import asyncio
import csv
import io
import itertools
import statistics
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import psutil

from dispatcher.bench.harness import bench_stack
from dispatcher.bench.report import Measurement
from dispatcher.bench.scheduler import new_database, postgres
from dispatcher.bench.workload import document, plain_numbers

__all__ = ["measure_http_intake"]

CONCURRENCY = 16
TOKEN = "bench-" + "t" * 40
BATCH_ROWS = 500
WARM_UP = 50


async def _run(requests: list[Callable[[httpx.AsyncClient], Any]], url: str) -> float:
    """Seconds to make every request, ``CONCURRENCY`` at a time; each must succeed."""
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(
        base_url=url, limits=limits, headers=headers, timeout=120
    ) as client:
        queue = list(reversed(requests))

        async def lane() -> None:
            while queue:
                response = await queue.pop()(client)
                if response.status_code not in (200, 201):
                    raise RuntimeError(f"{response.status_code}: {response.text[:300]}")

        start = time.perf_counter()
        await asyncio.gather(*(lane() for _ in range(CONCURRENCY)))
        return time.perf_counter() - start


def _single(numbers: list[str]) -> list[Callable[[httpx.AsyncClient], Any]]:
    pdf = document()

    def request(number: str) -> Callable[[httpx.AsyncClient], Any]:
        return lambda client: client.post(
            "/v1/faxes",
            data={"to": number, "provider": "interfax"},
            files=[("documents", ("bench.pdf", pdf, "application/pdf"))],
            headers={"Idempotency-Key": uuid.uuid4().hex},
        )

    return [request(number) for number in numbers]


def _batches(numbers: list[str]) -> list[Callable[[httpx.AsyncClient], Any]]:
    pdf = document()

    def upload(chunk: list[str]) -> Callable[[httpx.AsyncClient], Any]:
        rows = io.StringIO()
        writer = csv.writer(rows)
        writer.writerow(["to", "provider", "document"])
        writer.writerows([number, "interfax", "bench.pdf"] for number in chunk)
        body = rows.getvalue().encode()
        return lambda client: client.post(
            "/v1/batches",
            files=[
                ("rows", ("rows.csv", body, "text/csv")),
                ("documents", ("bench.pdf", pdf, "application/pdf")),
            ],
        )

    return [upload(numbers[i : i + BATCH_ROWS]) for i in range(0, len(numbers), BATCH_ROWS)]


@dataclass(frozen=True, slots=True)
class _Side:
    """One server: its rate and the CPU its process spent per fax."""

    rate: float
    cpu_ms: float


def _measure(
    label: str,
    target: str,
    make: Callable[[list[str]], list[Any]],
    numbers: list[str],
    database: Callable[[str], str | None],
) -> _Side:
    """Serve ``target`` on a fresh stack and database; send ``numbers`` through it."""
    factory = target.endswith("create_app")
    with bench_stack(
        label, database_url=database(label), extra_env={"FAX_API_TOKENS": f'["{TOKEN}"]'}
    ) as stack:
        url, process = stack.start_http(
            label, target, factory=factory, ready_path="/healthz" if factory else "/docs"
        )
        asyncio.run(_run(make(numbers[:WARM_UP]), url))
        server = psutil.Process(process.pid)
        cpu = sum(server.cpu_times()[:2])
        seconds = asyncio.run(_run(make(numbers[WARM_UP:]), url))
        faxes = len(numbers) - WARM_UP
        return _Side(faxes / seconds, 1000 * (sum(server.cpu_times()[:2]) - cpu) / faxes)


def measure_http_intake(count: int, rounds: int = 3) -> tuple[Measurement, Measurement]:
    """Single submits against the bare endpoint, and the batch API against our singles,
    on PostgreSQL (the database of a service with many hosts) when it is installed.
    The sides alternate for ``rounds`` rounds and each side's median counts."""
    numbers = plain_numbers(count + WARM_UP)
    batch_numbers = plain_numbers(count * 5 + BATCH_ROWS)
    with postgres() as server:
        names = itertools.count()

        def database(label: str) -> str | None:
            return new_database(server, f"http_{next(names)}") if server else None

        runs = [
            (
                _measure("bare", "dispatcher.bench.bare_api:app", _single, numbers, database),
                _measure("api", "dispatcher.api:create_app", _single, numbers, database),
                _measure("batches", "dispatcher.api:create_app", _batches, batch_numbers, database),
            )
            for _ in range(rounds)
        ]
        backend = "postgresql" if server else "sqlite"
    bare, single, batched = (statistics.median(run[i].rate for run in runs) for i in range(3))
    cpu = {
        side: statistics.median(run[i].cpu_ms for run in runs)
        for i, side in enumerate(("bare", "single", "batches"))
    }
    shape = f"{CONCURRENCY} requests in flight, one uvicorn process each, {backend}"
    details = {
        "faxes": count,
        "concurrency": CONCURRENCY,
        "backend": backend,
        "rounds": [[side.rate for side in run] for run in runs],
        "server_cpu_ms_per_fax": cpu,
    }
    return (
        Measurement(
            key="http_intake",
            name="1b. HTTP intake, POST /v1/faxes",
            unit="faxes/s",
            ours=single,
            baseline=bare,
            goal=0.7,
            note=f"baseline: a bare FastAPI endpoint, same upload, one row; {shape}",
            details=details,
        ),
        Measurement(
            key="http_batches",
            name=f"1c. HTTP intake, batch API ({BATCH_ROWS} rows per upload)",
            unit="faxes/s",
            ours=batched,
            baseline=single,
            goal=5.0,
            note=f"baseline: our single submits (1b); {shape}",
            details={**details, "faxes": len(batch_numbers) - WARM_UP, "rows": BATCH_ROWS},
        ),
    )
