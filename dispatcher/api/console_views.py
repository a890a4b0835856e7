"""What the console's pages show, built from the dispatcher's own reads (``queries``, the
catalogue, the guards) and rendered by Jinja2 with autoescaping on.

Numbers are protected health information: lists show them masked
(``privacy.mask_number``); only a fax's own page shows its number whole.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import redis
from jinja2 import Environment, PackageLoader, StrictUndefined
from sqlalchemy import select

from dispatcher import pauses, queries
from dispatcher.catalogue import Family, Remediation, StatusEntry, classify, classify_transport
from dispatcher.catalogue.transport import canonical_kind
from dispatcher.clock import utcnow
from dispatcher.errors import ConfigurationError, NotFound, ValidationError
from dispatcher.lifecycle import OPERATOR_MOVES, JobState
from dispatcher.messaging import queue_depths
from dispatcher.privacy import mask_number, mask_numbers
from dispatcher.provider_status import provider_rows
from dispatcher.providers.registry import PROVIDERS, provider_name
from dispatcher.queries import Search
from dispatcher.store.db import session_scope
from dispatcher.store.models import Job, Tenant
from dispatcher.validation import normalize_number

__all__ = [
    "ACTIONS",
    "JOB_ID",
    "PAGE_SIZE",
    "PROVIDER_ACTIONS",
    "Action",
    "JobFilters",
    "TimelineEntry",
    "allowed",
    "explain",
    "fax_context",
    "jobs_context",
    "provider_context",
    "providers_context",
    "render",
    "state_counts",
]

PAGE_SIZE = 50
JOB_ID = re.compile(r"[0-9a-f]{32}")
_NUMBER_LIKE = re.compile(r"\+[0-9][0-9 ().-]{6,}")  # E.164 starts with +


def _when(value: datetime | str | None) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _seconds(value: float) -> str:
    """``95.0`` -> ``1 min 35 s``: a short duration an operator reads at a glance."""
    whole = round(abs(value))
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60} s"
    if whole < 86400:
        return f"{whole // 3600} h {whole % 3600 // 60} min"
    return f"{whole // 86400} d {whole % 86400 // 3600} h"


def _relative(value: datetime | str | None, now: datetime) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    delta = (value - now).total_seconds()
    if abs(delta) < 1:
        return "now"
    return f"in {_seconds(delta)}" if delta > 0 else f"{_seconds(delta)} ago"


_ENV = Environment(
    loader=PackageLoader("dispatcher.api", "templates/console"),
    autoescape=True,  # every value is HTML-escaped, whatever the template
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_ENV.filters["when"] = _when
_ENV.filters["masked"] = mask_number
_ENV.filters["seconds"] = _seconds


def render(template: str, **context: Any) -> str:
    return _ENV.get_template(template).render(**context)


# -- the jobs page ----------------------------------------------------------------------


def _time(field: str, raw: str) -> datetime | None:
    """A time from a form: ISO 8601, or a browser's ``datetime-local`` (taken as UTC)."""
    if not raw.strip():
        return None
    try:
        value = datetime.fromisoformat(raw.strip())
    except ValueError:
        raise ValidationError(field, "must be a time like 2030-01-31T09:00 (UTC)") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class JobFilters:
    """The jobs page's filters and search box, as the query string gives them (text)."""

    state: str = ""
    provider: str = ""
    remediation: str = ""
    family: str = ""
    batch: str = ""
    tenant: str = ""
    since: str = ""
    until: str = ""
    q: str = ""

    @classmethod
    def from_query(cls, params: Mapping[str, str]) -> JobFilters:
        return cls(**{f.name: params.get(f.name, "").strip()[:255] for f in fields(cls)})

    def items(self) -> list[tuple[str, str]]:
        """The filters given, as (name, value): links and hidden fields repeat them (an
        "act on all matching" form posts them back)."""
        return [(f.name, getattr(self, f.name)) for f in fields(self) if getattr(self, f.name)]

    def query(self, **extra: str) -> str:
        return urlencode([*self.items(), *((k, v) for k, v in extra.items() if v)])

    def job_id(self) -> str | None:
        """The fax the search box names by its id, if it does."""
        q = self.q.lower()
        return q if JOB_ID.fullmatch(q) else None

    def search(self) -> Search:
        """The ``queries.Search`` these filters ask for; ``ValidationError`` for a bad one.

        The search box finds a fax by destination number (``+`` and digits), by
        ``key=value`` of its metadata, or else by its idempotency key (a tenant's: choose
        the tenant too).
        """
        if self.state and self.state not in set(JobState):
            raise ValidationError("state", f"unknown state {self.state!r}")
        if self.remediation and self.remediation not in set(Remediation):
            raise ValidationError("remediation", f"unknown remediation {self.remediation!r}")
        q = self.q
        number = normalize_number(q, "q") if _NUMBER_LIKE.fullmatch(q) else None
        pairs = queries.metadata_pairs([q]) if q and not number and "=" in q else {}
        return Search(
            state=self.state or None,
            provider=provider_name(self.provider) if self.provider else None,
            remediation=self.remediation or None,
            family=self.family or None,
            batch_id=self.batch or None,
            tenant_id=self.tenant or None,
            since=_time("since", self.since),
            until=_time("until", self.until),
            to=number,
            metadata=pairs,
            idempotency_key=q if q and not number and not pairs else None,
        )


