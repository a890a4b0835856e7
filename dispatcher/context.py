"""What sending, tracking and outcomes work with, in one small object: a ``Context``.

The database engine, the providers' adapters, the document store, the shared guards
(Redis), the publisher (the broker), the retry policy, the settings, the clock and the
random source. ``current()`` builds the real one from the settings; a test builds its own
with an in-memory provider twin (``dispatcher.providers.twin``), guards that keep their
state in memory and a publisher that records what it was asked to publish.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from config.settings import Settings, get_settings
from dispatcher import guards, messaging
from dispatcher.clock import utcnow
from dispatcher.guards import Hold, LineChange, Send
from dispatcher.lanes import Priority
from dispatcher.leases import LeaseKeeper, lease_keeper
from dispatcher.policy import Policy
from dispatcher.providers.base import ProviderAdapter
from dispatcher.resilience import BreakerStatus
from dispatcher.runtime import document_store, get_adapter, policy
from dispatcher.sendpool import SendPool, send_pool
from dispatcher.store.db import get_engine, session_scope
from dispatcher.store.documents import DocumentStore

__all__ = ["BrokerPublisher", "Context", "Guards", "Publisher", "RedisGuards", "current"]


class Guards(Protocol):
    """What may hold a send or a status read back, shared by every worker."""

    def check_sends(self, sends: Sequence[Send]) -> list[Hold | None]: ...

    def change_lines(self, changes: Sequence[LineChange]) -> None: ...

    def share_busy(self, number: str, seconds: float) -> None: ...

    def breaker(self, provider: str) -> BreakerStatus | None:
        """None while the provider may be called; else its open breaker."""
        ...

    def status_read_wait(self, provider: str) -> float: ...


class Publisher(Protocol):
    """Where work goes to the workers: ids only."""

    def dispatch(
        self,
        attempts: Iterable[tuple[str, int]],
        countdown: float | None = None,
        priority: Priority = Priority.NORMAL,
    ) -> None: ...

    def poll(self, provider: str, job_ids: Sequence[str]) -> None: ...


class RedisGuards:
    """The real guards: breakers, rate limits and line leases in Redis (``dispatcher.guards``)."""

    check_sends = staticmethod(guards.check_sends)
    change_lines = staticmethod(guards.change_lines)
    share_busy = staticmethod(guards.share_busy)
    status_read_wait = staticmethod(guards.status_read_wait)

    @staticmethod
    def breaker(provider: str) -> BreakerStatus | None:
        circuit = guards.breaker(provider)
        return None if circuit.allow() else circuit.status()


class BrokerPublisher:
    """The real publisher: Celery messages on the broker (``dispatcher.messaging``)."""

    dispatch = staticmethod(messaging.publish_dispatch)
    poll = staticmethod(messaging.publish_poll)


@dataclass(frozen=True)
class Context:
    """The collaborators of one piece of work; see the module docstring."""

    engine: Engine
    adapter: Callable[[str], ProviderAdapter]
    documents: DocumentStore
    guards: Guards
    publisher: Publisher
    policy: Policy
    settings: Settings
    pool: SendPool
    leases: LeaseKeeper
    clock: Callable[[], datetime] = utcnow
    rng: random.Random = field(default_factory=random.Random)

    def now(self) -> datetime:
        return self.clock()

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session that commits on success and rolls back on error."""
        with session_scope(self.engine) as session:
            yield session


def current() -> Context:
    """The real context of this process, from its settings."""
    settings = get_settings()
    engine = get_engine()
    return Context(
        engine=engine,
        adapter=get_adapter,
        documents=document_store(settings),
        guards=RedisGuards(),
        publisher=BrokerPublisher(),
        policy=policy(),
        settings=settings,
        pool=send_pool(),
        leases=lease_keeper(engine, settings.dispatch_lease),
    )
