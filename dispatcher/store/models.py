"""The results store: jobs, their documents, every attempt and every status seen.

The database is the source of truth; the broker only carries job ids.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from dispatcher.clock import utcnow

__all__ = [
    "ApiKey",
    "Attempt",
    "Base",
    "Batch",
    "CallbackAttempt",
    "CallbackDelivery",
    "CallbackEndpoint",
    "Document",
    "DocumentContent",
    "Job",
    "JobDocument",
    "JobTag",
    "ProviderPause",
    "StatusEvent",
    "Tenant",
    "UTCDateTime",
    "WebhookEvent",
]


class UTCDateTime(TypeDecorator[datetime]):
    """Stores naive UTC, returns aware UTC: SQLite drops zones, PostgreSQL keeps them."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON()}


class Document(Base):
    """A stored document, content-addressed: the same bytes are kept once."""

    __tablename__ = "documents"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    mime_type: Mapped[str] = mapped_column(String(100))
    size: Mapped[int] = mapped_column(Integer)
    page_count: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class DocumentContent(Base):
    """A document's bytes, when the database is the document store (the default)."""

    __tablename__ = "document_contents"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    content: Mapped[bytes] = mapped_column(LargeBinary)


class Job(Base):
    """One fax to one destination, from submission to its final state."""

    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    to_number: Mapped[str] = mapped_column(String(32))
    provider: Mapped[str] = mapped_column(String(16))
    #: providers to try in order; the job's provider is one of them
    route: Mapped[list[str]] = mapped_column(JSON, default=list)
    state: Mapped[str] = mapped_column(String(16))
    version: Mapped[int] = mapped_column(Integer, default=1)
    idempotency_key: Mapped[str | None] = mapped_column(String(255), unique=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    send_at: Mapped[datetime | None]
    deadline: Mapped[datetime | None]
    next_attempt_at: Mapped[datetime | None]
    next_poll_at: Mapped[datetime | None]
    attempt_count: Mapped[int] = mapped_column(Integer, default=0)
    immediate_retries: Mapped[int] = mapped_column(Integer, default=0)
    #: attempt_count when the current retry budget began (an operator retry starts a new one)
    budget_start: Mapped[int] = mapped_column(Integer, default=0)
    #: attempts of the current budget whose call failed before the provider took the fax
    unsent_attempts: Mapped[int] = mapped_column(Integer, default=0)
    provider_fax_id: Mapped[str | None] = mapped_column(String(128))
    last_code: Mapped[str | None] = mapped_column(String(64))
    last_outcome: Mapped[str | None] = mapped_column(String(16))
    last_remediation: Mapped[str | None] = mapped_column(String(24))
    reason: Mapped[str | None] = mapped_column(Text)
    pages: Mapped[int] = mapped_column(Integer, default=0)
    pages_sent: Mapped[int | None] = mapped_column(Integer)
    #: pages already delivered by partial sends; a resend starts after them
    resend_from_page: Mapped[int] = mapped_column(Integer, default=0)
    cost: Mapped[float | None] = mapped_column(Float)
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    #: the bulk submission the job came in with, if any
    batch_id: Mapped[str | None] = mapped_column(String(32))
    #: the tenant whose key submitted it; None for the operators' keys
    tenant_id: Mapped[str | None] = mapped_column(String(32))
    #: a ``Priority``: which dispatch lane the job waits in
    priority: Mapped[str] = mapped_column(String(8), default="normal")
    #: where the job's own events are posted, besides the tenant's endpoints
    callback_url: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    #: the last change; while dispatching, the sending worker's last sign of life
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    #: when the job entered its current state (how long it has waited there)
    state_changed_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
    #: when retention purged the documents, the number and metadata, the raw payloads
    documents_purged_at: Mapped[datetime | None]
    recipient_purged_at: Mapped[datetime | None]
    payloads_purged_at: Mapped[datetime | None]

    attempts: Mapped[list[Attempt]] = relationship(
        order_by="Attempt.number", cascade="all, delete-orphan", lazy="raise_on_sql"
    )

    __table_args__ = (
        Index("ix_jobs_state_next_attempt_at", "state", "next_attempt_at"),
        Index("ix_jobs_state_next_poll_at", "state", "next_poll_at"),
        Index("ix_jobs_state_updated_at", "state", "updated_at"),
        Index("ix_jobs_state_state_changed_at", "state", "state_changed_at"),
        Index("ix_jobs_created_at", "created_at"),
        Index("ix_jobs_to_number", "to_number"),
        Index("ix_jobs_provider_fax_id", "provider", "provider_fax_id"),
        Index("ix_jobs_batch_id_state", "batch_id", "state"),
        Index("ix_jobs_state_priority_next_attempt_at", "state", "priority", "next_attempt_at"),
        Index("ix_jobs_tenant_id_created_at", "tenant_id", "created_at"),
        *(
            Index(
                f"ix_jobs_{kind}_unpurged",
                "finished_at",
                postgresql_where=text(f"{kind}_purged_at IS NULL"),
                sqlite_where=text(f"{kind}_purged_at IS NULL"),
            )
            for kind in ("documents", "recipient", "payloads")
        ),
    )


class JobTag(Base):
    """One metadata pair of a job, indexed so a search by ``key=value`` is one lookup."""

    __tablename__ = "job_tags"

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(255))

    __table_args__ = (Index("ix_job_tags_key_value", "key", "value"),)


