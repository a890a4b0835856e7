"""How one tick is shared between the priority lanes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dispatcher.errors import ValidationError
from dispatcher.lanes import LANES, Priority, lane_rooms, parse_priority


def test_each_lower_lane_keeps_its_share_of_a_tick() -> None:
    assert lane_rooms(500, 0.1) == {Priority.URGENT: 400, Priority.NORMAL: 450, Priority.BULK: 500}


@given(batch=st.integers(1, 10_000), share=st.floats(0, 0.49))
def test_rooms_never_shrink_down_the_lanes_and_the_last_may_take_the_whole_tick(
    batch: int, share: float
) -> None:
    rooms = lane_rooms(batch, share)
    assert [rooms[lane] for lane in LANES] == sorted(rooms[lane] for lane in LANES)
    assert rooms[LANES[-1]] == batch and all(0 <= room <= batch for room in rooms.values())


def test_a_lane_is_named_or_refused_clearly() -> None:
    assert parse_priority(" Urgent ") is Priority.URGENT
    assert parse_priority(None) is parse_priority("") is None
    with pytest.raises(ValidationError, match="urgent, normal, bulk"):
        parse_priority("asap")
    assert [lane.queue for lane in LANES] == ["dispatch-urgent", "dispatch", "dispatch-bulk"]
