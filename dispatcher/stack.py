"""The local stack: every process of one machine, started and stopped together.

``faxctl up`` and ``faxctl demo`` use it. Children run in their own sessions with their
output in ``FAX_HOME/logs/``; stopping sends SIGTERM (Celery's warm shutdown), waits,
then SIGKILLs what is left, and stops the embedded broker if this stack started it.
``FAX_HOME/stack.json`` tells scripts where everything is.

``LocalStack.supervise`` keeps it running: a child that dies (a worker the OOM killer took)
is started again with the same command, appending to the same log, after a backoff
(``Restarts``); so is the embedded broker. Servers get the same ``--port`` again and the broker
takes its previous port, so every process keeps the URLs it was given. The sandbox keeps its
state in ``FAX_HOME/sandbox/state.pickle``, so a restarted one still knows every fax.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from config.settings import Settings
from dispatcher.broker import ensure_embedded_broker, running_broker_url, stop_embedded_broker
from dispatcher.client import FaxClient
from dispatcher.processes import free_port, http_ready, launch, spawn
from dispatcher.providers.registry import definitions
from dispatcher.store.db import upgrade

__all__ = [
    "Child",
    "EmbeddedBroker",
    "LocalStack",
    "Restarts",
    "beat_command",
    "worker_command",
]


def worker_command(concurrency: int, name: str = "worker") -> list[str]:
    """The Celery worker command line: threads, since a worker mostly waits on HTTP."""
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "workers.app",
        "worker",
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


def _write_atomically(path: Path, text: str) -> None:
    """Readers polling ``path`` see the old content or the new, never half of it."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.replace(temporary, path)


