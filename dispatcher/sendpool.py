"""The process's send pool: at most ``FAX_SEND_CONCURRENCY`` provider sends at once.

A batch reserves slots before it claims jobs, and a claimed job's send starts on its
slot at once. A claimed job that waited for a slot instead could sit in ``dispatching``
past ``FAX_DISPATCH_LEASE``, be reconciled as lost, and then be sent twice.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from functools import cache
from typing import TypeVar

from config.settings import get_settings

__all__ = ["SendPool", "send_pool"]

T = TypeVar("T")
R = TypeVar("R")


class SendPool:
    """Slots that a batch reserves, and the threads its sends run on."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("a send pool needs at least one slot")
        self.size = size
        self._free = size
        self._changed = threading.Condition()
        self._threads = ThreadPoolExecutor(max_workers=size, thread_name_prefix="fax-send")

    @property
    def free(self) -> int:
        return self._free

    def reserve(self, wanted: int, *, wait: float = 0.0) -> int:
        """Reserve up to ``wanted`` slots and say how many; wait up to ``wait`` seconds
        for at least one to be free (a batch with no send of its own in flight has
        nothing else to do meanwhile)."""
        with self._changed:
            if wait > 0:
                self._changed.wait_for(lambda: self._free > 0, timeout=wait)
            taken = min(wanted, self._free)
            self._free -= taken
            return taken

    def release(self, count: int = 1) -> None:
        """Give back slots that were reserved and not used."""
        if count:
            with self._changed:
                self._free += count
                self._changed.notify_all()

    def submit(self, send: Callable[[T], R], item: T) -> Future[R]:
        """Run ``send(item)`` on a reserved slot; the slot is free again when it returns."""

        def run() -> R:
            try:
                return send(item)
            finally:
                self.release()

        future = self._threads.submit(run)
        future.add_done_callback(self._wake)
        return future

    def wait_until(self, condition: Callable[[], bool], timeout: float | None = None) -> bool:
        """Block until ``condition()`` holds or ``timeout`` passes; it is checked again
        whenever a slot frees or a send finishes (so it may look at ``free`` and at its
        sends' futures). Returns the last answer."""
        with self._changed:
            return self._changed.wait_for(condition, timeout)

    def _wake(self, _: Future[R]) -> None:
        with self._changed:
            self._changed.notify_all()


@cache
def _pool(pid: int, size: int) -> SendPool:
    return SendPool(size)


def send_pool() -> SendPool:
    """This process's pool (a forked worker child builds its own: threads do not fork)."""
    return _pool(os.getpid(), get_settings().send_concurrency)
