"""InterFAX numeric status codes (seed 001): negative = in progress, 0 = success, positive = failure."""

from __future__ import annotations

from dispatcher.catalogue.model import Family, Outcome, Remediation, StatusEntry

PROVIDER = "interfax"


def _entry(
    code: int,
    label: str,
    outcome: Outcome,
    remediation: Remediation,
    family: Family,
    description: str,
    *,
    reroutable: bool = False,
) -> StatusEntry:
    return StatusEntry(PROVIDER, str(code), label, outcome, remediation, family, description, reroutable)


TABLE: dict[str, StatusEntry] = {
    e.code: e
    for e in [
        _entry(-11, "Pre-processing", Outcome.IN_PROGRESS, Remediation.POLL, Family.IN_PROGRESS,
               "Received and being prepared; query again later."),
        _entry(3931, "Busy", Outcome.FAILURE, Remediation.WAIT_AND_RETRY, Family.BUSY,
               "The receiving line is in use."),
    ]
}


def unknown(code: str) -> StatusEntry:
    """Safe default: negative codes are still in progress, positive ones are retried after a wait."""
    try:
        value = int(code)
    except ValueError:
        value = 1
    if value < 0:
        return StatusEntry(PROVIDER, code, "Fax is being handled", Outcome.IN_PROGRESS,
                           Remediation.POLL, Family.IN_PROGRESS,
                           "Unlisted negative code: temporary, query again later.", known=False)
    return StatusEntry(PROVIDER, code, "Unlisted failure", Outcome.FAILURE,
                       Remediation.WAIT_AND_RETRY, Family.UNKNOWN,
                       "Unlisted positive code: treated as a failure worth retrying.", known=False)