class Batch(Base):
    """A bulk submission (a CSV file, in one upload or several), to follow as a whole."""

    __tablename__ = "batches"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    #: the tenant that uploaded it; None for the operators
    tenant_id: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    rows: Mapped[int] = mapped_column(Integer, default=0)
    accepted: Mapped[int] = mapped_column(Integer, default=0)
    duplicates: Mapped[int] = mapped_column(Integer, default=0)
    #: the rejected rows, ``[{"row": n, "error": text}]``, the first thousand
    rejected: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)


class JobDocument(Base):
    """The ordered documents of a job."""

    __tablename__ = "job_documents"

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    #: indexed: the purge asks whether any job still refers to a document
    sha256: Mapped[str] = mapped_column(ForeignKey("documents.sha256"), index=True)
    name: Mapped[str] = mapped_column(String(255))


class Attempt(Base):
    """One try at sending a job. Written before the provider is called."""

    __tablename__ = "attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    #: an ``AttemptKind``: a new fax sent, or the provider resending its own (Optum)
    kind: Mapped[str] = mapped_column(String(16), default="send")
    provider: Mapped[str] = mapped_column(String(16))
    reference: Mapped[str] = mapped_column(String(64), unique=True)
    #: True while a send may have reached the provider but its answer was lost
    unsettled: Mapped[bool] = mapped_column(Boolean, default=False)
    #: when the answer was found lost: the provider may still be accepting the send until
    #: FAX_SETTLE_DELAY after this, so no lookup before then settles it as never sent
    lost_at: Mapped[datetime | None]
    provider_fax_id: Mapped[str | None] = mapped_column(String(128))
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    submitted_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    status_code: Mapped[str | None] = mapped_column(String(64))
    outcome: Mapped[str | None] = mapped_column(String(16))
    remediation: Mapped[str | None] = mapped_column(String(24))
    pages_sent: Mapped[int | None] = mapped_column(Integer)
    duration: Mapped[float | None] = mapped_column(Float)
    cost: Mapped[float | None] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(Text)
    worker: Mapped[str | None] = mapped_column(String(255))
    task_id: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (
        UniqueConstraint("job_id", "number", name="uq_attempts_job_id_number"),
        Index("ix_attempts_provider_fax_id", "provider", "provider_fax_id"),
    )


