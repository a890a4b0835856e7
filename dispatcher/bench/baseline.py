"""The bare Celery baseline: a throwaway app on the same broker, with a no-op task (for
intake) and a task that makes the same InterFAX send our dispatch path makes (for the
dispatch and latency measurements). Same delivery settings as ours (late acks, prefetch
1, JSON), none of our bookkeeping: no database, no guards, no events.

Run by ``celery -A dispatcher.bench.baseline worker -Q bench``; reads FAX_BROKER_URL and
FAX_SANDBOX_URL from the environment, and the document from ``DOCUMENT`` under FAX_HOME
(the bench writes it there): a bare worker imports celery and httpx, and nothing of ours.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

import httpx
from celery import Celery, Task
from kombu import pools

__all__ = ["DOCUMENT", "FINISHED", "QUEUE", "app", "noop", "poll", "post", "publish", "send"]

QUEUE = "bench"
#: The file, under FAX_HOME, of the document the bare sends carry.
DOCUMENT = "bench.pdf"

app = Celery("fax_bench_baseline")
app.conf.update(
    broker_url=os.environ.get("FAX_BROKER_URL"),
    broker_connection_retry_on_startup=True,
    task_ignore_result=True,
    task_serializer="json",
    accept_content=["json"],
    task_acks_late=True,
    worker_prefetch_multiplier=1,
    task_default_queue=QUEUE,
    worker_hijack_root_logger=False,
)


@cache
def _client() -> httpx.Client:
    return httpx.Client(
        base_url=f"{os.environ['FAX_SANDBOX_URL']}/interfax",
        auth=("sandbox", "sandbox"),
        timeout=30,
        limits=httpx.Limits(max_connections=200, max_keepalive_connections=200),
    )


@cache
def _document() -> bytes:
    return (Path(os.environ["FAX_HOME"]) / DOCUMENT).read_bytes()


@app.task(name="bench.noop")
def noop(job_id: str, number: int) -> None:
    """Nothing: intake measures publishing only."""


@app.task(name="bench.post")
def post(to: str, reference: str) -> str:
    """The InterFAX send our adapter makes: the PDF as the body, the fax id in Location."""
    response = _client().post(
        "/outbound/faxes",
        params={"faxNumber": to, "reference": reference},
        content=_document(),
        headers={"Content-Type": "application/pdf"},
    )
    response.raise_for_status()
    return response.headers["Location"]


#: The Redis key the bare whole-fax run counts its finished faxes in.
FINISHED = "bench:finished"


@app.task(name="bench.send")
def send(to: str, reference: str) -> None:
    """A whole fax, bare: the send, then one poll task for its status."""
    poll.apply_async(args=[post(to, reference).rsplit("/", 1)[-1]], queue=QUEUE)


@app.task(name="bench.poll")
def poll(fax_id: str) -> None:
    """One status read of the fax; the fax is then done (counted in ``FINISHED``)."""
    _client().get(f"/outbound/faxes/{fax_id}").raise_for_status()
    with app.pool.acquire(block=True) as connection:
        connection.default_channel.client.incr(FINISHED)


def publish(task: Task, calls: Sequence[Sequence[Any]], broker_url: str) -> float:
    """Seconds to ``apply_async`` each call on one pooled producer, after one warm-up."""
    connection = app.connection_for_write(broker_url)
    with pools.producers[connection].acquire(block=True) as producer:
        task.apply_async(args=list(calls[0]), queue=QUEUE, producer=producer)
        start = time.perf_counter()
        for args in calls[1:]:
            task.apply_async(args=list(args), queue=QUEUE, producer=producer)
        return time.perf_counter() - start
