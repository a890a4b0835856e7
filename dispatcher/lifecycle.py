"""Job states, the allowed transitions, and the one way to change a job's state.

Every change is a conditional UPDATE on (id, expected state, version), or on (id,
expected state, columns that pin the claim) for a job that is not loaded: a duplicated
or late task finds the row already moved and changes nothing. A pair that is not in
``TRANSITIONS`` is a programming error and raises ``IllegalTransition``.
"""

from __future__ import annotations

from enum import StrEnum
from functools import lru_cache
from typing import Any

from sqlalchemy import Connection, Update, bindparam, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from dispatcher.callbacks import outbox
from dispatcher.clock import utcnow
from dispatcher.errors import IllegalTransition
from dispatcher.store.models import Job

__all__ = [
    "ACTIVE_STATES",
    "FINAL_STATES",
    "OPERATOR_MOVES",
    "TRANSITIONS",
    "AttemptKind",
    "EventSource",
    "JobState",
    "check",
    "check_operator",
    "event_of",
    "transition",
    "transition_row",
]


class JobState(StrEnum):
    PENDING = "pending"
    DISPATCHING = "dispatching"
    IN_PROGRESS = "in_progress"
    HELD = "held"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATES


class AttemptKind(StrEnum):
    """What an attempt was: a new fax sent, or the provider resending its own copy."""

    SEND = "send"
    PROVIDER_RETRY = "provider_retry"


class EventSource(StrEnum):
    """Who saw or did what a job's event records."""

    DISPATCH = "dispatch"
    POLL = "poll"
    RECONCILE = "reconcile"
    OPERATOR = "operator"
    WATCHDOG = "watchdog"


FINAL_STATES = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})
ACTIVE_STATES = frozenset(JobState) - FINAL_STATES

_S = JobState
#: from-state -> the states it may move to. A self-edge records progress without a move.
#: A waiting job may go to ``in_progress`` without a send of its own: the provider turned
#: out to have an earlier send whose answer was lost, and the job follows that fax.
TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    _S.PENDING: frozenset(
        {_S.PENDING, _S.DISPATCHING, _S.IN_PROGRESS, _S.HELD, _S.CANCELLED, _S.FAILED}
    ),
    _S.DISPATCHING: frozenset({_S.IN_PROGRESS, _S.PENDING, _S.HELD, _S.FAILED, _S.SUCCEEDED}),
    _S.IN_PROGRESS: frozenset(
        {_S.IN_PROGRESS, _S.PENDING, _S.HELD, _S.SUCCEEDED, _S.FAILED, _S.CANCELLED}
    ),
    _S.HELD: frozenset({_S.HELD, _S.PENDING, _S.IN_PROGRESS, _S.CANCELLED, _S.FAILED}),
    _S.FAILED: frozenset({_S.PENDING, _S.IN_PROGRESS}),
    _S.SUCCEEDED: frozenset(),
    _S.CANCELLED: frozenset(),
}


#: An operator's action -> (the states it may act on, the state it moves the job to).
OPERATOR_MOVES: dict[str, tuple[frozenset[JobState], JobState]] = {
    "cancel": (frozenset({_S.PENDING, _S.HELD, _S.IN_PROGRESS}), _S.CANCELLED),
    "hold": (frozenset({_S.PENDING}), _S.HELD),
    "resume": (frozenset({_S.HELD}), _S.PENDING),
    "retry": (frozenset({_S.FAILED}), _S.PENDING),
    "push": (frozenset({_S.PENDING}), _S.PENDING),
}


def check_operator(job_id: str, action: str, current: JobState | str) -> JobState:
    """The state an operator's ``action`` moves a job in ``current`` to; raises
    ``IllegalTransition`` when the action does not apply to that state."""
    allowed, target = OPERATOR_MOVES[action]
    if JobState(current) not in allowed:
        raise IllegalTransition(job_id, str(current), target.value)
    check(job_id, current, target)
    return target


_EVENTS = {
    _S.SUCCEEDED: "fax.succeeded",
    _S.FAILED: "fax.failed",
    _S.CANCELLED: "fax.cancelled",
    _S.HELD: "fax.held",
}


