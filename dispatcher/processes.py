"""Free ports, child processes and waits, shared by the local stack, the bench and the tests.

One copy of each: a free port picked the way servers bind, a child started in its own
session with its output in a log, a wait with a deadline that says what did not happen.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Literal, TypeVar

import httpx

__all__ = ["free_port", "http_ready", "launch", "spawn", "wait_for"]

T = TypeVar("T")


def _bind(host: str, port: int) -> int | None:
    """The port a server gets binding ``port`` now (SO_REUSEADDR, as servers bind), or None."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return None
        return int(sock.getsockname()[1])


def free_port(preferred: int | None = None, host: str = "127.0.0.1") -> int:
    """``preferred`` if a server could listen on it, else any free port.

    ``free_port(port) == port`` says whether ``port`` is free."""
    port = _bind(host, preferred) if preferred else None
    port = port or _bind(host, 0)
    if port is None:
        raise RuntimeError(f"no free port on {host}")
    return port


def wait_for(
    condition: Callable[[], T | None | Literal[False]],
    timeout: float,
    *,
    what: str = "the condition",
    interval: float = 0.05,
) -> T:
    """Call ``condition`` every ``interval`` s until it answers something truthy, and return
    that; ``TimeoutError`` naming ``what`` once ``timeout`` s have passed without it."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout:g} s")
        time.sleep(interval)


def http_ready(url: str) -> Callable[[], bool]:
    """A readiness check: ``url`` answers, with anything but a server error."""

    def ready() -> bool:
        try:
            return httpx.get(url, timeout=1).status_code < 500
        except httpx.HTTPError:
            return False

    return ready


def launch(
    command: list[str], log: Path, env: Mapping[str, str], cwd: Path | None = None
) -> subprocess.Popen[bytes]:
    """Start a child in its own session, its output appended to ``log``; no waiting."""
    with log.open("ab") as out:
        return subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def spawn(
    command: list[str],
    log: Path,
    env: Mapping[str, str],
    ready: Callable[[], bool],
    *,
    what: str,
    timeout: float = 60.0,
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    """``launch`` the child and wait until ``ready()``; ``RuntimeError`` with the end of its
    log if it exits first or is not ready within ``timeout`` s (it is stopped then)."""
    process = launch(command, log, env, cwd)

    def outcome() -> Literal["ready", "exited"] | None:
        if ready():
            return "ready"
        return None if process.poll() is None else "exited"

    try:
        if wait_for(outcome, timeout, what=f"{what} starting") == "ready":
            return process
        problem = f"it exited with code {process.returncode}"
    except TimeoutError:
        problem = f"it was not ready within {timeout:g} s"
    _stop(process)
    tail = log.read_text(errors="replace")[-2000:]
    raise RuntimeError(f"{what} did not start: {problem} (see {log}):\n{tail}")


def _stop(process: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGTERM to the child's session, then SIGKILL if it is still there after ``grace`` s."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(grace)
            return
