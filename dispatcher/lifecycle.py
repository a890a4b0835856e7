"""Job states, the allowed transitions, and the one way to change a job's state.

Every change is a conditional UPDATE on (id, expected state, version): a duplicated or
late task finds the row already moved and changes nothing. A pair that is not in
``TRANSITIONS`` is a programming error and raises ``IllegalTransition``.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from dispatcher.clock import utcnow
from dispatcher.errors import IllegalTransition
from dispatcher.store.models import Job

__all__ = ["ACTIVE_STATES", "FINAL_STATES", "TRANSITIONS", "JobState", "check", "transition"]


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


FINAL_STATES = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})
ACTIVE_STATES = frozenset(JobState) - FINAL_STATES

S = JobState
#: from-state -> the states it may move to. A self-edge records progress without a move.
TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    S.PENDING: frozenset({S.PENDING, S.DISPATCHING, S.HELD, S.CANCELLED, S.FAILED}),
    S.DISPATCHING: frozenset({S.IN_PROGRESS, S.PENDING, S.HELD, S.FAILED, S.SUCCEEDED}),
    S.IN_PROGRESS: frozenset(
        {S.IN_PROGRESS, S.PENDING, S.HELD, S.SUCCEEDED, S.FAILED, S.CANCELLED}
    ),
    S.HELD: frozenset({S.PENDING, S.CANCELLED}),
    S.FAILED: frozenset({S.PENDING}),
    S.SUCCEEDED: frozenset(),
    S.CANCELLED: frozenset(),
}


def check(job_id: str, current: JobState | str, target: JobState | str) -> None:
    """Raise ``IllegalTransition`` unless the table allows ``current -> target``."""
    current, target = JobState(current), JobState(target)
    if target not in TRANSITIONS[current]:
        raise IllegalTransition(job_id, current.value, target.value)


def transition(
    session: Session,
    job: Job,
    target: JobState,
    **values: Any,
) -> bool:
    """Move ``job`` to ``target`` if nobody else moved it first.

    Returns False (and changes nothing) when the row's state or version no longer match
    what ``job`` holds. On success the in-memory ``job`` is updated to match the row.
    """
    check(job.id, job.state, target)
    now = utcnow()
    values.setdefault("updated_at", now)
    if target.is_final:
        values.setdefault("finished_at", now)
    elif "finished_at" not in values and job.finished_at is not None:
        values["finished_at"] = None
    result = session.execute(
        update(Job)
        .where(Job.id == job.id, Job.state == job.state, Job.version == job.version)
        .values(state=target.value, version=Job.version + 1, **values)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        return False
    # Mirror the row in memory without marking the object dirty (no second UPDATE).
    values.update(state=target.value, version=job.version + 1)
    for name, value in values.items():
        set_committed_value(job, name, value)
    return True
