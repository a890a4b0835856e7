"""Side effects outside the database happen after the transaction that decided them.

A job's line lease and a number's busy mark live in Redis; the job's state lives in the
database. A state change asks for its Redis effect with ``after_commit``, and the effect
runs once the session commits, never inside the transaction (a rollback would leave a
line released for a job still on it) and never if it rolls back. A failing effect is
logged: leases and marks expire by themselves.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from typing import TypeVar

from sqlalchemy import event
from sqlalchemy.orm import Session

__all__ = ["after_commit", "after_commit_batched"]

log = logging.getLogger(__name__)

T = TypeVar("T")

_KEY = "after_commit"
_BATCHED = "after_commit_batched"


def after_commit(session: Session, effect: Callable[[], None]) -> None:
    """Run ``effect`` once ``session``'s transaction commits."""
    session.info.setdefault(_KEY, []).append(effect)


def after_commit_batched(session: Session, effect: Callable[[list[T]], None], item: T) -> None:
    """Run ``effect`` once ``session``'s transaction commits, with every item given to it
    in the transaction: a batch that moves fifty jobs makes one round trip, not fifty."""
    session.info.setdefault(_BATCHED, {}).setdefault(effect, []).append(item)


@event.listens_for(Session, "after_commit")
def _run(session: Session) -> None:
    effects = session.info.pop(_KEY, [])
    batched = session.info.pop(_BATCHED, {})
    effects += [partial(effect, items) for effect, items in batched.items()]
    for effect in effects:
        try:
            effect()
        except Exception:
            log.exception("an effect after commit failed")


@event.listens_for(Session, "after_rollback")
def _drop(session: Session) -> None:
    session.info.pop(_KEY, None)
    session.info.pop(_BATCHED, None)
