"""The shared process helpers, for real: sockets bound, children started, clocks running."""

from __future__ import annotations

import os
import re
import socket
import sys
from pathlib import Path

import pytest

from dispatcher.processes import free_port, spawn, wait_for


def test_free_port_is_the_preferred_one_while_nobody_listens_on_it() -> None:
    port = free_port()
    assert free_port(port) == port


def test_free_port_is_another_one_while_the_preferred_one_is_taken() -> None:
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        other = free_port(port)

        assert other != port
        with socket.socket() as server:  # and a server can listen on the one it gave
            server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            server.bind(("127.0.0.1", other))
            server.listen()


def test_wait_for_returns_the_first_truthy_answer() -> None:
    answers = iter([None, False, "", "ready", "later"])

    assert wait_for(lambda: next(answers), 5, interval=0.01) == "ready"


def test_wait_for_says_what_did_not_happen_when_time_is_up() -> None:
    with pytest.raises(TimeoutError, match=r"^the moon rising did not happen within 0\.2 s$"):
        wait_for(lambda: None, 0.2, what="the moon rising", interval=0.01)


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_spawn_returns_the_child_once_it_is_ready(tmp_path: Path) -> None:
    log = tmp_path / "child.log"
    child = python(
        "import time; time.sleep(0.3); print('up and running', flush=True); time.sleep(60)"
    )

    process = spawn(
        child, log, os.environ, lambda: b"up and running" in log.read_bytes(), what="the child"
    )

    try:
        assert process.poll() is None
        assert log.read_text() == "up and running\n"
    finally:
        process.kill()
        process.wait()


def test_spawn_raises_with_the_end_of_the_log_when_the_child_exits_first(tmp_path: Path) -> None:
    log = tmp_path / "child.log"
    log.write_text("an earlier run\n")  # appended to, not replaced

    with pytest.raises(RuntimeError) as caught:
        spawn(
            python("print('x' * 3000); print('no config here'); raise SystemExit(3)"),
            log,
            os.environ,
            lambda: False,
            what="the child",
        )

    message = str(caught.value)
    assert message.startswith(f"the child did not start: it exited with code 3 (see {log}):\n")
    assert message.endswith("x\nno config here\n")
    assert len(message.split(":\n", 1)[1]) == 2000
    assert log.read_text().startswith("an earlier run\n")


def test_spawn_stops_a_child_that_is_not_ready_in_time(tmp_path: Path) -> None:
    log = tmp_path / "child.log"
    child = python("import os, time; print('pid', os.getpid(), flush=True); time.sleep(60)")

    with pytest.raises(RuntimeError, match="the child did not start: it was not ready within"):
        spawn(child, log, os.environ, lambda: False, what="the child", timeout=0.5)

    found = re.search(r"pid (\d+)", log.read_text())
    assert found is not None
    with pytest.raises(ProcessLookupError):  # stopped and reaped
        os.kill(int(found.group(1)), 0)
