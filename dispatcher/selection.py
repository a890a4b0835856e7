"""Acting on every job a search matches: resume every job held on InterFAX, retry every
job that failed as busy since 09:00, cancel a batch.

The jobs are taken in chunks of ids (keyset order, so a chunk costs the same however far
along), and each job is acted on in its own short transaction by the same operation an
action on one id uses: 100,000 jobs never make one huge transaction, and an interrupted
run loses nothing. Run again, it finds only the jobs still in a state the action applies
to, so a job is never acted on twice.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import ColumnElement, func, select

from dispatcher import operations, queries
from dispatcher.errors import IllegalTransition, ProviderError, ValidationError
from dispatcher.lifecycle import OPERATOR_MOVES
from dispatcher.queries import Search
from dispatcher.store.db import session_scope
from dispatcher.store.models import Job
from dispatcher.tenants import OPERATOR, Caller

__all__ = ["ACTIONS", "BulkResult", "act_on_matching", "count_matching"]

#: The actions that take a search, each the operation on one id.
ACTIONS: dict[str, Callable[..., Job]] = {
    "cancel": operations.cancel,
    "hold": operations.hold,
    "resume": operations.resume,
    "retry": operations.retry,
    "push": operations.push,
}
CHUNK = 500


@dataclass
class BulkResult:
    """How many jobs the action moved, and why the others it found were left."""

    acted: int = 0
    refused: Counter[str] = field(default_factory=Counter)


def _action(name: str) -> Callable[..., Job]:
    if name not in ACTIONS:
        raise ValidationError("action", f"unknown action {name!r} (one of {', '.join(ACTIONS)})")
    return ACTIONS[name]


def _applicable(action: str, search: Search, caller: Caller) -> list[ColumnElement[bool]]:
    """The search's conditions, narrowed to the states ``action`` applies to."""
    states, _ = OPERATOR_MOVES[action]
    if search.state is not None and search.state not in states:
        raise ValidationError(
            "state", f"{action} applies to {', '.join(sorted(states))} jobs, not {search.state}"
        )
    return [*queries.conditions(search, caller), Job.state.in_(sorted(states))]


def count_matching(action: str, search: Search, caller: Caller = OPERATOR) -> int:
    """How many jobs ``action`` would act on now: what to confirm before it runs."""
    _action(action)
    with session_scope() as session:
        return session.scalar(select(func.count()).where(*_applicable(action, search, caller))) or 0


def act_on_matching(
    action: str,
    search: Search,
    caller: Caller = OPERATOR,
    *,
    why: str | None = None,
    chunk: int = CHUNK,
    progress: Callable[[BulkResult], None] | None = None,
) -> BulkResult:
    """Run ``action`` on every job the search matches, chunk by chunk; ``progress`` hears
    the running totals after each chunk."""
    act = _action(action)
    reason = why or f"{action} by an operator, for every job matching a search"
    conditions = _applicable(action, search, caller)
    result = BulkResult()
    after = ""
    while True:
        with session_scope() as session:
            ids = list(
                session.scalars(
                    select(Job.id).where(*conditions, Job.id > after).order_by(Job.id).limit(chunk)
                )
            )
        if not ids:
            return result
        for job_id in ids:
            try:
                act(job_id, reason, caller)
            except (IllegalTransition, ProviderError) as exc:
                result.refused[_why_not(exc)] += 1
            else:
                result.acted += 1
        after = ids[-1]
        if progress is not None:
            progress(result)


def _why_not(exc: IllegalTransition | ProviderError) -> str:
    """A refusal's reason without the job's id, so equal reasons count together."""
    if isinstance(exc, IllegalTransition):
        return f"was {exc.current}"
    return f"{exc.provider}: {exc.kind}"
