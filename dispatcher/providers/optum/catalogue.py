"""Optum fax statuses (seed 003 in docs/seeds/), refined by ``failedReason`` as
``FaxFailed/<reason>`` codes.

Optum already retries a failed transmission up to 5 times before it reports ``FaxFailed``,
and accepts one manual retry after that, so a generic failure is retried after a wait.
``failedReason`` values are not documented; the reasons below are the ones the sandbox uses
(``docs/providers/optum.md`` section 3) and any other reason falls back to its status.
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial

from dispatcher.catalogue.model import (
    Family,
    Outcome,
    Remediation,
    StatusEntry,
    entry,
    unlisted_in_progress,
)

__all__ = ["TABLE", "unknown"]

PROVIDER = "optum"
FAILED = "FaxFailed"

_row = partial(entry, PROVIDER)


def _poll(code: str, label: str, description: str) -> StatusEntry:
    return _row(code, label, Outcome.IN_PROGRESS, Remediation.POLL, Family.IN_PROGRESS, description)


def _failed(
    reason: str, label: str, remediation: Remediation, family: Family, description: str
) -> StatusEntry:
    """``FaxFailed`` with a ``failedReason`` that says more than the bare status."""
    return _row(f"{FAILED}/{reason}", label, Outcome.FAILURE, remediation, family, description)


TABLE: dict[str, StatusEntry] = {
    e.code: e
    for e in [
        _row(
            "FaxSent",
            "Sent",
            Outcome.SUCCESS,
            Remediation.SUCCESS,
            Family.SUCCESS,
            "The fax was successfully transmitted to the recipient.",
        ),
        _row(
            FAILED,
            "Failed",
            Outcome.FAILURE,
            Remediation.WAIT_AND_RETRY,
            Family.TELEPHONY,
            "The fax failed to be sent to the recipient after the service's own retries.",
        ),
        _poll("FaxReceived", "Received", "The fax was received by the fax service and queued."),
        _row(
            "FaxCancelled",
            "Cancelled",
            Outcome.CANCELLED,
            Remediation.NO_RETRY,
            Family.CANCELLED,
            "The fax transmission was stopped by the requester.",
        ),
        _poll(
            "FaxAttemptInitiated", "Attempt initiated", "A fax transmission attempt was initiated."
        ),
        _poll(
            "FaxReceivedForCancel",
            "Cancel requested",
            "A stop request was received by the fax service; not yet effective.",
        ),
        _poll("FaxRetry", "Retry requested", "A retry request for a failed fax was accepted."),
        _poll(
            "FaxRetryAttempted",
            "Retry attempted",
            "A retry attempt was initiated by the fax service.",
        ),
        _poll("FaxHeld", "Held", "The fax is on hold and will not be sent until revived."),
        _poll(
            "FaxWebhookUpdateFailed",
            "Webhook update failed",
            "A fax event could not be delivered to the sender: delivery status unknown, poll.",
        ),
        # FaxFailed refined by failedReason.
        _failed(
            "Busy",
            "Busy",
            Remediation.WAIT_AND_RETRY,
            Family.BUSY,
            "The destination was busy.",
        ),
        _failed(
            "NoAnswer",
            "No answer",
            Remediation.WAIT_AND_RETRY,
            Family.NO_ANSWER,
            "No answer at the destination.",
        ),
        _failed(
            "InvalidNumber",
            "Invalid number",
            Remediation.NO_RETRY,
            Family.NUMBER,
            "Invalid number: check the number.",
        ),
        _failed(
            "NotAFaxMachine",
            "Not a fax machine",
            Remediation.NO_RETRY,
            Family.MACHINE_INCOMPATIBILITY,
            "The destination answered but is not a fax machine: check the number.",
        ),
        _failed(
            "TransmissionError",
            "Transmission error",
            Remediation.WAIT_AND_RETRY,
            Family.TELEPHONY,
            "The transmission failed on the line.",
        ),
        _failed(
            "DocumentConversionFailed",
            "Document conversion failed",
            Remediation.NO_RETRY,
            Family.DOCUMENT,
            "The document could not be converted into a fax.",
        ),
        _failed(
            "InsufficientCredit",
            "Insufficient credit",
            Remediation.WAIT_FOR_CREDIT,
            Family.CREDIT,
            "Not enough credit to send the fax.",
        ),
    ]
}


def unknown(code: str) -> StatusEntry:
    """Safe default: an unlisted reason keeps its status's meaning; an unlisted status is polled."""
    status, sep, reason = code.partition("/")
    base = TABLE.get(status) if sep else None
    if base is not None:
        return replace(
            base,
            code=code,
            description=f"{base.description} Unlisted reason {reason!r}: classified as {status}.",
            known=False,
        )
    return unlisted_in_progress(
        PROVIDER, code, "Unlisted status: treated as not final, polled again later."
    )
