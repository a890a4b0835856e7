"""``faxctl up`` and the Procfile start every process for real, and stop with none left."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from config.settings import get_settings
from dispatcher import inprocess
from dispatcher.broker import running_broker_url, stop_embedded_broker
from dispatcher.clock import utcnow
from dispatcher.processes import free_port, launch, spawn, wait_for
from dispatcher.sandbox.persistence import read_state
from tests.fixtures.documents import make_pdf

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def ok(url: str, **kwargs: Any) -> bool:
    try:
        return httpx.get(url, timeout=2, **kwargs).status_code == 200
    except httpx.HTTPError:
        return False


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def start_up(
    env: dict[str, str], home: Path, *options: str
) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    """``faxctl up`` in ``home``, its output in ``home/up.log``, once it wrote stack.json."""
    state_file = home / "var" / "stack.json"
    command = [str(BIN / "faxctl"), "up", "--concurrency", "4", *options]
    process = spawn(
        command, home / "up.log", env, state_file.exists, what="faxctl up", timeout=90, cwd=home
    )
    return process, json.loads(state_file.read_text())


def stop(process: subprocess.Popen[bytes], state: dict[str, Any]) -> None:
    process.send_signal(signal.SIGTERM)
    assert process.wait(60) == 0
    pids = [p["pid"] for p in state["processes"].values()]
    wait_for(lambda: not any(alive(pid) for pid in pids), 30, what="every child gone")


def test_up_starts_everything_and_stops_without_orphans_and_jobs_carry_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAX_")}
    env["FAX_TIME_SCALE"] = "0.01"
    process, state = start_up(env, tmp_path, "--processes", "2")
    try:
        where = state["processes"]
        assert set(where) == {"sandbox", "worker", "worker-2", "beat", "api", "flower"}
        credentials = json.loads(Path(state["credentials"]).read_text())
        token = {"Authorization": f"Bearer {credentials['api_token']}"}
        assert ok(f"{where['api']['url']}/healthz")
        assert ok(f"{where['api']['url']}/v1/faxes", headers=token)
        user, password = credentials["flower_basic_auth"].split(":", 1)
        assert ok(f"{where['flower']['url']}/api/workers", auth=(user, password))
        assert not ok(f"{where['flower']['url']}/api/workers")  # Flower requires the login
        # A job accepted now but due later waits in the database across a restart.
        monkeypatch.chdir(tmp_path)
        monkeypatch.setenv("FAX_HOME", str(tmp_path / "var"))
        monkeypatch.delenv("FAX_DOCUMENT_KEYS")  # the embedded default: the key beside fax.db
        monkeypatch.setenv("FAX_BROKER_URL", state["broker"])
        get_settings.cache_clear()
        job_id = inprocess.submit(
            "+12025550100",
            [("a.pdf", make_pdf())],
            provider="interfax",
            send_at=utcnow() + timedelta(seconds=8),
        )
    finally:
        stop(process, state)
    assert not (tmp_path / "var" / "stack.json").exists()
    assert running_broker_url(tmp_path / "var" / "broker") is None  # its broker stopped too
    assert inprocess.get(job_id)["state"] == "pending"

    process, state = start_up(env, tmp_path, "--processes", "2")
    try:
        monkeypatch.setenv("FAX_BROKER_URL", state["broker"])
        get_settings.cache_clear()
        wait_for(lambda: inprocess.get(job_id)["state"] == "succeeded", 120, what="the job sent")
    finally:
        stop(process, state)


def test_every_procfile_line_starts(tmp_path: Path) -> None:
    ports = {name: free_port() for name in ("api", "flower", "sandbox")}
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAX_")}
    env.update(
        PATH=f"{BIN}:{env['PATH']}",
        FAX_HOME=str(tmp_path / "var"),
        FAX_API_PORT=str(ports["api"]),
        FAX_FLOWER_PORT=str(ports["flower"]),
        FAX_SANDBOX_PORT=str(ports["sandbox"]),
        FAX_SANDBOX_URL=f"http://127.0.0.1:{ports['sandbox']}",
        FAX_API_TOKENS='["procfile-token"]',
        FAX_FLOWER_BASIC_AUTH="admin:procfile",
        FAX_WORKER_CONCURRENCY="2",
    )
    subprocess.run(
        [str(BIN / "faxctl"), "db", "upgrade"],
        env=env,
        cwd=tmp_path,
        check=True,
        capture_output=True,
    )
    log = tmp_path / "honcho.log"
    honcho = launch(
        [str(BIN / "honcho"), "-f", str(ROOT / "Procfile"), "-d", str(tmp_path), "start"], log, env
    )
    try:
        wait_for(lambda: ok(f"http://127.0.0.1:{ports['api']}/healthz"), 90, what="the API")
        sends = f"http://127.0.0.1:{ports['sandbox']}/_sandbox/sends"
        wait_for(lambda: ok(sends), 90, what="the sandbox")
        flower = f"http://127.0.0.1:{ports['flower']}/healthcheck"
        wait_for(lambda: ok(flower), 90, what="Flower")
        wait_for(lambda: b"ready." in log.read_bytes(), 90, what="the worker")
        wait_for(lambda: b"beat: Starting" in log.read_bytes(), 90, what="beat")
    finally:
        os.killpg(honcho.pid, signal.SIGTERM)
        honcho.wait(60)
        # The Procfile's processes share an embedded broker that outlives them by design.
        stop_embedded_broker(tmp_path / "var" / "broker")
    output = log.read_text()
    for name in ("api", "worker", "beat", "flower", "sandbox"):
        assert f"{name}.1" in output


def read_stack(home: Path) -> dict[str, Any]:
    return json.loads((home / "stack.json").read_text())


def restarted(home: Path, name: str, dead_pid: int) -> dict[str, Any]:
    """stack.json once it names a new, live process for ``name``; {} until then."""
    state = read_stack(home)
    pid = state["processes"][name]["pid"]
    return state if pid != dead_pid and alive(pid) else {}


def saved_state(path: Path) -> dict[str, Any]:
    """The sandbox's saved state; read once its state file exists."""
    state = read_state(path)
    assert state is not None, f"{path} holds no saved state"
    return state


