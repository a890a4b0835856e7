"""The shapes the HTTP API answers with, shared by the API (its OpenAPI document) and the
HTTP client (typed results). Pydantic models only: importing them starts nothing."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

__all__ = ["Attempt", "Batch", "Event", "Fax", "FaxPage", "RejectedRow"]


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
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None


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
