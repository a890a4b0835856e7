"""The shapes the HTTP API answers with, shared by the API (its OpenAPI document) and the
HTTP client (typed results). Pydantic models only: importing them starts nothing."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

__all__ = [
    "Attempt",
    "Batch",
    "Delivery",
    "DeliveryPage",
    "DeliveryTry",
    "Endpoint",
    "EndpointCreated",
    "Event",
    "Fax",
    "FaxChanges",
    "FaxPage",
    "RejectedRow",
]


class Fax(BaseModel):
    """One fax job as it stands."""

    id: str
    state: str
    provider: str
    to: str
    attempts: int = Field(description="Attempts made so far.")
    provider_fax_id: str | None
    last_code: str | None = Field(description="The provider's last status code.")
    outcome: str | None
    remediation: str | None
    reason: str | None = Field(description="Why the job is where it is, in words.")
    next_attempt_at: datetime | None
    next_poll_at: datetime | None
    send_at: datetime | None
    pages: int
    pages_sent: int | None
    cost: float | None
    metadata: dict[str, str]
    batch_id: str | None
    priority: str = Field(description="Its lane: urgent, normal or bulk.")
    idempotency_key: str | None
    callback_url: str | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    documents_purged_at: datetime | None = Field(
        default=None, description="When retention purged the documents."
    )
    recipient_purged_at: datetime | None = Field(
        default=None, description="When the number was masked and the metadata dropped."
    )
    payloads_purged_at: datetime | None = Field(
        default=None, description="When the providers' raw payloads were purged."
    )


class FaxChanges(BaseModel):
    """``PATCH /v1/faxes/{id}``: the values to change; one left out stays as it is."""

    model_config = {"extra": "forbid"}

    to: str | None = Field(None, description="A new destination in E.164.")
    send_at: str | None = Field(None, description="ISO 8601 time with a zone.")
    deadline: str | None = Field(None, description="ISO 8601 time with a zone.")
    priority: str | None = Field(None, description="urgent, normal or bulk.")
    provider: str | None = Field(None, description="A provider to send through instead.")


class FaxPage(BaseModel):
    """A page of faxes, newest first, and the cursor of the next page."""

    items: list[Fax]
    next: str | None = Field(description="Pass as `before` for the next page; null on the last.")


class Attempt(BaseModel):
    """One try at sending a fax (``kind`` provider_retry: the provider resent its copy)."""

    number: int
    kind: str
    provider: str
    reference: str
    provider_fax_id: str | None
    code: str | None
    outcome: str | None
    remediation: str | None
    started_at: datetime
    submitted_at: datetime | None
    finished_at: datetime | None
    pages_sent: int | None
    duration: float | None
    cost: float | None
    error: str | None
    unsettled: bool = Field(description="Its answer was lost and is not known yet.")


class Event(BaseModel):
    """One status seen, or one thing done to a fax."""

    source: str
    attempt: int | None
    code: str | None
    outcome: str | None
    remediation: str | None
    from_state: str | None = Field(alias="from")
    to_state: str | None = Field(alias="to")
    detail: str | None
    actor: str | None = Field(description="For an action, who acted: a key's id, an admin.")
    observed_at: datetime

    model_config = {"populate_by_name": True}


class RejectedRow(BaseModel):
    """A row of a bulk file that was not accepted, by its row number as a spreadsheet
    shows it (the header is row 1)."""

    row: int
    error: str


class Batch(BaseModel):
    """A bulk submission: what was accepted, what was rejected, and how far delivery is."""

    id: str
    name: str
    created_at: datetime
    rows: int = Field(description="Data rows received (blank rows not counted).")
    accepted: int
    duplicates: int = Field(description="Rows already submitted before (by key or content).")
    rejected: list[RejectedRow]
    states: dict[str, int] = Field(description="The batch's jobs by state.")
    final: int = Field(description="Jobs that reached a final state.")


class Endpoint(BaseModel):
    """A URL registered to receive the events of the caller's faxes."""

    id: str
    url: str
    event_types: list[str]
    created_at: datetime
    disabled_at: datetime | None


class EndpointCreated(Endpoint):
    """A new endpoint, with the secret its events are signed with (shown this once)."""

    secret: str = Field(description="whsec_...: verify deliveries with standardwebhooks.")


class DeliveryTry(BaseModel):
    """One try at posting an event."""

    attempted_at: datetime
    status_code: int | None
    error: str | None
    seconds: float | None


class Delivery(BaseModel):
    """One event for one target (``id`` is its ``webhook-id``), and how its delivery went."""

    id: str
    endpoint_id: str | None = Field(description="Null for the job's own callback_url.")
    job_id: str
    url: str
    event_type: str
    state: str = Field(description="pending, delivered or failed.")
    attempts: int
    next_attempt_at: datetime | None
    last_status: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None
    tries: list[DeliveryTry] = Field(default_factory=list, description="On a single read.")


class DeliveryPage(BaseModel):
    """A page of deliveries, newest first, and the cursor of the next page."""

    items: list[Delivery]
    next: str | None
