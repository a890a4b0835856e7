"""Celery tasks: thin wrappers that take ids and call the dispatcher's services.

Names are stable and say what the task does (Flower shows them); arguments are job ids,
attempt numbers and provider names only.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from celery import Task

from dispatcher import retention, scheduler, sending, tracking, watchdog
from dispatcher.callbacks import delivery
from dispatcher.errors import FaxError
from dispatcher.privacy import mask_numbers
from workers.app import app

log = logging.getLogger(__name__)


class FaxTask(Task):  # type: ignore[misc]
    """Base for every task: a dispatcher error is logged with its context, not retried
    by Celery (the database and the tick decide what happens next)."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            result = super().__call__(*args, **kwargs)
        except FaxError as exc:
            log.warning("%s%r: %s", self.name, args, mask_numbers(str(exc)))
            return mask_numbers(f"error: {exc}")
        return _masked(result)


def _masked(result: Any) -> Any:
    """A result reaches Flower and the worker's log: a provider's words may hold a number."""
    if isinstance(result, str):
        return mask_numbers(result)
    if isinstance(result, dict):
        return {key: _masked(value) for key, value in result.items()}
    return result


@app.task(name="fax.dispatch", base=FaxTask, bind=True)
def dispatch(self: Task, job_id: str, attempt_number: int) -> str:
    """Make one attempt at sending a fax."""
    return sending.dispatch([(job_id, attempt_number)], task_id=self.request.id)[job_id]


@app.task(name="fax.dispatch_many", base=FaxTask, bind=True)
def dispatch_many(self: Task, attempts: Sequence[Sequence[Any]]) -> dict[str, str]:
    """Make a batch of attempts from the tick or a bulk submit (claimed together, sent
    in parallel on the worker's send pool)."""
    batch = [(str(job_id), int(number)) for job_id, number in attempts]
    return sending.dispatch(batch, task_id=self.request.id)


@app.task(name="fax.poll", base=FaxTask)
def poll(provider: str, job_ids: Sequence[str]) -> int:
    """Read the status of a batch of faxes from one provider."""
    return tracking.poll(provider, job_ids)


@app.task(name="fax.reconcile", base=FaxTask)
def reconcile(job_id: str) -> str:
    """Settle a job whose worker stopped mid-send."""
    return sending.reconcile(job_id)


@app.task(name="fax.deliver_callbacks", base=FaxTask)
def deliver_callbacks(delivery_ids: Sequence[str]) -> int:
    """Post callback events on this worker's delivery pool; returns at once."""
    delivery.deliver_soon([str(i) for i in delivery_ids])
    return len(delivery_ids)


@app.task(name="fax.tick", base=FaxTask)
def tick() -> dict[str, int]:
    """Publish due dispatches, polls, reconciles and callback deliveries (run by beat)."""
    report = scheduler.tick()
    return {
        "dispatched": report.dispatched,
        "polled": report.polled,
        "poll_batches": report.poll_batches,
        "reconciled": report.reconciled,
        "callbacks": report.callbacks,
    }


@app.task(name="fax.watchdog", base=FaxTask)
def watch() -> int:
    """Move jobs that waited too long in a state where an operator sees them (run by beat)."""
    return watchdog.watch()


@app.task(name="fax.purge", base=FaxTask)
def purge() -> dict[str, int]:
    """Purge the protected data of ended faxes past their retention (run by beat)."""
    return {kind.value: n for kind, n in retention.purge_expired().jobs.items()}