def _tenants() -> dict[str, str]:
    with session_scope() as session:
        return dict(session.execute(select(Tenant.id, Tenant.name).order_by(Tenant.name)).all())


def state_counts() -> dict[str, int]:
    with session_scope() as session:
        return queries.state_counts(session)


def _row(job: dict[str, Any], tenants: Mapping[str, str]) -> dict[str, Any]:
    """A job as a list shows it: the number masked, and the reason's numbers too."""
    return {
        **job,
        "to": mask_number(job["to"]),
        "reason": mask_numbers(job["reason"] or ""),
        "tenant": tenants.get(job.get("tenant_id") or "", ""),
    }


def jobs_context(filters: JobFilters, before: str | None) -> dict[str, Any]:
    """The jobs page: counts by state, the filter form's choices, and a page of jobs."""
    tenants = _tenants()
    context: dict[str, Any] = {
        "filters": filters,
        "counts": state_counts(),
        "states": [s.value for s in JobState],
        "providers": PROVIDERS,
        "remediations": [r.value for r in Remediation],
        "families": [f.value for f in Family],
        "actions": list(ACTIONS.values()),
        "tenants": tenants,
        "rows": [],
        "next": None,
        "before": before,
        "error": None,
    }
    try:
        search = filters.search()
        jobs = queries.list_jobs(search, limit=PAGE_SIZE + 1, before=before)
    except ValidationError as exc:
        context["error"] = f"{exc.field}: {exc.reason}"
        return context
    tenant_of = _job_tenants([j["id"] for j in jobs[:PAGE_SIZE]])
    context["rows"] = [
        _row({**j, "tenant_id": tenant_of.get(j["id"])}, tenants) for j in jobs[:PAGE_SIZE]
    ]
    if len(jobs) > PAGE_SIZE:
        context["next"] = filters.query(before=jobs[PAGE_SIZE - 1]["id"])
    return context


def _job_tenants(job_ids: list[str]) -> dict[str, str | None]:
    if not job_ids:
        return {}
    with session_scope() as session:
        rows = session.execute(select(Job.id, Job.tenant_id).where(Job.id.in_(job_ids)))
        return {job_id: tenant_id for job_id, tenant_id in rows}


# -- a fax's page -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Action:
    """An operator's action (on a fax, or a provider), as the console offers it."""

    name: str
    label: str
    effect: str


