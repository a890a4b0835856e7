"""Priority lanes: an urgent fax never waits behind a bulk run.

A job's ``priority`` picks its lane. Each lane has its own dispatch queue, and workers
take from the queues in the order ``config/celery.py`` declares them (kombu's priority
order): urgent before normal before bulk. The tick claims due jobs lane by lane, highest
first, keeping for each lower lane a share of every tick (``FAX_LANE_SHARE``), so urgent
work never starves bulk work entirely.
"""

from __future__ import annotations

import math
from enum import StrEnum

from dispatcher.errors import ValidationError

__all__ = ["LANES", "Priority", "lane_rooms", "parse_priority"]


class Priority(StrEnum):
    """How soon a job should go out, relative to the others due."""

    URGENT = "urgent"
    NORMAL = "normal"
    BULK = "bulk"

    @property
    def queue(self) -> str:
        """The dispatch queue of this lane."""
        return "dispatch" if self is Priority.NORMAL else f"dispatch-{self.value}"


def parse_priority(raw: str | None) -> Priority | None:
    """The lane a request names, None when it names none; ``ValidationError`` for another."""
    if raw is None or not raw.strip():
        return None
    try:
        return Priority(raw.strip().lower())
    except ValueError:
        lanes = ", ".join(lane.value for lane in Priority)
        raise ValidationError("priority", f"must be one of {lanes}") from None


#: Highest first.
LANES = (Priority.URGENT, Priority.NORMAL, Priority.BULK)


def lane_rooms(batch: int, share: float) -> dict[Priority, int]:
    """How many jobs each lane may claim in one tick when the lanes above it take all
    they can: each lane below the top keeps ``share`` of the batch for itself."""
    reserve = math.ceil(batch * share)
    below = len(LANES) - 1
    return {lane: max(batch - reserve * (below - i), 0) for i, lane in enumerate(LANES)}
