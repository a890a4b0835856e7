"""One isolated stack per measurement: a temporary FAX_HOME, its own embedded broker and
database, and child processes (sandbox, workers) that are always stopped.

The bench process itself submits and ticks, so this module also points the current
process at the stack (environment, cached settings, adapters) and restores it afterwards.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import psutil
from cryptography.fernet import Fernet

from config.settings import CONFIG_DIR, get_settings
from dispatcher.bench.baseline import DOCUMENT
from dispatcher.bench.workload import document
from dispatcher.broker import ensure_embedded_broker, stop_embedded_broker
from dispatcher.processes import free_port, http_ready, spawn
from dispatcher.runtime import clear_adapters
from dispatcher.stack import beat_command, worker_command
from dispatcher.store.db import engine_for, upgrade

__all__ = ["BenchStack", "bench_stack", "rss_mb", "steady_rate"]

ROOT = Path(__file__).resolve().parents[2]


def _routing_without_limits(target: Path) -> Path:
    """The default routing file minus its [limits.*] tables: the bench measures our
    code, not the per-account rate limits (which would cap every number it reports)."""
    kept: list[str] = []
    in_limits = False
    for line in (CONFIG_DIR / "routing.toml").read_text().splitlines():
        if line.startswith("["):
            in_limits = line.startswith("[limits")
        if not in_limits:
            kept.append(line)
    target.write_text("\n".join(kept) + "\n")
    return target


def _point_here(env: dict[str, str]) -> None:
    """Make this process's settings, engines and adapters follow ``env``."""
    for key in [k for k in os.environ if k.startswith("FAX_")]:
        del os.environ[key]
    os.environ.update({k: v for k, v in env.items() if k.startswith("FAX_")})
    get_settings.cache_clear()
    clear_adapters()


