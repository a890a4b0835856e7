"""InterFAX numeric status codes (seed 001 in docs/seeds/): negative in progress, 0 success,
positive failure.

Remediations follow InterFAX's own notes. Telephony errors (``*``) "do not necessarily mean
that your fax will never be successfully transmitted", and InterFAX "will attempt to route
your fax through different servers", so they are retried after a wait and marked reroutable.
Fax machine incompatibility (``**``) happens after a fax machine answered, so it is retried too.
Codes 6001-6127 follow the ITU-T Q.850 cause numbers plus 6000 (6017 = user busy, 6028 =
invalid number format, 6088 = incompatible destination), which informs the judgement calls.
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

PROVIDER = "interfax"

_row = partial(entry, PROVIDER)

_QUERY_AGAIN = "This is a temporary status, query again later to get a final status."
_TELEPHONY = (
    "Telephony error, mostly related to the setup of a call; InterFAX will attempt to route "
    "the fax through different servers, so a later attempt may succeed."
)
_MACHINE = (
    "The call was answered by a fax machine but the communication did not succeed; "
    "some pages may have gone through."
)
_LINE_IN_USE = "The receiving line is in use."
_NO_ANSWER = "No answer (might be out of paper)."
_RENDERING = (
    "The system could not turn your documents into a fax: make sure they contain no macros, "
    "are not password-protected, and are a supported file type."
)
_INTERNAL = "Something unexpected has happened. Please contact support."


def _in_progress(code: int, label: str, description: str) -> StatusEntry:
    return _row(code, label, Outcome.IN_PROGRESS, Remediation.POLL, Family.IN_PROGRESS, description)


def _telephony(
    code: int, label: str = "Telephony error", description: str = _TELEPHONY
) -> StatusEntry:
    """A ``*`` code: retried after a wait; another route (or provider) may succeed."""
    return _row(
        code,
        label,
        Outcome.FAILURE,
        Remediation.WAIT_AND_RETRY,
        Family.TELEPHONY,
        description,
        reroutable=True,
    )


def _machine(
    code: int, label: str = "Fax machine incompatibility", description: str = _MACHINE
) -> StatusEntry:
    """A ``**`` code: the remote fax machine answered but the session failed."""
    return _row(
        code,
        label,
        Outcome.FAILURE,
        Remediation.WAIT_AND_RETRY,
        Family.MACHINE_INCOMPATIBILITY,
        description,
    )


def _busy(code: int, label: str = "Busy", description: str = _LINE_IN_USE) -> StatusEntry:
    return _row(code, label, Outcome.FAILURE, Remediation.WAIT_AND_RETRY, Family.BUSY, description)


def _no_answer(code: int, label: str = "No answer", description: str = _NO_ANSWER) -> StatusEntry:
    return _row(
        code, label, Outcome.FAILURE, Remediation.WAIT_AND_RETRY, Family.NO_ANSWER, description
    )


def _number(code: int, label: str, description: str) -> StatusEntry:
    """The number itself is wrong or dead: dialling it again will not help."""
    return _row(code, label, Outcome.FAILURE, Remediation.NO_RETRY, Family.NUMBER, description)


def _internal(code: int, label: str, description: str = _INTERNAL) -> StatusEntry:
    return _row(
        code, label, Outcome.FAILURE, Remediation.WAIT_AND_RETRY, Family.INTERNAL, description
    )


TABLE: dict[str, StatusEntry] = {
    e.code: e
    for e in [
        # In process: temporary, query again later.
        _in_progress(
            -11, "Pre-processing", f"Received and being prepared for faxing. {_QUERY_AGAIN}"
        ),
        _in_progress(
            -1, "Pre-processing", f"Received and being prepared for faxing. {_QUERY_AGAIN}"
        ),
        _in_progress(-2, "Ready", f"Prepared and awaiting its turn in the queue. {_QUERY_AGAIN}"),
        _in_progress(
            -3,
            "Sending (or pending retry)",
            f"Being sent or awaiting its next attempt. {_QUERY_AGAIN}",
        ),
        _row(
            -22,
            "Out of credit, awaiting top-up",
            Outcome.IN_PROGRESS,
            Remediation.WAIT_FOR_CREDIT,
            Family.CREDIT,
            "Held until credit is purchased; after 24 hours without credit it becomes 205000 "
            "and is cancelled.",
        ),
        # Success.
        _row(
            0,
            "OK",
            Outcome.SUCCESS,
            Remediation.SUCCESS,
            Family.SUCCESS,
            "Sent successfully; the receiving fax machine confirmed all pages.",
        ),
        # Failures.
        _internal(
            1,
            "Internal error",
            "Call disconnected after several minutes without a page break or confirmation.",
        ),
        _telephony(2),
        _telephony(12),
        _telephony(101),
        _telephony(102),
        _telephony(104),
        _telephony(130),
        _telephony(132),
        _telephony(204),
        _internal(
            256,
            "Internal error",
            "Internal error; contact support for clarification if it persists.",
        ),
        _busy(263),
        _row(
            403,
            "Cancelled",
            Outcome.CANCELLED,
            Remediation.NO_RETRY,
            Family.CANCELLED,
            "The fax was cancelled.",
        ),
        _telephony(483),
        _telephony(488, "Call not acceptable"),
        _telephony(501),
        _telephony(603),
        _telephony(
            606,
            description="Telephony error: SIP over T.38 is not supported on this route; "
            "another route or provider may carry it.",
        ),
        _telephony(3072),
        _telephony(3080),
        _machine(3211),
        _machine(3220),
        _machine(
            3223,
            "Unexpected disconnect",
            "An unexpected disconnect command was sent during the fax session.",
        ),
        _machine(3224, "No response from fax machine", "The remote fax machine failed to respond."),
        _machine(3225),
        _machine(
            3230,
            "Disconnect during negotiation",
            "A disconnect message was received while negotiating transmission.",
        ),
        _machine(3231),
        _machine(3233),
        _machine(3264),
        _machine(3267),
        _row(
            3268,
            "Transmission error after page break",
            Outcome.PARTIAL,
            Remediation.WAIT_AND_RETRY,
            Family.PARTIAL,
            "Transmission error after a page break: some pages went through.",
        ),
        _machine(3269),
        _telephony(3300),
        _telephony(3510),
        _telephony(3830),
        # "Phone number not operational" with a comment that describes no signal at all
        # (no busy, no ring, no audio): treated as no answer, not as a dead number.
        _no_answer(
            3912,
            "No answer tone detected",
            "Phone number not operational: no answer tone, busy, ring or audio was detected.",
        ),
        _busy(3931),
        _number(
            3932,
            "Phone number not operational",
            "Fast busy: the receiving line might be out of order or disconnected.",
        ),
        # Labelled "Busy" although the comment allows an unassigned number: retried as busy,
        # so a dead number fails after the busy family's attempt limit.
        _busy(
            3933,
            description="Busy: unassigned number or telephony error; retried as busy, "
            "so a dead number stops at the attempt limit.",
        ),
        _no_answer(3935),
        # A person answered: the number is not a fax line ("check the number").
        _row(
            3936,
            "Human voice answer",
            Outcome.FAILURE,
            Remediation.NO_RETRY,
            Family.MACHINE_INCOMPATIBILITY,
            "A human voice answered instead of a fax machine; check the number.",
        ),
        _busy(
            3937,
            "Ring busy",
            "A ringing condition was detected followed by a busy signal.",
        ),
        _number(3938, "Phone number not operational", "Phone number not operational."),
        _number(6001, "Phone number not operational", "Phone number not operational: unassigned."),
        _row(
            6002,
            "No route available",
            Outcome.FAILURE,
            Remediation.NO_RETRY,
            Family.ROUTE,
            "No route available; may occur in developer and evaluation accounts when faxing to "
            "expensive locations. Contact support.",
            reroutable=True,
        ),
        _telephony(6003),
        _telephony(6004),
        _telephony(6016),
        _busy(6017),
        _no_answer(6018),
        _telephony(6019),
        _telephony(
            6021,
            "Call rejected",
            "The call was rejected by the destination; another route or caller may be accepted.",
        ),
        _number(6022, "Number changed", "The destination number has changed."),
        _number(
            6027, "Phone number not operational", "Phone number not operational: invalid format."
        ),
        _number(6028, "Phone number not operational", "Phone number not operational: unassigned."),
        _telephony(
            6029,
            "Call rejected",
            "The call was rejected by the network; another route may be accepted.",
        ),
        _telephony(6031),
        _telephony(6034),
        _telephony(6038),
        _telephony(6041),
        _telephony(6042),
        _telephony(6043),
        _telephony(6044),
        _telephony(6047),
        _telephony(6050),
        _telephony(6054),
        _telephony(6057),
        _telephony(6058),
        _telephony(6063),
        _telephony(6065),
        _telephony(6069),
        _telephony(6079),
        *(
            _machine(
                code,
                "Incompatible destination",
                "The destination cannot accept this kind of call.",
            )
            for code in (6088, 6095, 6097, 6099, 6100)
        ),
        _telephony(6102),
        _telephony(6111),
        _telephony(6127),
        _telephony(7004),
        _telephony(7012),
        _telephony(7013),
        _telephony(7200, "Unspecified fax failure", "Unspecified fax failure."),
        _machine(
            8010,
            "Remote hung up",
            "The remote fax machine hung up before receiving the fax.",
        ),
        _no_answer(8021),
        _busy(8025),
        _machine(9001, description="The remote fax machine failed to respond."),
        _telephony(9951),
        _telephony(9952),
        _telephony(9987),
        _telephony(9994),
        _telephony(9998),
        _telephony(9999),
        _row(
            204000,
            "Rendering error",
            Outcome.FAILURE,
            Remediation.NO_RETRY,
            Family.DOCUMENT,
            _RENDERING,
        ),
        _row(
            204001,
            "Rendering error",
            Outcome.FAILURE,
            Remediation.NO_RETRY,
            Family.DOCUMENT,
            _RENDERING,
        ),
        _row(
            205000,
            "Quota exceeded",
            Outcome.FAILURE,
            Remediation.WAIT_FOR_CREDIT,
            Family.CREDIT,
            "Prepaid credit depleted: purchase more outbound fax credits to send more faxes.",
        ),
        _internal(205001, "Internal system error (FindRoute)"),
        _internal(206001, "Internal system error (LocalSender)"),
    ]
}


def unknown(code: str) -> StatusEntry:
    """Safe default: a negative code is still in progress, a positive one is retried later."""
    try:
        value = int(code)
    except ValueError:
        value = 1
    if value < 0:
        return unlisted_in_progress(
            PROVIDER,
            code,
            "Unlisted negative code: temporary, query again later.",
            label="Fax is being handled",
        )
    return unlisted_failure(
        PROVIDER, code, "Unlisted positive code: treated as a failure worth retrying."
    )