def _running(pid: int) -> bool:
    """Whether ``pid`` runs: a dead daemon stays a zombie until init reaps it, maybe seconds."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:  # no /proc here: a zombie counts as running until it is reaped
        return True


@dataclass
class Restarts:
    """When a dead process comes back: 1 s after it died, doubling up to 30 s while it keeps
    dying, so a crash loop does not spin; one that stayed up ``stable`` s starts over at 1 s."""

    started_at: float = 0.0
    first: float = 1.0
    limit: float = 30.0
    stable: float = 60.0
    failures: int = 0
    #: when to restart; None while the process runs
    due: float | None = None

    def schedule(self, now: float) -> float:
        """Note a death (or a failed restart) at ``now``; returns the wait before restarting."""
        if now - self.started_at >= self.stable:
            self.failures = 0
        delay = min(self.limit, self.first * float(2**self.failures))
        self.failures += 1
        self.due = now + delay
        return delay

    def started(self, now: float) -> None:
        self.started_at, self.due = now, None


def _ended(returncode: int) -> str:
    """A Popen return code in words: the exit code, or the signal that killed it."""
    if returncode >= 0:
        return f"exited with code {returncode}"
    try:
        return f"was killed by {signal.Signals(-returncode).name}"
    except ValueError:  # a signal with no name, such as a real-time one
        return f"was killed by signal {-returncode}"


@dataclass
class Child:
    name: str
    command: list[str]
    log: Path
    process: subprocess.Popen[bytes]
    url: str | None = None
    restarts: Restarts = field(default_factory=Restarts)

    @property
    def pid(self) -> int:
        return self.process.pid

    def ended(self) -> str | None:
        """How the process ended, or None while it runs."""
        returncode = self.process.poll()
        return None if returncode is None else _ended(returncode)

    def relaunch(self, env: dict[str, str]) -> None:
        """The same command again, its output appended to the same log."""
        with contextlib.suppress(ProcessLookupError):  # what the dead leader left behind
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process = launch(self.command, self.log, env)


@dataclass
class EmbeddedBroker:
    """This FAX_HOME's valkey: it daemonizes (it is nobody's child), so it is watched by pid."""

    directory: Path
    url: str
    restarts: Restarts
    name: str = "broker"

    @property
    def pid(self) -> int | None:
        try:
            return int(json.loads((self.directory / "broker.json").read_text())["pid"])
        except (OSError, ValueError, KeyError):
            return None

    def ended(self) -> str | None:
        """None while the broker process runs (its exit code goes to init, not to us)."""
        pid = self.pid
        return None if pid is not None and _running(pid) else "is gone"

    def relaunch(self, env: dict[str, str]) -> None:
        """Start it again on its port: every process was handed its URL.

        The embedded broker falls back to any free port when its own is taken; here that
        would strand every child, so a taken port is a failed restart, tried again later.
        """
        port = urlsplit(self.url).port
        if port is None or free_port(port) != port:
            raise RuntimeError(f"port {port} is taken")
        ensure_embedded_broker(self.directory)


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
    #: the embedded broker, watched by ``supervise``; None with FAX_BROKER_URL
    broker: EmbeddedBroker | None = None
    #: monotonic seconds for ``supervise``; a test passes its own to skip the waiting
    clock: Callable[[], float] = time.monotonic

    @property
    def home(self) -> Path:
        return self.settings.home_dir

    def _spawn(
        self, name: str, command: list[str], ready: Callable[[], bool], url: str | None = None
    ) -> Child:
        logs = self.home / "logs"
        logs.mkdir(exist_ok=True)
        log = logs / f"{name}.log"
        process = spawn(command, log, self.env, ready, what=name)
        child = Child(name, command, log, process, url, Restarts(started_at=self.clock()))
        self.children.append(child)
        return child

    def _credentials(self) -> dict[str, str]:
        """API token and Flower password for this FAX_HOME, made once, kept 0600."""
        path = self.home / "credentials.json"
        if path.exists():
            known: dict[str, str] = json.loads(path.read_text())
            return known
        values = {
            "api_token": secrets.token_urlsafe(24),
            "flower_basic_auth": f"admin:{secrets.token_urlsafe(12)}",
        }
        path.touch(mode=0o600)
        path.write_text(json.dumps(values))
        return values

    def _needs_sandbox(self) -> bool:
        return not all(d.load_settings().configured() for d in definitions().values())

    def _serve(self, name: str, command: list[str], health_path: str) -> None:
        port = free_port(self.ports[name])
        url = f"http://127.0.0.1:{port}"
        self._spawn(name, [*command, "--port", str(port)], http_ready(url + health_path), url)
        if name == "sandbox":
            self.env["FAX_SANDBOX_URL"] = url

    def start(self) -> None:
        settings = self.settings
        was_running = running_broker_url(settings.broker_dir) is not None
        self.broker_url = settings.broker_url or ensure_embedded_broker(settings.broker_dir)
        self.started_broker = not settings.broker_url and not was_running
        if not settings.broker_url:
            restarts = Restarts(started_at=self.clock())
            self.broker = EmbeddedBroker(settings.broker_dir, self.broker_url, restarts)
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
            # Its state file is its own private pickle (see dispatcher.sandbox.persistence).
            state_file = self.home / "sandbox" / "state.pickle"
            sandbox = [*faxctl, "sandbox", "--state-file", str(state_file)]
            self._serve("sandbox", sandbox, "/_sandbox/sends")
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
        _write_atomically(self.home / "stack.json", json.dumps(state, indent=2))

    def api_client(self) -> FaxClient:
        """An HTTP client of this stack's API, with its token."""
        api = next(child.url for child in self.children if child.name == "api")
        settings_tokens = self.settings.api_tokens
        token = (
            settings_tokens[0].get_secret_value()
            if settings_tokens
            else self._credentials()["api_token"]
        )
        return FaxClient(str(api), token)

    def describe(self) -> dict[str, str]:
        where = {"broker": self.broker_url, "database": self.settings.resolved_database_url}
        for child in self.children:
            where[child.name] = child.url or f"pid {child.process.pid}"
        return where

    def supervise(self) -> list[str]:
        """One supervision step: note what died, restart what has waited out its backoff.

        Call it every half second or so; it returns one line per event for the operator.
        """
        now = self.clock()
        watched: list[Child | EmbeddedBroker] = [*self.children]
        if self.broker is not None:
            watched.append(self.broker)
        return [event for item in watched if (event := self._supervise(item, now))]

    def _supervise(self, item: Child | EmbeddedBroker, now: float) -> str | None:
        restarts = item.restarts
        if restarts.due is None:
            ended = item.ended()
            if ended is None:
                return None
            delay = restarts.schedule(now)
            return f"{item.name} (pid {item.pid}) {ended}; restarting in {delay:g} s"
        if now < restarts.due:
            return None
        try:
            item.relaunch(self.env)
        except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
            delay = restarts.schedule(now)
            return f"{item.name} did not restart ({exc}); trying again in {delay:g} s"
        restarts.started(now)
        if isinstance(item, EmbeddedBroker):
            self.started_broker = True  # ours now: stopped with the stack
        self._write_state()
        return f"{item.name} restarted (pid {item.pid})"

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
