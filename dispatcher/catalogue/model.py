"""The vocabulary of the status catalogue: outcomes, remediations, code families, entries."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

__all__ = [
    "Family",
    "Outcome",
    "Remediation",
    "StatusEntry",
    "entry",
    "unlisted_failure",
    "unlisted_in_progress",
]


class Outcome(StrEnum):
    """What a status says happened to the fax."""

    IN_PROGRESS = "in_progress"
    SUCCESS = "success"
    PARTIAL = "partial"
    FAILURE = "failure"
    CANCELLED = "cancelled"


class Remediation(StrEnum):
    """What the provider's own words say to do next (docs/DESIGN.md, step 5)."""

    POLL = "poll"
    SUCCESS = "success"
    RETRY_IMMEDIATELY = "retry_immediately"
    WAIT_AND_RETRY = "wait_and_retry"
    WAIT_FOR_CREDIT = "wait_for_credit"
    NO_RETRY = "no_retry"


class Family(StrEnum):
    """Groups codes that share a backoff schedule in ``config/retry_policy.toml``."""

    IN_PROGRESS = "in_progress"
    SUCCESS = "success"
    BUSY = "busy"
    NO_ANSWER = "no_answer"
    TELEPHONY = "telephony"
    MACHINE_INCOMPATIBILITY = "machine_incompatibility"
    PARTIAL = "partial"
    NUMBER = "number"
    DOCUMENT = "document"
    CREDIT = "credit"
    INTERNAL = "internal"
    CANCELLED = "cancelled"
    ROUTE = "route"
    TRANSPORT = "transport"
    RATE_LIMIT = "rate_limit"
    AUTH = "auth"
    REJECTED = "rejected"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class StatusEntry:
    """One (provider, code) pair and what it means for the fax."""

    provider: str
    code: str
    label: str
    outcome: Outcome
    remediation: Remediation
    family: Family
    description: str
    reroutable: bool = False
    known: bool = True

    @property
    def is_call_failure(self) -> bool:
        """True when the call itself failed (timeout, 5xx, 429...): no fax was transmitted,
        so the attempt counts against the transport limits only, not a fax family's."""
        return self.family in (Family.TRANSPORT, Family.RATE_LIMIT)

    @property
    def is_final(self) -> bool:
        """True when the provider will not change this fax's status any more."""
        return self.outcome is not Outcome.IN_PROGRESS

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["outcome"] = self.outcome.value
        data["remediation"] = self.remediation.value
        data["family"] = self.family.value
        return data


def entry(
    provider: str,
    code: object,
    label: str,
    outcome: Outcome,
    remediation: Remediation,
    family: Family,
    description: str,
    *,
    reroutable: bool = False,
) -> StatusEntry:
    """A known table row; codes are stored as text so every provider is looked up the same way."""
    return StatusEntry(
        provider=str(provider),
        code=str(code),
        label=label,
        outcome=outcome,
        remediation=remediation,
        family=family,
        description=description,
        reroutable=reroutable,
    )


def unlisted_in_progress(
    provider: str, code: str, description: str, label: str = "Unlisted status"
) -> StatusEntry:
    """The safe default for an unknown code that reads as "not final": poll again later."""
    return StatusEntry(
        provider,
        code,
        label,
        Outcome.IN_PROGRESS,
        Remediation.POLL,
        Family.IN_PROGRESS,
        description,
        known=False,
    )


def unlisted_failure(provider: str, code: str, description: str) -> StatusEntry:
    """The safe default for an unknown failure code: retried after a wait, within limits."""
    return StatusEntry(
        provider,
        code,
        "Unlisted failure",
        Outcome.FAILURE,
        Remediation.WAIT_AND_RETRY,
        Family.UNKNOWN,
        description,
        known=False,
    )
