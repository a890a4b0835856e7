"""The local stack: every process of one machine, started and stopped together.

``faxctl up`` and ``faxctl demo`` use it. Children run in their own sessions with their
output in ``FAX_HOME/logs/``; stopping sends SIGTERM (Celery's warm shutdown), waits,
then SIGKILLs what is left, and stops the embedded broker if this stack started it.
``FAX_HOME/stack.json`` tells scripts where everything is.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from config.settings import Settings
from dispatcher.store.db import upgrade
from workers.broker import ensure_embedded_broker, running_broker_url, stop_embedded_broker

__all__ = ["LocalStack", "beat_command", "worker_command"]


def worker_command(concurrency: int, name: str = "worker") -> list[str]:
    """The Celery worker command line: threads, since a worker mostly waits on HTTP."""
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "workers.app",
        "worker",
        "-Q",
        "dispatch,poll,events",
        "-P",
        "threads",
        "-c",
        str(concurrency),
        "-n",
        f"{name}@%h",
        "--without-gossip",
        "--without-mingle",
        "--loglevel",
        "INFO",
    ]


def beat_command(schedule: Path) -> list[str]:
    """The Celery beat command line; the schedule file lives under FAX_HOME."""
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "workers.app",
        "beat",
        "--schedule",
        str(schedule),
        "--loglevel",
        "INFO",
    ]


def _free_port(preferred: int) -> int:
    for port in (preferred, 0):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    raise RuntimeError("no free port")


def _http_ready(url: str) -> Callable[[], bool]:
    def ready() -> bool:
        try:
            return httpx.get(url, timeout=1).status_code < 500
        except httpx.HTTPError:
            return False

    return ready


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log: Path
    url: str | None = None


@dataclass
class LocalStack:
    """Starts the broker, database, sandbox, worker, beat, API and Flower for one FAX_HOME."""

    settings: Settings
    concurrency: int = 16
    #: worker processes; one per core lets the slots use every core (each has a GIL)
    processes: int = 1
    ports: dict[str, int] = field(
        default_factory=lambda: {"api": 8000, "flower": 5555, "sandbox": 8765}
    )
    children: list[Child] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    broker_url: str = ""
    started_broker: bool = False

    @property
    def home(self) -> Path:
        return self.settings.home_dir

    def _spawn(
        self, name: str, command: list[str], ready: Callable[[], bool], url: str | None = None
    ) -> Child:
        logs = self.home / "logs"
        logs.mkdir(exist_ok=True)
        log = logs / f"{name}.log"
        process = subprocess.Popen(
            command,
            env=self.env,
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        child = Child(name, process, log, url)
        self.children.append(child)
        deadline = time.monotonic() + 60
        while not ready():
            if process.poll() is not None or time.monotonic() > deadline:
                tail = log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{name} did not start (see {log}):\n{tail}")
            time.sleep(0.1)
        return child

    def _credentials(self) -> dict[str, str]:
        """API token and Flower password for this FAX_HOME, made once, kept 0600."""
        path = self.home / "credentials.json"
        if path.exists():
            return json.loads(path.read_text())
        values = {
            "api_token": secrets.token_urlsafe(24),
            "flower_basic_auth": f"admin:{secrets.token_urlsafe(12)}",
        }
        path.touch(mode=0o600)
        path.write_text(json.dumps(values))
        return values

    def _needs_sandbox(self) -> bool:
        s = self.settings
        return not (s.faxplus.token and s.interfax.password and s.optum.client_secret)

    def _serve(self, name: str, command: list[str], health_path: str) -> None:
        port = _free_port(self.ports[name])
        url = f"http://127.0.0.1:{port}"
        self._spawn(name, [*command, "--port", str(port)], _http_ready(url + health_path), url)
        if name == "sandbox":
            self.env["FAX_SANDBOX_URL"] = url

    def start(self) -> None:
        settings = self.settings
        was_running = running_broker_url(settings.broker_dir) is not None
        self.broker_url = settings.broker_url or ensure_embedded_broker(settings.broker_dir)
        self.started_broker = not settings.broker_url and not was_running
        upgrade(settings.resolved_database_url)
        credentials = self._credentials()
        self.env = {
            **os.environ,
            "FAX_HOME": str(self.home),
            "FAX_DATABASE_URL": settings.resolved_database_url,
            "FAX_BROKER_URL": self.broker_url,
            "FAX_TIME_SCALE": str(settings.time_scale),
        }
        if not settings.api_tokens:
            self.env["FAX_API_TOKENS"] = json.dumps([credentials["api_token"]])
        if settings.flower_basic_auth is None:
            self.env["FAX_FLOWER_BASIC_AUTH"] = credentials["flower_basic_auth"]
        faxctl = [sys.executable, "-m", "dispatcher.cli"]
        if self._needs_sandbox():
            self._serve("sandbox", [*faxctl, "sandbox"], "/_sandbox/sends")
        for index in range(self.processes):
            self._start_worker("worker" if index == 0 else f"worker-{index + 1}")
        self._spawn("beat", beat_command(self.home / "celerybeat-schedule"), lambda: True)
        self._serve("api", [*faxctl, "api"], "/healthz")
        self._serve("flower", [*faxctl, "flower"], "/healthcheck")
        self._write_state()

    def _start_worker(self, name: str) -> None:
        log = self.home / "logs" / f"{name}.log"
        offset = log.stat().st_size if log.exists() else 0
        self._spawn(
            name,
            worker_command(self.concurrency, name),
            lambda: b" ready." in log.read_bytes()[offset:],
        )

    def _write_state(self) -> None:
        state = {
            "home": str(self.home),
            "broker": self.broker_url,
            "database": self.settings.resolved_database_url.split("@")[-1],
            "credentials": str(self.home / "credentials.json"),
            "processes": {
                c.name: {"pid": c.process.pid, "url": c.url, "log": str(c.log)}
                for c in self.children
            },
        }
        (self.home / "stack.json").write_text(json.dumps(state, indent=2))

    def describe(self) -> dict[str, str]:
        where = {"broker": self.broker_url, "database": self.settings.resolved_database_url}
        for child in self.children:
            where[child.name] = child.url or f"pid {child.process.pid}"
        return where

    def dead(self) -> list[str]:
        return [c.name for c in self.children if c.process.poll() is not None]

    def stop(self, timeout: float = 20.0) -> None:
        for child in reversed(self.children):
            if child.process.poll() is None:
                os.killpg(child.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for child in reversed(self.children):
            try:
                child.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(child.process.pid, signal.SIGKILL)
                child.process.wait()
        self.children.clear()
        if self.started_broker:
            stop_embedded_broker(self.settings.broker_dir)
        (self.home / "stack.json").unlink(missing_ok=True)
