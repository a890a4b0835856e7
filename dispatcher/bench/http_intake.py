"""Item 1, HTTP intake: faxes per second through ``POST /v1/faxes`` (one document, an
``Idempotency-Key``) and through the batch API (``POST /v1/batches``: a CSV and its one
document), against a bare FastAPI endpoint served the same way that takes the same
upload and writes one row to the same database (``dispatcher.bench.bare_api``).

Each server is one uvicorn process, as ``faxctl api`` runs it; the load comes from this
process, ``CONCURRENCY`` requests in flight on one asyncio client, the same for both.
"""

from __future__ import annotations

import asyncio
import csv
import io
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx

from dispatcher.bench.harness import bench_stack
from dispatcher.bench.report import Measurement
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


def _rate(url: str, make: Callable[[list[str]], list[Any]], numbers: list[str]) -> float:
    asyncio.run(_run(make(numbers[:WARM_UP]), url))
    seconds = asyncio.run(_run(make(numbers[WARM_UP:]), url))
    return (len(numbers) - WARM_UP) / seconds


def measure_http_intake(count: int) -> tuple[Measurement, Measurement]:
    """Single submits against the bare endpoint, and the batch API against our singles."""
    numbers = plain_numbers(count + WARM_UP)
    with bench_stack("http-bare") as stack:
        url, _ = stack.start_http(
            "bare-api", "dispatcher.bench.bare_api:app", factory=False, ready_path="/docs"
        )
        bare = _rate(url, _single, numbers)
    with bench_stack("http-ours", extra_env={"FAX_API_TOKENS": f'["{TOKEN}"]'}) as stack:
        url, _ = stack.start_http(
            "api", "dispatcher.api:create_app", factory=True, ready_path="/healthz"
        )
        single = _rate(url, _single, numbers)
    batch_numbers = plain_numbers(count * 5 + BATCH_ROWS)
    with bench_stack("http-batches", extra_env={"FAX_API_TOKENS": f'["{TOKEN}"]'}) as stack:
        url, _ = stack.start_http(
            "api", "dispatcher.api:create_app", factory=True, ready_path="/healthz"
        )
        batched = _rate(url, _batches, batch_numbers)
    shape = f"{CONCURRENCY} requests in flight, one uvicorn process each"
    return (
        Measurement(
            key="http_intake",
            name="1b. HTTP intake, POST /v1/faxes",
            unit="faxes/s",
            ours=single,
            baseline=bare,
            goal=0.7,
            note=f"baseline: a bare FastAPI endpoint, same upload, one row; {shape}",
            details={"faxes": count, "concurrency": CONCURRENCY},
        ),
        Measurement(
            key="http_batches",
            name=f"1c. HTTP intake, batch API ({BATCH_ROWS} rows per upload)",
            unit="faxes/s",
            ours=batched,
            baseline=single,
            goal=5.0,
            note=f"baseline: our single submits (1b); {shape}",
            details={"faxes": len(batch_numbers) - WARM_UP, "rows_per_upload": BATCH_ROWS},
        ),
    )