ACTIONS: dict[str, Action] = {
    a.name: a
    for a in (
        Action(
            "cancel",
            "Cancel",
            "The fax is stopped for good: cancelled at the provider too when it is in "
            "progress there. Nothing more is sent.",
        ),
        Action("hold", "Hold", "The fax is kept from being sent until it is resumed."),
        Action("resume", "Resume", "The held fax is sent again at once."),
        Action(
            "retry",
            "Retry",
            "The failed fax gets a fresh attempt budget and is sent again at once.",
        ),
        Action("push", "Push", "The pending fax is sent now: its send time and any wait go."),
    )
}


def explain(provider: str | None, code: str | None) -> StatusEntry | None:
    """The catalogue's entry for a status code seen: the provider's table first, then the
    transport failures (``timeout``, ``http_503``...), then the provider's safe default."""
    if not provider or not code:
        return None
    try:
        entry = classify(provider, code)
    except ConfigurationError:  # a provider no longer configured
        return None
    if not entry.known and (canonical_kind(code) == code or code.startswith("http_")):
        return classify_transport(provider, code)
    return entry


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    """One line of a fax's history: an attempt made, or a status or action recorded."""

    at: str | None
    kind: str  # "attempt" or the event's source
    title: str
    code: str | None = None
    entry: StatusEntry | None = None
    moved: str | None = None  # "pending → failed"
    detail: str | None = None
    actor: str | None = None
    notes: tuple[str, ...] = ()


def _attempt_entry(attempt: dict[str, Any]) -> TimelineEntry:
    n, provider = attempt["number"], attempt["provider"]
    if attempt["kind"] == "provider_retry":
        title = f"Attempt {n}: {provider} resends its own copy"
    else:
        title = f"Attempt {n} sent to {provider}"
    notes = [
        f"{label}: {value}"
        for label, value in (
            ("provider fax id", attempt["provider_fax_id"]),
            ("accepted", _when(attempt["submitted_at"])),
            ("finished", _when(attempt["finished_at"])),
            ("pages sent", attempt["pages_sent"]),
            ("error", attempt["error"]),
        )
        if value not in (None, "")
    ]
    if attempt["unsettled"]:
        notes.append("its answer was lost: not yet known whether the provider has it")
    return TimelineEntry(
        at=attempt["started_at"],
        kind="attempt",
        title=title,
        code=attempt["code"],
        entry=explain(provider, attempt["code"]),
        notes=tuple(notes),
    )


def _event_entry(event: dict[str, Any], provider: str) -> TimelineEntry:
    moved = None
    if event["from"] and event["to"] and event["from"] != event["to"]:
        moved = f"{event['from']} → {event['to']}"
    what = {
        "dispatch": "Send answered",
        "poll": "Status read",
        "reconcile": "Reconciled",
        "operator": "Operator action",
        "watchdog": "Watchdog",
    }.get(event["source"], event["source"])
    if event["attempt"]:
        what = f"{what} (attempt {event['attempt']})"
    return TimelineEntry(
        at=event["observed_at"],
        kind=event["source"],
        title=what,
        code=event["code"],
        entry=explain(provider, event["code"]),
        moved=moved,
        detail=event["detail"],
        actor=event["actor"],
    )