@dataclass
class BenchStack:
    """A temporary stack; start children with ``start_sandbox`` / ``start_worker``."""

    home: Path
    env: dict[str, str]
    children: list[subprocess.Popen[bytes]] = field(default_factory=list)
    sandbox_url: str = ""

    def _spawn(
        self,
        name: str,
        command: list[str],
        ready: str | Callable[[], bool],
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        timeout: float = 60.0,
    ) -> subprocess.Popen[bytes]:
        """Start ``name`` with a fresh log and wait until ``ready()``, or its log shows it."""
        log = self.home / f"{name}.log"
        log.unlink(missing_ok=True)  # a name comes back once its child was stopped

        def up() -> bool:
            return ready() if callable(ready) else ready.encode() in log.read_bytes()

        environment = {**self.env, **(env or {})}
        process = spawn(command, log, environment, up, what=name, timeout=timeout, cwd=cwd or ROOT)
        self.children.append(process)
        return process

    def start_sandbox(self, latency_ms: float = 0.0) -> str:
        port = free_port()
        self.sandbox_url = f"http://127.0.0.1:{port}"
        command = [sys.executable, "-m", "dispatcher.cli", "sandbox", "--port", str(port)]
        command += ["--latency-ms", str(latency_ms)]
        up = http_ready(f"{self.sandbox_url}/_sandbox/sends")
        self._spawn("sandbox", command, up, timeout=30)
        self.env["FAX_SANDBOX_URL"] = self.sandbox_url
        _point_here(self.env)
        return self.sandbox_url

    def start_http(
        self, name: str, target: str, *, factory: bool, ready_path: str
    ) -> tuple[str, subprocess.Popen[bytes]]:
        """Serve the ASGI app ``target`` with uvicorn in one child process, as ``faxctl
        api`` does; its base URL and its process."""
        port = free_port()
        command = [sys.executable, "-m", "uvicorn", target, "--port", str(port)]
        command += ["--log-level", "warning", *(["--factory"] if factory else [])]
        url = f"http://127.0.0.1:{port}"
        return url, self._spawn(name, command, http_ready(f"{url}{ready_path}"))

    def start_beat(self) -> subprocess.Popen[bytes]:
        """Celery beat on the deployed schedule (tick, watchdog, purge)."""
        command = beat_command(self.home / "celerybeat-schedule")
        return self._spawn("beat", command, "beat: Starting")

    def start_worker(
        self,
        concurrency: int,
        pool: str = "threads",
        app: str = "workers.app",
        queues: str = "",
        sends: int | None = None,
        home: Path | None = None,
    ) -> subprocess.Popen[bytes]:
        """Our worker (``dispatcher.stack.worker_command``) with a send pool of ``sends``,
        or the same command line for another app (the bare Celery baseline) or pool.
        ``home``: run it as another host would, with this FAX_HOME and working directory."""
        command = worker_command(concurrency, f"bench{len(self.children)}")
        command[command.index("threads")] = pool
        command[command.index("workers.app")] = app
        if queues:
            command += ["-Q", queues]
        env = {"FAX_SEND_CONCURRENCY": str(sends)} if sends else {}
        if home is not None:
            env["FAX_HOME"] = str(home)
        return self._spawn(f"worker-{len(self.children)}", command, " ready.", env, home)

    def stop_child(self, process: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        if process in self.children:
            self.children.remove(process)

    def sends(self) -> list[dict[str, Any]]:
        response = httpx.get(f"{self.sandbox_url}/_sandbox/sends", timeout=120)
        response.raise_for_status()
        sends: list[dict[str, Any]] = response.json()
        return sends

    def send_count(self) -> int:
        return len(self.sends())


def rss_mb(process: subprocess.Popen[bytes]) -> float:
    """Resident memory of a worker and its children (a prefork pool would have some)."""
    try:
        root = psutil.Process(process.pid)
        members = [root, *root.children(recursive=True)]
        return sum(p.memory_info().rss for p in members) / 2**20
    except psutil.Error:
        return 0.0


def steady_rate(sends: list[dict[str, Any]], low: float = 0.1, high: float = 0.9) -> float:
    """Sends per second between the 10th and 90th percentile of send times: the steady
    part, without the worker's start and the last stragglers."""
    times = sorted(datetime.fromisoformat(s["at"]).timestamp() for s in sends)
    if len(times) < 10:
        return 0.0
    first, last = int(len(times) * low), int(len(times) * high)
    span = times[last] - times[first]
    return (last - first) / span if span > 0 else 0.0


@contextmanager
def bench_stack(
    label: str,
    *,
    time_scale: float = 1.0,
    database_url: str | None = None,
    extra_env: dict[str, str] | None = None,
) -> Iterator[BenchStack]:
    """A fresh FAX_HOME with its broker and migrated database; everything is stopped and
    removed on the way out, and this process's settings are restored."""
    saved = {k: v for k, v in os.environ.items() if k.startswith("FAX_")}
    home = Path(tempfile.mkdtemp(prefix=f"fax-bench-{label}-"))
    broker_dir = home / "broker"
    stack: BenchStack | None = None
    try:
        broker = ensure_embedded_broker(broker_dir)
        db_url = database_url or f"sqlite:///{home / 'fax.db'}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("FAX_")}
        env.update(
            FAX_HOME=str(home),
            FAX_DATABASE_URL=db_url,
            FAX_DOCUMENT_KEYS=json.dumps([Fernet.generate_key().decode()]),
            FAX_BROKER_URL=broker,
            FAX_TIME_SCALE=str(time_scale),
            FAX_ROUTING_FILE=str(_routing_without_limits(home / "routing.toml")),
            PYTHONPATH=str(ROOT),
            **(extra_env or {}),
        )
        (home / DOCUMENT).write_bytes(document())  # what the bare baseline sends
        stack = BenchStack(home, env)
        _point_here(env)
        upgrade(db_url)
        yield stack
    finally:
        if stack is not None:
            for process in list(stack.children):
                stack.stop_child(process)
            engine_for(stack.env["FAX_DATABASE_URL"]).dispose()
        stop_embedded_broker(broker_dir)
        _point_here(saved)
        shutil.rmtree(home, ignore_errors=True)
