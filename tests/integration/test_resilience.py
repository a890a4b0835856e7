"""Provider resilience on the real stack: two worker processes, the sandbox with injected
faults, the breaker, rate limits and line leases shared through the embedded valkey."""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from dispatcher import guards, queries
from dispatcher.cli import app
from dispatcher.errors import ValidationError
from dispatcher.resilience import BreakerState
from dispatcher.submission import FaxRequest, submit
from tests.fixtures.documents import make_pdf
from tests.fixtures.stack import TIME_SCALE, Stack

pytestmark = pytest.mark.e2e

STACK_ENV = {"FAX_ROUTING_FILE": str(Path(__file__).parents[1] / "fixtures/config/routing.toml")}
STACK_WORKERS = 2
FINAL = {"succeeded", "failed", "cancelled"}


def send(to: str, provider: str | None = None, pages: int = 1, **options: Any) -> str:
    request = FaxRequest(
        to=to, documents=[("doc.pdf", make_pdf(pages))], provider=provider, options=options
    )
    return submit(request).job_id


def number(n: int) -> str:
    return f"+1202555{n:04d}"


def all_final(job_ids: list[str]) -> list[dict[str, Any]]:
    jobs = [queries.get_job(j) for j in job_ids]
    return jobs if all(j["state"] in FINAL for j in jobs) else []


def requests(stack: Stack, provider: str, kind: str | None = None) -> list[dict[str, Any]]:
    params = {"provider": provider} | ({"kind": kind} if kind else {})
    return httpx.get(f"{stack.sandbox_url}/_sandbox/requests", params=params).json()


def test_a_failing_provider_does_not_slow_the_others(stack: Stack) -> None:
    # Baseline: six InterFAX faxes with every provider healthy.
    started = time.monotonic()
    baseline = [send(number(150 + i), "interfax") for i in range(6)]
    stack.wait_for(lambda: all_final(baseline))
    healthy = time.monotonic() - started

    # FAX.PLUS now answers every request with a slow 503.
    stack.set_faults(providers=["faxplus"], error_rate=1.0, error_status=503, latency_ms=1500)
    started = time.monotonic()
    failing = [send(number(160 + i), "faxplus") for i in range(6)]
    others = [send(number(170 + i), "interfax") for i in range(6)]
    jobs = stack.wait_for(lambda: all_final(others))
    degraded = time.monotonic() - started
    print(f"\nInterFAX batch of 6: {healthy:.2f}s healthy, {degraded:.2f}s while FAX.PLUS fails")

    assert {j["state"] for j in jobs} == {"succeeded"}
    assert {queries.get_job(j)["state"] for j in failing} <= {"pending", "dispatching"}
    assert degraded < healthy + 5.0

    # The breaker opens, and for the rest of its cool-down nothing reaches FAX.PLUS: the
    # jobs wait in the database, not in worker threads.
    circuit = guards.breaker("faxplus")
    stack.wait_for(lambda: circuit.status().state is BreakerState.OPEN)
    calls_when_opened = len(requests(stack, "faxplus"))
    shown = CliRunner().invoke(app, ["providers", "--json"])
    circuits = {row["provider"]: row["circuit"] for row in json.loads(shown.output)}
    assert circuits["faxplus"] in {"open", "half_open"} and circuits["interfax"] == "closed"
    later = time.monotonic() + 1.5
    stack.wait_for(lambda: time.monotonic() > later)
    assert len(requests(stack, "faxplus")) <= calls_when_opened + 1  # at most one probe

    # Once FAX.PLUS recovers, a probe closes the breaker and its jobs go through.
    stack.set_faults(providers=[], error_rate=0.0, latency_ms=0)
    recovered = stack.wait_for(lambda: all_final(failing), timeout=90)
    assert {j["state"] for j in recovered} == {"succeeded"}


def test_a_reroutable_failure_moves_to_the_next_provider(stack: Stack) -> None:
    job_id = send(number(110))  # no provider named: the US route is interfax, faxplus, optum
    job = stack.wait_for(lambda: all_final([job_id]))[0]
    assert job["state"] == "succeeded"
    rows = queries.attempts(job_id)
    assert [(r["provider"], r["code"]) for r in rows] == [
        ("interfax", "6002"),
        ("faxplus", "failed_destination_not_supported"),
        ("optum", "FaxSent"),
    ]