def event_of(current: str, target: JobState, values: dict[str, Any]) -> str | None:
    """The callback event a move makes, if any (``dispatcher.callbacks``): the job ended
    or was held, or an attempt's outcome sent it back to wait for another."""
    if current == target:
        return None
    if target in _EVENTS:
        return _EVENTS[target]
    outcome_read = "last_outcome" in values  # a classified status, not a lost answer
    if target is _S.PENDING and current in (_S.DISPATCHING, _S.IN_PROGRESS) and outcome_read:
        return "fax.attempt_failed"
    return None


def check(job_id: str, current: JobState | str, target: JobState | str) -> None:
    """Raise ``IllegalTransition`` unless the table allows ``current -> target``."""
    current, target = JobState(current), JobState(target)
    if target not in TRANSITIONS[current]:
        raise IllegalTransition(job_id, current.value, target.value)


def _stamped(
    current: str, target: JobState, values: dict[str, Any], *, clear_finished: bool
) -> dict[str, Any]:
    """``values`` plus the columns every move sets."""
    now = utcnow()
    values["state"] = target.value
    values.setdefault("updated_at", now)
    if current != target:
        values.setdefault("state_changed_at", now)
    if target.is_final:
        values.setdefault("finished_at", now)
    elif clear_finished:
        values.setdefault("finished_at", None)
    return values


@lru_cache(maxsize=128)
def _update_for(conditions: tuple[str, ...], columns: tuple[str, ...]) -> Update:
    """One UPDATE per shape, built once: building a statement costs several times more
    than running it, and every attempt makes a few."""
    where = [getattr(Job, name) == bindparam(f"w_{name}") for name in conditions]
    return (
        update(Job)
        .where(Job.id == bindparam("w_id"), *where)
        .values(version=Job.version + 1, **{name: bindparam(f"v_{name}") for name in columns})
    )


def _move(
    connection: Connection, job_id: str, expect: dict[str, Any], values: dict[str, Any]
) -> bool:
    """The conditional UPDATE: True if the row still matched ``expect`` and was moved."""
    params = {"w_id": job_id}
    params.update({f"w_{name}": value for name, value in expect.items()})
    params.update({f"v_{name}": value for name, value in values.items()})
    statement = _update_for(tuple(expect), tuple(values))
    return bool(connection.execute(statement, params).rowcount == 1)


def transition(
    session: Session,
    job: Job,
    target: JobState,
    **values: Any,
) -> bool:
    """Move ``job`` to ``target`` if nobody else moved it first.

    Returns False (and changes nothing) when the row's state or version no longer match
    what ``job`` holds. On success the in-memory ``job`` is updated to match the row, and
    the move's callback event, if it makes one, is written to the outbox.
    """
    check(job.id, job.state, target)
    event = event_of(job.state, target, values)
    values = _stamped(job.state, target, values, clear_finished=job.finished_at is not None)
    expect = {"state": job.state, "version": job.version}
    if not _move(session.connection(), job.id, expect, values):
        return False
    # Mirror the row in memory without marking the object dirty (no second UPDATE).
    values["version"] = job.version + 1
    for name, value in values.items():
        set_committed_value(job, name, value)
    if event is not None:  # in the same transaction: the event commits with the move
        outbox.enqueue(session, job, event)
    return True


def transition_row(
    connection: Connection,
    job_id: str,
    current: JobState,
    target: JobState,
    *,
    expect: dict[str, Any] | None = None,
    **values: Any,
) -> bool:
    """Move a job that is not loaded, if it is still in ``current`` and its columns match
    ``expect``.

    For hot paths that know the state from a claim they made (a sent fax is recorded by
    job id and attempt number), saving the read of the whole row; they run on a plain
    connection (a session's is ``session.connection()``). Those moves make no callback
    event: a move that does goes through ``transition``.
    """
    check(job_id, current, target)
    assert event_of(current, target, values) is None, "a move with an event needs the job"
    values = _stamped(current, target, values, clear_finished=True)
    return _move(connection, job_id, {"state": current.value, **(expect or {})}, values)
