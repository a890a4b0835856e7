"""``GET /metrics``: Prometheus text, computed from the database and broker at scrape time.

A custom collector reads the truth on every scrape (jobs by state, attempts by provider,
remediation, code family and pages sent, callback deliveries, paused providers, the
oldest due job, broker queue depths, breakers and send latency, which the workers keep
in Redis) rather than counting in this process: the API may run as several processes,
and the workers on many hosts change the rows. Every API process reports the same
numbers, so a query aggregates them with ``max``, never ``sum``.

The ``_total`` series are counters because what they count is never deleted: retention
scrubs attempts' errors but keeps the rows (and their pages and codes).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from datetime import datetime

import redis
from fastapi import APIRouter, Depends, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from dispatcher import guards, latency, pauses
from dispatcher.api.auth import require_operator
from dispatcher.callbacks.delivery import DELIVERED, FAILED, PENDING
from dispatcher.catalogue import Family, Outcome, classify, classify_transport
from dispatcher.catalogue.transport import canonical_kind
from dispatcher.clock import utcnow
from dispatcher.errors import ConfigurationError
from dispatcher.lifecycle import JobState
from dispatcher.messaging import queue_depths
from dispatcher.providers.registry import PROVIDERS
from dispatcher.queries import oldest_due_at, state_counts
from dispatcher.resilience import BreakerState
from dispatcher.store.db import session_scope
from dispatcher.store.models import Attempt, CallbackDelivery, Job
from dispatcher.watchdog import STALLED

__all__ = ["FaxCollector", "metrics", "router"]

log = logging.getLogger(__name__)


class FaxCollector(Collector):
    """Metrics read fresh from the results store and the broker on each scrape."""

    def collect(self) -> Iterator[Metric]:
        yield from self._database()
        depth = self._queue_depth()
        if depth is not None:
            yield depth
            yield from self._breakers()
            yield from self._latency()

    def _database(self) -> Iterator[Metric]:
        now = utcnow()
        with session_scope() as session:
            paused = set(pauses.current(session))
            read = [
                *_jobs(session, now, paused),
                *_attempts(session),
                *_callbacks(session),
                _paused(paused),
            ]
        yield from read

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

    def _latency(self) -> Iterator[Metric]:
        """The workers' send latency histograms (``dispatcher.latency``)."""
        try:
            histograms = latency.read(PROVIDERS)
        except redis.RedisError as exc:
            log.warning("metrics: send latency unreadable: %s", type(exc).__name__)
            return
        family = HistogramMetricFamily(
            "fax_send_latency_seconds",
            "Seconds from the start of a send call to the provider's answer (accepted or "
            "refused; transport failures are left out).",
            labels=["provider"],
        )
        for provider, histogram in histograms.items():
            family.add_metric([provider], histogram.buckets, histogram.sum)
        yield family


def _jobs(session: Session, now: datetime, paused: set[str]) -> Iterator[Metric]:
    """Jobs by state, stalled jobs, and the oldest due work. A paused provider's pending
    jobs are not due: they wait for its resume (``fax_provider_paused`` says so), and
    must not read as workers falling behind."""
    states = state_counts(session)
    oldest = oldest_due_at(session, now, paused)
    stalled = session.scalar(
        select(func.count()).where(Job.state == JobState.HELD, Job.reason.startswith(STALLED))
    )
    jobs = GaugeMetricFamily("fax_jobs", "Jobs by state.", labels=["state"])
    for state, count in states.items():
        jobs.add_metric([state], count)
    yield jobs
    age = (now - oldest).total_seconds() if oldest is not None else 0.0
    yield GaugeMetricFamily(
        "fax_stalled_jobs",
        "Jobs the watchdog held because they waited past their state's maximum age.",
        value=stalled or 0,
    )
    yield GaugeMetricFamily(
        "fax_oldest_due_job_age_seconds",
        "How long the longest-waiting due send or poll has been due (0: none is due; "
        "a paused provider's sends are not due).",
        value=max(age, 0.0),
    )


