"""``GET /metrics``: Prometheus text, computed from the database and broker at scrape time.

A custom collector reads the truth on every scrape (jobs by state, attempts by provider
and remediation, the oldest due job, broker queue depths) rather than counting in this
process: the API may run as several processes, and the workers change the rows.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import redis
from fastapi import APIRouter, Depends, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import and_, case, func, or_, select

from dispatcher import guards
from dispatcher.api.auth import require_operator
from dispatcher.clock import utcnow
from dispatcher.lifecycle import JobState
from dispatcher.messaging import queue_depths
from dispatcher.providers.registry import PROVIDERS
from dispatcher.resilience import BreakerState
from dispatcher.store.db import session_scope
from dispatcher.store.models import Attempt, Job
from dispatcher.watchdog import STALLED

__all__ = ["FaxCollector", "metrics", "router"]

log = logging.getLogger(__name__)


class FaxCollector(Collector):
    """Gauges read fresh from the results store and the broker on each scrape."""

    def collect(self) -> Iterator[Metric]:
        yield from self._database()
        depth = self._queue_depth()
        if depth is not None:
            yield depth
            yield from self._breakers()

    def _database(self) -> Iterator[Metric]:
        now = utcnow()
        due = or_(
            and_(Job.state == JobState.PENDING, Job.next_attempt_at <= now),
            and_(Job.state == JobState.IN_PROGRESS, Job.next_poll_at <= now),
        )
        with session_scope() as session:
            states = dict(
                session.execute(select(Job.state, func.count()).group_by(Job.state)).all()
            )
            attempts = session.execute(
                select(Attempt.provider, Attempt.remediation, func.count()).group_by(
                    Attempt.provider, Attempt.remediation
                )
            ).all()
            due_at = case(
                (Job.state == JobState.PENDING, Job.next_attempt_at), else_=Job.next_poll_at
            )
            oldest = session.scalar(select(func.min(due_at)).where(due))
            stalled = session.scalar(
                select(func.count()).where(
                    Job.state == JobState.HELD, Job.reason.startswith(STALLED)
                )
            )
        jobs = GaugeMetricFamily("fax_jobs", "Jobs by state.", labels=["state"])
        for state in JobState:
            jobs.add_metric([state.value], states.get(state.value, 0))
        yield jobs
        by_remediation = GaugeMetricFamily(
            "fax_attempts",
            "Attempts by provider and the remediation of their outcome (none: no answer yet).",
            labels=["provider", "remediation"],
        )
        for provider, remediation, count in attempts:
            by_remediation.add_metric([provider, remediation or "none"], count)
        yield by_remediation
        age = (now - oldest).total_seconds() if oldest is not None else 0.0
        yield GaugeMetricFamily(
            "fax_stalled_jobs",
            "Jobs the watchdog held because they waited past their state's maximum age.",
            value=stalled or 0,
        )
        yield GaugeMetricFamily(
            "fax_oldest_due_job_age_seconds",
            "How long the longest-waiting due send or poll has been due (0: none is due).",
            value=max(age, 0.0),
        )

    def _queue_depth(self) -> Metric | None:
        """Messages waiting per queue; left out (and logged) while the broker is down."""
        try:
            depths = queue_depths()
        except redis.RedisError as exc:
            log.warning("metrics: broker unreachable: %s", type(exc).__name__)
            return None
        depth = GaugeMetricFamily(
            "fax_queue_depth", "Messages waiting in each broker queue.", labels=["queue"]
        )
        for queue, length in depths.items():
            depth.add_metric([queue], length)
        return depth

    def _breakers(self) -> Iterator[Metric]:
        state = GaugeMetricFamily(
            "fax_provider_circuit_open",
            "1 while a provider's circuit breaker is open or half-open, else 0.",
            labels=["provider"],
        )
        failures = GaugeMetricFamily(
            "fax_provider_consecutive_failures",
            "Consecutive transport failures or 5xx answers of each provider.",
            labels=["provider"],
        )
        for provider in PROVIDERS:
            status = guards.breaker(provider).status()
            state.add_metric([provider], int(status.state is not BreakerState.CLOSED))
            failures.add_metric([provider], status.failures)
        yield state
        yield failures


_registry = CollectorRegistry(auto_describe=False)
_registry.register(FaxCollector())


router = APIRouter(tags=["operations"], dependencies=[Depends(require_operator)])


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics() -> Response:
    return Response(generate_latest(_registry), media_type=CONTENT_TYPE_LATEST)
