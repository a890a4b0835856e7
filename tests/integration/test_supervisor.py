"""``LocalStack.supervise``: a dead child comes back after a doubling backoff, on a clock the
test moves (no sleeping), and FAX_HOME/stack.json follows its new pid."""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from config.settings import Settings
from dispatcher.processes import launch
from dispatcher.stack import Child, LocalStack

DIES = [sys.executable, "-c", "raise SystemExit(3)"]
STAYS = [sys.executable, "-c", "import time; time.sleep(60)"]


class FakeClock:
    """A monotonic clock that moves only when the test says so."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def stack(tmp_path: Path, clock: FakeClock) -> Iterator[LocalStack]:
    # An external broker URL: the stack watches no embedded broker here.
    settings = Settings(home=tmp_path, broker_url="redis://127.0.0.1:9/0")
    local = LocalStack(settings, clock=clock, env=dict(os.environ))
    (tmp_path / "logs").mkdir()
    yield local
    local.stop(timeout=5)


def add_child(stack: LocalStack, name: str, command: list[str]) -> Child:
    log = stack.home / "logs" / f"{name}.log"
    child = Child(name, command, log, launch(command, log, stack.env))
    stack.children.append(child)
    return child


def pid_in_state(stack: LocalStack, name: str) -> int:
    state = json.loads((stack.home / "stack.json").read_text())
    return state["processes"][name]["pid"]


def test_a_child_that_keeps_dying_is_restarted_after_1_2_4_up_to_30_seconds(
    stack: LocalStack, clock: FakeClock
):
    child = add_child(stack, "flaky", DIES)
    delays = []
    for _ in range(7):
        # Given the child has died
        dead_pid = child.process.pid
        child.process.wait(10)

        # When the supervisor notices, it says so and waits before restarting it
        (event,) = stack.supervise()
        assert f"flaky (pid {dead_pid}) exited with code 3; restarting in" in event
        due = child.restarts.due
        assert due is not None
        delays.append(due - clock.now)
        clock.now = due - 0.01
        assert stack.supervise() == []
        assert child.process.pid == dead_pid

        # Then once the backoff is over it runs the same command again, and says so
        clock.now = due
        assert stack.supervise() == [f"flaky restarted (pid {child.process.pid})"]
        assert child.process.pid != dead_pid
        assert pid_in_state(stack, "flaky") == child.process.pid
    assert delays == [1, 2, 4, 8, 16, 30, 30]

    # A child that stayed up a while starts over at 1 s
    child.process.wait(10)
    clock.now += 120
    stack.supervise()
    assert child.restarts.due == clock.now + 1


def test_a_killed_child_is_reported_with_its_signal_and_its_log_is_appended(
    stack: LocalStack, clock: FakeClock
):
    child = add_child(stack, "steady", STAYS)
    child.log.write_bytes(b"before\n")
    assert stack.supervise() == []

    child.process.send_signal(signal.SIGKILL)
    child.process.wait(10)
    (event,) = stack.supervise()
    assert "steady" in event and "killed by SIGKILL" in event

    clock.now += 1
    stack.supervise()
    assert child.process.poll() is None
    assert child.log.read_bytes().startswith(b"before\n")  # appended, not truncated