def test_a_failure_that_is_not_reroutable_stays_put(stack: Stack) -> None:
    job_id = send(number(103))  # unallocated: no other provider would do better
    job = stack.wait_for(lambda: all_final([job_id]))[0]
    assert job["state"] == "failed"
    assert [r["provider"] for r in queries.attempts(job_id)] == ["interfax"]


def test_a_job_that_names_its_provider_is_never_rerouted(stack: Stack) -> None:
    job_id = send(number(110), "interfax")
    job = stack.wait_for(lambda: all_final([job_id]))[0]
    assert job["state"] == "failed"
    assert [r["provider"] for r in queries.attempts(job_id)] == ["interfax"]


def test_send_rate_limit_holds_across_two_worker_processes(stack: Stack) -> None:
    jobs = [send(number(200 + i), "interfax") for i in range(24)]
    stack.wait_for(lambda: all_final(jobs), timeout=90)
    times = sorted(r["at"] for r in requests(stack, "interfax", "send"))
    assert len(times) == 24
    busiest = max(sum(1 for t in times if start <= t < start + 1.0) for start in times)
    rate = (len(times) - 4) / (times[-1] - times[0])
    print(f"\nInterFAX sends: limit 4/s, measured {rate:.2f}/s, busiest second {busiest}")
    assert busiest <= 4 + 4  # a full bucket (burst 4) plus one second of refill
    assert rate <= 4 * 1.25
    logs = [w.log.read_text() for w in stack.workers]
    assert all("fax.dispatch" in log for log in logs), "both workers should have sent"


def test_one_number_is_never_dialled_twice_at_once(stack: Stack) -> None:
    jobs = [send(number(180), "interfax") for _ in range(3)]
    jobs += [send(number(180), "faxplus") for _ in range(2)]
    finished = stack.wait_for(lambda: all_final(jobs), timeout=90)
    assert {j["state"] for j in finished} == {"succeeded"}
    assert httpx.get(f"{stack.sandbox_url}/_sandbox/overlaps").json() == []
    assert [len(stack.sends(j["id"])) for j in finished] == [1] * 5  # each job once


def test_a_rejected_number_never_reaches_a_provider(stack: Stack) -> None:
    with pytest.raises(ValidationError, match="asked never to be faxed"):
        send(number(199))
    with pytest.raises(ValidationError, match="premium"):
        send("+19005550100", "interfax")
    assert stack.sends() == []
    assert queries.list_jobs(limit=5) == [] or all(
        j["to"] not in {number(199), "+19005550100"} for j in queries.list_jobs(limit=50)
    )


@pytest.mark.parametrize(
    ("choice", "pages_sent_again", "attempts"),
    [("resend_remaining", 3, 2), ("resend_all", 5, 2), ("accept", None, 1)],
)
def test_partial_sends(stack: Stack, choice: str, pages_sent_again: int | None, attempts: int):
    job_id = send(number(107), "interfax", pages=5, partial=choice)
    job = stack.wait_for(lambda: all_final([job_id]))[0]
    assert job["state"] == "succeeded"
    sends = stack.sends(job_id)
    assert len(sends) == attempts
    assert sends[0]["pages"] == 5
    if pages_sent_again is not None:
        assert sends[1]["pages"] == pages_sent_again
    else:
        assert "partial result accepted" in job["reason"]
        assert job["pages_sent"] == 2


def test_a_busy_line_delays_the_other_jobs_for_that_number(stack: Stack) -> None:
    # Given two jobs queued for a number whose first answers are busy
    first = send(number(101), "interfax")
    first_attempt = stack.wait_for(
        lambda: (rows := queries.attempts(first)) and rows[0]["finished_at"] and rows[0]
    )
    second = send(number(101), "interfax")
    # When the busy result blocks the line (HylaFAX ShareCallFailures)...
    stack.wait_for(lambda: all_final([first, second]), timeout=90)
    # Then the second job did not dial until the busy wait had passed
    busy_wait = 180 * TIME_SCALE * 0.9
    second_start = queries.attempts(second)[0]["started_at"]
    gap = (
        datetime.fromisoformat(second_start) - datetime.fromisoformat(first_attempt["finished_at"])
    ).total_seconds()
    assert gap >= busy_wait, gap
