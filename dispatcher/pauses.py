"""Provider pauses: no new send goes through a paused provider, on any worker.

An operator pauses a provider (``faxctl providers pause``); the dispatcher pauses one by
itself when it reports the account out of credit, instead of holding every queued job one
by one. While paused, the provider's pending jobs wait as they are: the tick does not
publish them, and a worker that receives one already queued leaves it pending with the
reason. A pause for credit lets one job through every ``FAX_PAUSE_PROBE_INTERVAL``
seconds (the probe) and ends by itself when a fax through the provider goes through.

The pauses live in the database, so they outlast a broker restart and every host sees
them; the table holds one row per paused provider, so reading it is cheap.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, delete, or_, select, update
from sqlalchemy.orm import Session

from config.settings import get_settings
from dispatcher.clock import utcnow
from dispatcher.errors import ValidationError
from dispatcher.lifecycle import JobState
from dispatcher.store.db import session_scope, upsert
from dispatcher.store.models import Job, ProviderPause
from dispatcher.text import CONTROL

__all__ = [
    "Pause",
    "claim_probes",
    "current",
    "pause",
    "pause_for_credit",
    "paused_reason",
    "recent",
    "resume",
    "resume_after_credit",
]

#: How long a worker trusts its last reading of the pauses (a success's auto-resume).
_CACHE_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class Pause:
    provider: str
    reason: str
    by: str
    since: datetime
    automatic: bool
    next_probe_at: datetime | None
    probe_job_id: str | None

    @property
    def waiting_reason(self) -> str:
        """What a job waiting behind this pause shows."""
        return f"waiting: {self.provider} is paused ({self.reason})"


def current(connection: Connection | Session | None = None) -> dict[str, Pause]:
    """Every paused provider, by name (in the caller's transaction, if one is given)."""
    if connection is None:
        with session_scope() as session:
            return current(session)
    return {
        row.provider: Pause(
            row.provider,
            row.reason,
            row.paused_by,
            row.paused_at,
            row.automatic,
            row.next_probe_at,
            row.probe_job_id,
        )
        for row in connection.execute(select(ProviderPause.__table__))
    }


def _upsert(session: Session, values: dict[str, object], *, replace: bool) -> None:
    """Insert the pause row; on a row already there, replace it or leave it."""
    statement = upsert(session.get_bind().dialect.name, ProviderPause).values(values)
    if replace:
        statement = statement.on_conflict_do_update(index_elements=["provider"], set_=values)
    else:
        statement = statement.on_conflict_do_nothing()
    session.execute(statement)
    _forget()


def pause(provider: str, reason: str, by: str) -> Pause:
    """Pause ``provider`` until an operator resumes it. An operator's pause replaces a
    pause for credit: it does not probe, nor end by itself."""
    if not reason.strip() or CONTROL.search(reason):
        raise ValidationError("reason", "printable text, without control characters")
    values = {
        "provider": provider,
        "reason": reason,
        "paused_by": by,
        "paused_at": utcnow(),
        "automatic": False,
        "next_probe_at": None,
        "probe_job_id": None,
    }
    with session_scope() as session:
        _upsert(session, values, replace=True)
    return current()[provider]


def resume(provider: str) -> bool:
    """End the provider's pause, whoever set it; False if it was not paused. Its waiting
    jobs are due at once: the next tick publishes them."""
    with session_scope() as session:
        ended = session.connection().execute(
            delete(ProviderPause).where(ProviderPause.provider == provider)
        )
    _forget()
    return bool(ended.rowcount)


def pause_for_credit(
    session: Session, provider: str, reason: str, now: datetime, probe_in: float
) -> None:
    """Pause ``provider`` for credit, in the caller's transaction, with its first probe
    ``probe_in`` seconds from ``now``, unless it is paused already (an operator's pause,
    or an earlier job's, stays as it is)."""
    values = {
        "provider": provider,
        "reason": reason,
        "paused_by": "dispatcher",
        "paused_at": now,
        "automatic": True,
        "next_probe_at": now + timedelta(seconds=probe_in),
        "probe_job_id": None,
    }
    _upsert(session, values, replace=False)


def resume_after_credit(session: Session, provider: str) -> None:
    """A fax went through ``provider``: end its pause for credit, if it has one."""
    found = recent(session).get(provider)
    if found is None or not found.automatic:
        return
    session.execute(
        delete(ProviderPause).where(
            ProviderPause.provider == provider, ProviderPause.automatic.is_(True)
        )
    )
    _forget()


def claim_probes(
    session: Session, paused: dict[str, Pause], now: datetime, guard: datetime
) -> list[tuple[str, int, str]]:
    """For each pause for credit whose probe is due, one pending job of its provider to
    send: (job id, its next attempt number, its lane). The pause's next probe moves out in
    the same conditional UPDATE, so two beats never both take one."""
    settings = get_settings()
    interval = timedelta(seconds=settings.scaled(settings.pause_probe_interval))
    probes: list[tuple[str, int, str]] = []
    due = [
        found.provider
        for found in paused.values()
        if found.automatic and found.next_probe_at is not None and found.next_probe_at <= now
    ]
    for provider in due:
        job = session.execute(
            select(Job.id, Job.attempt_count, Job.priority)
            .where(
                Job.state == JobState.PENDING,
                Job.provider == provider,
                or_(Job.next_attempt_at.is_(None), Job.next_attempt_at <= now),
            )
            .order_by(Job.next_attempt_at)
            .limit(1)
        ).first()
        if job is None:
            continue
        connection = session.connection()
        taken = connection.execute(
            update(ProviderPause)
            .where(
                ProviderPause.provider == provider,
                ProviderPause.next_probe_at <= now,
            )
            .values(next_probe_at=now + interval, probe_job_id=job.id)
        ).rowcount
        if not taken:  # another beat took this probe
            continue
        moved = connection.execute(
            update(Job)
            .where(Job.id == job.id, Job.state == JobState.PENDING)
            .values(next_attempt_at=guard)
        ).rowcount
        if moved:
            probes.append((job.id, job.attempt_count + 1, job.priority))
    return probes


def paused_reason(pauses: dict[str, Pause], provider: str, job_id: str) -> str | None:
    """Why a job of ``provider`` may not be sent now; None when it may (the provider is
    not paused, or the job is its probe)."""
    found = pauses.get(provider)
    if found is None or found.probe_job_id == job_id:
        return None
    return found.waiting_reason


_lock = threading.Lock()
_seen: tuple[float, dict[str, Pause]] = (0.0, {})


def recent(session: Session | None = None) -> dict[str, Pause]:
    """``current``, read at most once a second per process: every success and every job
    shown asks, and almost always the answer is none. Never for a decision to send."""
    global _seen
    with _lock:
        read_at, found = _seen
        if time.monotonic() - read_at < _CACHE_SECONDS:
            return found
    fresh = current(session)
    with _lock:
        _seen = (time.monotonic(), fresh)
    return fresh


def _forget() -> None:
    global _seen
    with _lock:
        _seen = (0.0, {})
