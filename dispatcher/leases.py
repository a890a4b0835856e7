"""The dispatch lease: a job stays its worker's own while the worker is still sending it.

A job is ``dispatching`` from its claim until the provider's answer is recorded. The tick
reconciles a job that has shown no sign of life for FAX_DISPATCH_LEASE (its worker died),
so a worker renews the lease of every job it is still sending, a third of a lease apart. A
send slower than the lease is therefore never judged lost while its worker waits for it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from functools import cache

from sqlalchemy import BindParameter, Engine, bindparam, update

from dispatcher.clock import utcnow
from dispatcher.lifecycle import JobState
from dispatcher.store.models import Job

__all__ = ["LeaseKeeper", "lease_keeper", "renew"]

log = logging.getLogger(__name__)


class LeaseKeeper:
    """Renews, every ``interval`` seconds, the leases of the jobs this process holds.

    ``renew`` gets the held job ids; a failing renewal (a database outage) is logged and
    tried again at the next interval.
    """

    def __init__(self, interval: float, renew: Callable[[Sequence[str]], None]) -> None:
        self.interval = interval
        self._renew = renew
        self._held: dict[str, int] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopped = threading.Event()

    def hold(self, job_ids: Iterable[str]) -> None:
        with self._lock:
            for job_id in job_ids:
                self._held[job_id] = self._held.get(job_id, 0) + 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="lease-keeper", daemon=True)
                self._thread.start()

    def release(self, job_ids: Iterable[str]) -> None:
        with self._lock:
            for job_id in job_ids:
                count = self._held.get(job_id, 0) - 1
                if count > 0:
                    self._held[job_id] = count
                else:
                    self._held.pop(job_id, None)

    def held(self) -> list[str]:
        with self._lock:
            return list(self._held)

    def stop(self) -> None:
        self._stopped.set()

    def _run(self) -> None:
        while not self._stopped.wait(self.interval):
            job_ids = self.held()
            if not job_ids:
                continue
            try:
                self._renew(job_ids)
            except Exception as exc:  # the next interval tries again
                log.warning("could not renew the dispatch lease of %d jobs: %s", len(job_ids), exc)


_IDS: BindParameter[list[str]] = bindparam("ids", expanding=True)
#: A worker's sign of life for the jobs it is sending.
_RENEW = (
    update(Job)
    .where(Job.id.in_(_IDS), Job.state == JobState.DISPATCHING.value)
    .values(updated_at=bindparam("now"), version=Job.version + 1)
    .execution_options(synchronize_session=False)
)


def renew(engine: Engine, job_ids: Sequence[str]) -> None:
    """Renew the dispatch lease of these jobs, those still dispatching."""
    with engine.begin() as connection:
        connection.execute(_RENEW, {"ids": list(job_ids), "now": utcnow()})


@cache
def lease_keeper(engine: Engine, lease: float) -> LeaseKeeper:
    """This process's keeper of the dispatch leases on ``engine``, a third of a lease apart."""
    return LeaseKeeper(lease / 3, lambda job_ids: renew(engine, job_ids))