class StatusEvent(Base):
    """One status observation: a poll, a webhook, a send result or an operator action."""

    __tablename__ = "status_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    attempt_number: Mapped[int | None] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(String(16))
    code: Mapped[str | None] = mapped_column(String(64))
    outcome: Mapped[str | None] = mapped_column(String(16))
    remediation: Mapped[str | None] = mapped_column(String(24))
    state_from: Mapped[str | None] = mapped_column(String(16))
    state_to: Mapped[str | None] = mapped_column(String(16))
    detail: Mapped[str | None] = mapped_column(Text)
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    observed_at: Mapped[datetime] = mapped_column(default=utcnow)
    #: for an operator's action, who acted: an API key's id, an admin token, ``faxctl``
    actor: Mapped[str | None] = mapped_column(String(64))


class ProviderPause(Base):
    """A provider no new send goes through until it is resumed: by an operator, or by
    itself for credit (``automatic``: one probe job goes at ``next_probe_at``)."""

    __tablename__ = "provider_pauses"

    provider: Mapped[str] = mapped_column(String(16), primary_key=True)
    reason: Mapped[str] = mapped_column(Text)
    paused_by: Mapped[str] = mapped_column(String(64))
    paused_at: Mapped[datetime] = mapped_column(default=utcnow)
    automatic: Mapped[bool] = mapped_column(Boolean, default=False)
    next_probe_at: Mapped[datetime | None]
    #: the one job let through to find out whether credit is back
    probe_job_id: Mapped[str | None] = mapped_column(String(32))


class WebhookEvent(Base):
    """A signed provider event already taken: a replay of it within the window is refused."""

    __tablename__ = "webhook_events"

    provider: Mapped[str] = mapped_column(String(16), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    received_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class Tenant(Base):
    """A backend service with its own keys, jobs, callback endpoints and limits."""

    __tablename__ = "tenants"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    #: faxes per second it may submit (bursts of as many); None: no limit
    send_rate: Mapped[float | None] = mapped_column(Float)
    #: faxes per UTC day it may submit; None: no quota
    daily_quota: Mapped[int | None] = mapped_column(Integer)
    #: signs the events posted to its jobs' own ``callback_url`` (Standard Webhooks)
    callback_secret: Mapped[str] = mapped_column(String(64))


class ApiKey(Base):
    """A tenant's API key: ``<prefix>_<id>_<secret>``; only the secret's SHA-256 is kept."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    secret_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]


class CallbackEndpoint(Base):
    """A URL a tenant (or the operators, ``tenant_id`` None) registered for events."""

    __tablename__ = "callback_endpoints"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant_id: Mapped[str | None] = mapped_column(String(32), index=True)
    url: Mapped[str] = mapped_column(Text)
    secret: Mapped[str] = mapped_column(String(64))
    event_types: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    disabled_at: Mapped[datetime | None]


class CallbackDelivery(Base):
    """One event for one target: the outbox row, written with the job's state change,
    then delivered at least once (``dispatcher.callbacks``)."""

    __tablename__ = "callback_deliveries"

    #: the Standard Webhooks ``webhook-id``: the same on every try, so receivers dedupe
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    endpoint_id: Mapped[str | None] = mapped_column(String(32))
    tenant_id: Mapped[str | None] = mapped_column(String(32))
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    url: Mapped[str] = mapped_column(Text)
    event_type: Mapped[str] = mapped_column(String(32))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    #: a ``DeliveryState``
    state: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None]
    last_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None]

    __table_args__ = (
        Index("ix_callback_deliveries_state_next_attempt_at", "state", "next_attempt_at"),
        Index("ix_callback_deliveries_endpoint_id_created_at", "endpoint_id", "created_at"),
        Index("ix_callback_deliveries_tenant_id_created_at", "tenant_id", "created_at"),
    )


class CallbackAttempt(Base):
    """One try at delivering an event: what the receiver answered, or why it did not."""

    __tablename__ = "callback_attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    delivery_id: Mapped[str] = mapped_column(
        ForeignKey("callback_deliveries.id", ondelete="CASCADE"), index=True
    )
    attempted_at: Mapped[datetime] = mapped_column(default=utcnow)
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    seconds: Mapped[float | None] = mapped_column(Float)