def submit_and_wait(provider: str) -> str:
    job_id = inprocess.submit("+12025550100", [("a.pdf", make_pdf())], provider=provider)
    wait_for(lambda: inprocess.get(job_id)["state"] == "succeeded", 120, what=f"{job_id} sent")
    return job_id


def test_up_restarts_a_killed_worker_sandbox_and_broker_and_stops_only_when_told(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAX_")}
    env["FAX_TIME_SCALE"] = "0.01"
    output = tmp_path / "up.log"
    process, state = start_up(env, tmp_path)
    home = tmp_path / "var"
    pids = {p["pid"] for p in state["processes"].values()}
    try:
        monkeypatch.chdir(tmp_path)
        monkeypatch.setenv("FAX_HOME", str(home))
        monkeypatch.delenv("FAX_DOCUMENT_KEYS")  # the embedded default: the key beside fax.db
        monkeypatch.setenv("FAX_BROKER_URL", state["broker"])
        get_settings.cache_clear()

        # Given a worker killed as the OOM killer does
        worker = state["processes"]["worker"]
        ready_before = Path(worker["log"]).read_bytes().count(b" ready.")
        os.kill(worker["pid"], signal.SIGKILL)

        # Then faxctl up says so, restarts it (same log, new pid in stack.json), and it works
        state = wait_for(lambda: restarted(home, "worker", worker["pid"]), 90, what="a new worker")
        pids.add(state["processes"]["worker"]["pid"])
        log = Path(worker["log"])
        wait_for(lambda: log.read_bytes().count(b" ready.") > ready_before, 90, what="worker ready")
        assert process.poll() is None
        assert b"worker" in output.read_bytes() and b"SIGKILL" in output.read_bytes()
        job_id = submit_and_wait("interfax")

        # Given the sandbox killed once its state file holds that fax
        sandbox = state["processes"]["sandbox"]
        sends = httpx.get(f"{sandbox['url']}/_sandbox/sends").json()
        state_file = home / "sandbox" / "state.pickle"
        wait_for(
            lambda: state_file.exists() and len(saved_state(state_file)["sends"]) == len(sends),
            90,
            what="the sandbox's state file holding every send",
        )
        os.kill(sandbox["pid"], signal.SIGKILL)

        # Then it comes back on the same URL and still knows the fax
        state = wait_for(lambda: restarted(home, "sandbox", sandbox["pid"]), 90, what="a sandbox")
        pids.add(state["processes"]["sandbox"]["pid"])
        assert state["processes"]["sandbox"]["url"] == sandbox["url"]
        wait_for(lambda: ok(f"{sandbox['url']}/_sandbox/sends"), 90, what="the sandbox answering")
        assert httpx.get(f"{sandbox['url']}/_sandbox/sends").json() == sends
        fax_id = inprocess.get(job_id)["provider_fax_id"]
        known = httpx.get(
            f"{sandbox['url']}/interfax/outbound/faxes/{fax_id}", auth=("sandbox", "sandbox")
        )
        assert (known.status_code, known.json()["status"]) == (200, 0)

        # Given the embedded broker killed
        broker_pid = json.loads((home / "broker" / "broker.json").read_text())["pid"]
        os.kill(broker_pid, signal.SIGKILL)

        # Then it comes back on the same URL and faxes go through again
        broker = home / "broker"
        wait_for(lambda: running_broker_url(broker) == state["broker"], 90, what="the broker back")
        submit_and_wait("faxplus")
        state = read_stack(home)
        pids |= {p["pid"] for p in state["processes"].values()}
    finally:
        process.send_signal(signal.SIGTERM)
        returncode = process.wait(60)
    assert returncode == 0
    wait_for(lambda: not any(alive(pid) for pid in pids), 30, what="every child gone")
    assert running_broker_url(home / "broker") is None
