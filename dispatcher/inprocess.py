"""Submitting and reading faxes in this process, for code on a host with database (and
broker) access: a batch script beside the workers, the demo, the tests. Services on other
hosts use the HTTP client, ``dispatcher.client``.

Usage::

    from dispatcher import inprocess

    job_id = inprocess.submit("+12025550100", [("invoice.pdf", pdf_bytes)],
                              idempotency_key="invoice-42")
    inprocess.get(job_id)["state"]

Everything is validated before anything is written; the same idempotency key never
sends a second fax.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from dispatcher import operations, queries
from dispatcher.submission import FaxRequest, Submitted, submit_many

__all__ = [
    "FaxRequest",
    "Submitted",
    "attempts",
    "cancel",
    "events",
    "get",
    "hold",
    "list",
    "resume",
    "retry",
    "submit",
    "submit_many",
]

get = queries.get_job
attempts = queries.attempts
events = queries.events
list = queries.list_jobs  # noqa: A001  (the client's verb)


def submit(
    to: str,
    documents: Sequence[tuple[str, bytes]],
    provider: str | None = None,
    idempotency_key: str | None = None,
    send_at: datetime | None = None,
    metadata: Mapping[str, Any] | None = None,
    options: Mapping[str, Any] | None = None,
    deadline: datetime | None = None,
) -> str:
    """Accept one fax and return its job id (the existing job's id for a repeated key)."""
    request = FaxRequest(
        to=to,
        documents=documents,
        provider=provider,
        idempotency_key=idempotency_key,
        send_at=send_at,
        metadata=metadata or {},
        options=options or {},
        deadline=deadline,
    )
    return submit_many([request], chunk_size=1)[0].job_id


def cancel(job_id: str) -> dict[str, Any]:
    operations.cancel(job_id)
    return get(job_id)


def hold(job_id: str) -> dict[str, Any]:
    operations.hold(job_id)
    return get(job_id)


def resume(job_id: str) -> dict[str, Any]:
    operations.resume(job_id)
    return get(job_id)


def retry(job_id: str) -> dict[str, Any]:
    operations.retry(job_id)
    return get(job_id)