def _timeline(job: dict[str, Any], job_id: str) -> list[TimelineEntry]:
    """Every attempt and every event, in time order (an attempt before what it caused)."""
    attempts = queries.attempts(job_id)
    providers = {a["number"]: a["provider"] for a in attempts}
    lines = [_attempt_entry(a) for a in attempts]
    lines += [
        _event_entry(e, providers.get(e["attempt"], job["provider"]))
        for e in queries.events(job_id)
    ]
    # Stable: at the same instant, attempts (listed first) come before events.
    return sorted(lines, key=lambda line: datetime.fromisoformat(line.at) if line.at else _EPOCH)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _next_step(job: dict[str, Any], now: datetime) -> str:
    """What happens to the fax next, and when, in words."""
    state = job["state"]
    if state == JobState.PENDING:
        at = job["next_attempt_at"] or job["send_at"]
        if at is None:
            return f"Attempt {job['attempts'] + 1} waits to be sent."
        return f"Attempt {job['attempts'] + 1} at {_when(at)} ({_relative(at, now)})."
    if state == JobState.DISPATCHING:
        return "Being sent right now; the provider's answer is awaited."
    if state == JobState.IN_PROGRESS:
        at = job["next_poll_at"]
        when = f" at {_when(at)} ({_relative(at, now)})" if at else ""
        return f"{job['provider']} has the fax; its status is read again{when}."
    if state == JobState.HELD:
        if job["remediation"] == Remediation.WAIT_FOR_CREDIT:
            return f"Held for credit: add credit at {job['provider']}, then resume it."
        return "Held: nothing is sent until an operator resumes it (or cancels it)."
    if state == JobState.FAILED:
        return "Ended: failed. Retry gives it a fresh attempt budget and sends it again."
    if state == JobState.SUCCEEDED:
        return "Ended: delivered. Nothing more happens."
    return "Ended: cancelled. Nothing more happens."


def fax_context(job_id: str) -> dict[str, Any]:
    """A fax's page: its fields, what its last code means, what happens next and when,
    the actions its state allows, and its timeline. ``JobNotFound`` for an unknown id."""
    now = utcnow()
    job = queries.get_job(job_id)
    with session_scope() as session:
        tenant = session.scalar(
            select(Tenant.name).join(Job, Job.tenant_id == Tenant.id).where(Job.id == job_id)
        )
    return {
        "job": job,
        "tenant": tenant,
        "last_entry": explain(job["provider"], job["last_code"]),
        "next_step": _next_step(job, now),
        "actions": [a for a in ACTIONS.values() if allowed(a.name, job["state"])],
        "timeline": _timeline(job, job_id),
    }


def allowed(action: str, state: str) -> bool:
    states, _ = OPERATOR_MOVES[action]
    return state in states


# -- providers and queues ---------------------------------------------------------------


def providers_context() -> dict[str, Any]:
    """Each provider's breaker, pause and rate limits (``provider_status``, as ``faxctl
    providers`` shows them); queue depths; how long the oldest due job has waited. The
    broker's part says so when the broker cannot be reached."""
    now = utcnow()
    broker_error = None
    try:
        rows = provider_rows()
        depths = queue_depths()
    except redis.RedisError as exc:
        broker_error = f"the broker cannot be reached ({type(exc).__name__})"
        found = pauses.current()
        rows = [{"provider": p, "circuit": None, "paused": p in found} for p in PROVIDERS]
        depths = {}
    with session_scope() as session:
        paused = {row["provider"] for row in rows if row["paused"]}
        oldest = queries.oldest_due_at(session, now, paused)
    return {
        "providers": rows,
        "queues": depths,
        "broker_error": broker_error,
        "oldest_due_age": max((now - oldest).total_seconds(), 0.0) if oldest else None,
        "now": now,
    }


#: Pausing or resuming a provider, as the console offers it.
PROVIDER_ACTIONS: dict[str, Action] = {
    a.name: a
    for a in (
        Action(
            "pause",
            "Pause",
            "No new send goes through this provider, on any worker, until it is resumed: "
            "its pending faxes wait with the reason. Faxes it already has are still "
            "followed.",
        ),
        Action(
            "resume",
            "Resume",
            "Sends go through this provider again: its waiting faxes are due at once.",
        ),
    )
}


def provider_context(provider: str) -> dict[str, Any]:
    """One provider's row (for a confirmation page); ``NotFound`` for an unknown name."""
    if provider not in PROVIDERS:
        raise NotFound("provider", provider[:32])
    found = pauses.current().get(provider)
    return {"provider": provider, "pause": found}
