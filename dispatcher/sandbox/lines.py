"""Line overlaps: two calls to one destination number whose time on the line intersects.

A real fax line carries one call at a time, so the dispatcher must never dial a number that
one of its own calls is still using. Each provider module lists its calls (``calls(ctx)``)
from the fax records it already keeps; this module only finds the pairs that overlap.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from dispatcher.sandbox.state import Segment

__all__ = ["Call", "overlaps", "segment_calls", "segment_end"]


@dataclass(frozen=True, slots=True)
class Call:
    """One transmission on the line: ``[start, end)`` in sandbox clock seconds."""

    provider: str
    fax_id: str
    reference: str | None
    number: str
    start: float
    end: float

    def to_json(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "fax_id": self.fax_id,
            "reference": self.reference,
            "start": self.start,
            "end": self.end,
        }


def segment_end(segment: Segment) -> float:
    """When a segment leaves the line: cut short (cancel, hold), or its scheduled end."""
    return segment.stopped_at if segment.stopped_at is not None else segment.due


def segment_calls(
    provider: str, fax_id: str, reference: str | None, number: str, entries: Iterable[object]
) -> list[Call]:
    """One call per transmission segment of a fax's timeline."""
    return [
        Call(provider, fax_id, reference, number, entry.started, segment_end(entry))
        for entry in entries
        if isinstance(entry, Segment)
    ]


def overlaps(calls: Iterable[Call]) -> list[dict[str, Any]]:
    """Every pair of calls to the same number whose intervals intersect, earlier call first."""
    by_number: dict[str, list[Call]] = defaultdict(list)
    for call in calls:
        if call.end > call.start:  # an empty interval holds no line
            by_number[call.number].append(call)
    found = []
    for number, group in sorted(by_number.items()):
        group.sort(key=lambda c: (c.start, c.end))
        for i, first in enumerate(group):
            for second in group[i + 1 :]:
                if second.start >= first.end:
                    break
                pair = {"number": number, "first": first.to_json(), "second": second.to_json()}
                found.append(pair)
    return found
