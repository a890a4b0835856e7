"""FAX.PLUS status strings: fax record statuses (seeds 000 and 002 in docs/seeds/) and
outbox statuses.

The outbox statuses (``submitted`` .. ``sending``) belong to a fax not yet transmitted; the
fax record (CDR) statuses are final, except ``in_progress`` (an inbound fax being received).
Remediations follow the help centre's words: "Wait and retry", "Retry immediately",
"Check the number", "Add credit", and file conversion failures that need a new file.
"""

from __future__ import annotations

from functools import partial

from dispatcher.catalogue.model import (
    Family,
    Outcome,
    Remediation,
    StatusEntry,
    entry,
    unlisted_failure,
    unlisted_in_progress,
)

__all__ = ["TABLE", "unknown"]

PROVIDER = "faxplus"

_row = partial(entry, PROVIDER)

_GENERIC = "Generic error. Retry, and contact support if the issue persists."
_CONVERSION = "File conversion issue. Check if all pages in the source file(s) are valid."
_NO_FAX_MACHINE = (
    "The call was established, but no fax machine responded. Check the number and retry."
)


def _poll(code: str, label: str, description: str) -> StatusEntry:
    return _row(code, label, Outcome.IN_PROGRESS, Remediation.POLL, Family.IN_PROGRESS, description)


def _failure(
    code: str, label: str, remediation: Remediation, family: Family, description: str
) -> StatusEntry:
    return _row(code, label, Outcome.FAILURE, remediation, family, description)


def _document(code: str, label: str, description: str = _CONVERSION) -> StatusEntry:
    """The file cannot be faxed as it is: sending it again gives the same result."""
    return _failure(code, label, Remediation.NO_RETRY, Family.DOCUMENT, description)


TABLE: dict[str, StatusEntry] = {
    e.code: e
    for e in [
        # Outbox statuses: the fax has not been transmitted yet.
        _poll("submitted", "Submitted", "Submitted to the system."),
        _poll("converting", "Converting", "Documents are being converted for transmission."),
        _poll(
            "scheduled_for_sending",
            "Scheduled for sending",
            "Waiting for its send time or its turn.",
        ),
        _poll("sending", "Sending", "Transmission in progress."),
        # Fax record statuses.
        _row(
            "success",
            "Sent",
            Outcome.SUCCESS,
            Remediation.SUCCESS,
            Family.SUCCESS,
            "The fax was successfully sent.",
        ),
        _row(
            "partially_sent",
            "Partially sent",
            Outcome.PARTIAL,
            Remediation.WAIT_AND_RETRY,
            Family.PARTIAL,
            "The first pages were transmitted, but the call dropped due to connection issues.",
        ),
        # Inbound only: there is no fax of ours to send again.
        _row(
            "partially_received",
            "Partially received",
            Outcome.PARTIAL,
            Remediation.NO_RETRY,
            Family.PARTIAL,
            "Inbound: the first pages were received, but the call dropped due to connection "
            "issues.",
        ),
        _poll(
            "in_progress",
            "Receiving",
            "Inbound: the fax is currently being received; wait for the final status.",
        ),
        _row(
            "insufficient_credit",
            "Insufficient credit",
            Outcome.FAILURE,
            Remediation.WAIT_FOR_CREDIT,
            Family.CREDIT,
            "Not enough credit to send or receive pages. Add credit or wait for plan reset.",
        ),
        _failure("failed", "Failed", Remediation.WAIT_AND_RETRY, Family.INTERNAL, _GENERIC),
        _failure(
            "failed_internal_process_error",
            "Internal error",
            Remediation.WAIT_AND_RETRY,
            Family.INTERNAL,
            _GENERIC,
        ),
        _failure(
            "failed_user_busy",
            "Busy",
            Remediation.WAIT_AND_RETRY,
            Family.BUSY,
            "The destination was busy. Wait and retry.",
        ),
        _failure(
            "failed_no_answer",
            "No answer",
            Remediation.WAIT_AND_RETRY,
            Family.NO_ANSWER,
            "No answer at the destination. Retry when the recipient is available.",
        ),
        _failure(
            "failed_unallocated_number",
            "Invalid number",
            Remediation.NO_RETRY,
            Family.NUMBER,
            "Invalid number. Check the number, including country and area codes.",
        ),
        _document(
            "failed_office_converter_issue",
            "Office conversion failed",
            "Failed to convert a Microsoft Office document. Recreate and resubmit the file.",
        ),
        _document("failed_separate_file_pages_issue", "File conversion issue"),
        _document("failed_render_header_issue", "Header render issue"),
        _failure(
            "failed_invalid_number_format",
            "Invalid number format",
            Remediation.NO_RETRY,
            Family.NUMBER,
            "Invalid number format. Check the number, including country and area codes.",
        ),
        _document(
            "failed_mimetype_not_supported", "Unsupported file type", "Unsupported file type."
        ),
        _row(
            "failed_destination_not_supported",
            "Destination not supported",
            Outcome.FAILURE,
            Remediation.NO_RETRY,
            Family.ROUTE,
            "Number is a special service number or not supported by your plan.",
            reroutable=True,
        ),
        _document("failed_image_preparation", "Image preparation failed"),
        _failure(
            "failed_to_send",
            "System busy",
            Remediation.WAIT_AND_RETRY,
            Family.INTERNAL,
            "System was busy. Try again later.",
        ),
        _failure(
            "failed_normal_temporary_failure",
            "Temporary network issue",
            Remediation.RETRY_IMMEDIATELY,
            Family.TELEPHONY,
            "Temporary network issue. Retry immediately.",
        ),
        _document(
            "failed_unknown_converter_issue",
            "File conversion failed",
            "File conversion failed. Check if the file is password-protected.",
        ),
        _failure(
            "failed_normal_clearing",
            "Busy",
            Remediation.WAIT_AND_RETRY,
            Family.BUSY,
            "Destination was busy. Wait and retry.",
        ),
        _document("failed_convert_to_tiff_issue", "TIFF conversion failed"),
        # "Check the number and retry": the number answers but is not a fax line.
        _failure(
            "failed_fs_2",
            "No fax machine",
            Remediation.NO_RETRY,
            Family.MACHINE_INCOMPATIBILITY,
            _NO_FAX_MACHINE,
        ),
        _failure(
            "failed_fs_3",
            "No fax machine",
            Remediation.NO_RETRY,
            Family.MACHINE_INCOMPATIBILITY,
            _NO_FAX_MACHINE,
        ),
        _row(
            "failed_fs_48",
            "Remote disconnected after repeats",
            Outcome.PARTIAL,
            Remediation.WAIT_AND_RETRY,
            Family.PARTIAL,
            "Remote fax machine disconnected after the same message was sent several times. "
            "Some pages may have been transmitted.",
        ),
        _row(
            "failed_fs_49",
            "Remote disconnected",
            Outcome.PARTIAL,
            Remediation.WAIT_AND_RETRY,
            Family.PARTIAL,
            "Remote fax machine disconnected unexpectedly. Some pages may have been transmitted.",
        ),
    ]
}


def unknown(code: str) -> StatusEntry:
    """Safe default: an unlisted ``failed*`` is retried after a wait, anything else is polled."""
    if code.startswith("failed"):
        return unlisted_failure(
            PROVIDER, code, "Unlisted failure status: treated as a failure worth retrying."
        )
    return unlisted_in_progress(
        PROVIDER, code, "Unlisted status: treated as not final, polled again later."
    )