def _attempts(session: Session) -> Iterator[Metric]:
    """Attempts by remediation, finished attempts by code family, and pages sent, from
    the one grouped read of the attempts ``fax_attempts`` always made: what it returns
    is bounded by the providers' codes, not by traffic."""
    rows = session.execute(
        select(
            Attempt.provider,
            Attempt.remediation,
            Attempt.status_code,
            Attempt.outcome,
            func.count(),
            func.sum(Attempt.pages_sent),
        ).group_by(Attempt.provider, Attempt.remediation, Attempt.status_code, Attempt.outcome)
    ).all()
    by_remediation: Counter[tuple[str, str]] = Counter()
    finished: Counter[tuple[str, str, str]] = Counter()
    pages = Counter(dict.fromkeys(PROVIDERS, 0))
    for provider, remediation, code, outcome, count, pages_sent in rows:
        by_remediation[provider, remediation or "none"] += count
        pages[provider] += pages_sent or 0
        if outcome is not None and outcome != Outcome.IN_PROGRESS and code is not None:
            finished[provider, _family(provider, code), outcome] += count
    attempts = GaugeMetricFamily(
        "fax_attempts",
        "Attempts by provider and the remediation of their outcome (none: no answer yet).",
        labels=["provider", "remediation"],
    )
    for (provider, remediation), count in by_remediation.items():
        attempts.add_metric([provider, remediation], count)
    yield attempts
    ended = CounterMetricFamily(
        "fax_attempts_finished",
        "Attempts with a final answer, by provider, code family and outcome "
        "(success, partial, failure, cancelled).",
        labels=["provider", "family", "outcome"],
    )
    for (provider, family, outcome), count in finished.items():
        ended.add_metric([provider, family, outcome], count)
    yield ended
    sent = CounterMetricFamily(
        "fax_pages_sent", "Pages the provider reported transmitted.", labels=["provider"]
    )
    for provider, count in pages.items():
        sent.add_metric([provider], count)
    yield sent


def _family(provider: str, code: str) -> str:
    """The family of an attempt's code: a transport failure's (``timeout``, ``http_503``)
    or the provider's table's (its default for a code it does not list)."""
    if code.startswith("http_") or canonical_kind(code) == code:
        return classify_transport(provider, code).family.value
    try:
        return classify(provider, code).family.value
    except ConfigurationError:  # a provider no longer installed
        return Family.UNKNOWN.value


def _callbacks(session: Session) -> Iterator[Metric]:
    rows = session.execute(
        select(
            CallbackDelivery.state,
            func.count(),
            func.sum(case((CallbackDelivery.attempts > 0, 1), else_=0)),
        ).group_by(CallbackDelivery.state)
    ).all()
    deliveries = GaugeMetricFamily(
        "fax_callback_deliveries",
        "Callback events by delivery state (failed: every retry was refused).",
        labels=["state"],
    )
    counts = {state: count for state, count, _ in rows}
    for state in (PENDING, DELIVERED, FAILED):
        deliveries.add_metric([state], counts.get(state, 0))
    yield deliveries
    retrying = sum(tried for state, _, tried in rows if state == PENDING)
    yield GaugeMetricFamily(
        "fax_callback_deliveries_retrying",
        "Pending callback events whose receiver refused or missed a try already.",
        value=retrying or 0,
    )


def _paused(paused: set[str]) -> Metric:
    gauge = GaugeMetricFamily(
        "fax_provider_paused",
        "1 while a provider is paused (by an operator, or for credit), else 0.",
        labels=["provider"],
    )
    for provider in PROVIDERS:
        gauge.add_metric([provider], int(provider in paused))
    return gauge


_registry = CollectorRegistry(auto_describe=False)
_registry.register(FaxCollector())


router = APIRouter(tags=["operations"], dependencies=[Depends(require_operator)])


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics() -> Response:
    return Response(generate_latest(_registry), media_type=CONTENT_TYPE_LATEST)
