"""The sandbox remembers its faxes across restarts, as a real provider does, through its state
file: after a clean stop, and after a SIGKILL once the snapshot was written."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
from typer.testing import CliRunner

from dispatcher.cli._app import app
from dispatcher.processes import free_port, http_ready, spawn, wait_for
from dispatcher.sandbox.persistence import read_state
from dispatcher.sandbox.server import SandboxServer
from tests.fixtures.sandbox import WebhookReceiver
from tests.integration.test_sandbox import (
    FAXPLUS_AUTH,
    faxplus_send,
    interfax_send,
    interfax_status,
    optum_headers,
    optum_send,
)

TIME_SCALE = 0.01
FAXPLUS = "/faxplus/v3/accounts/self"


def callbacks(receiver: WebhookReceiver) -> list[list[str]]:
    """The TransactionID of every InterFAX callback received."""
    bodies = [body for _, _, body in receiver.received]
    return [parse_qs(body.decode()).get("TransactionID", []) for body in bodies]


def send_one_of_each(http: httpx.Client) -> dict[str, Any]:
    """A fax through each provider, plus one InterFAX fax that stays in progress for long."""
    optum = optum_headers(http)
    faxplus = faxplus_send(http, "+12025550103", reference="r-fp")
    assert faxplus.status_code == 201, faxplus.text
    interfax = interfax_send(http, "+12025550102", reference="r-ifx")
    long_call = interfax_send(http, "+12025550109", reference="r-long")
    opt = optum_send(http, optum, "2025550105", reference="r-opt")
    assert opt.status_code == 200, opt.text
    return {
        "optum_headers": optum,
        "faxplus": faxplus.json()["ids"]["+12025550103"],
        "interfax": interfax.headers["location"].rsplit("/", 1)[-1],
        "long": long_call.headers["location"].rsplit("/", 1)[-1],
        "optum": opt.json()["faxId"],
    }


def statuses(http: httpx.Client, sent: dict[str, Any]) -> dict[str, Any]:
    """What each provider answers now for the faxes of ``send_one_of_each``."""
    faxplus = http.get(f"{FAXPLUS}/faxes/{sent['faxplus']}", headers=FAXPLUS_AUTH)
    optum = http.get(f"/optum/fax/{sent['optum']}", headers=sent["optum_headers"])
    return {
        "faxplus": (faxplus.status_code, faxplus.json().get("status")),
        "interfax": interfax_status(http, sent["interfax"]),
        "long": interfax_status(http, sent["long"]),
        "optum": (optum.status_code, optum.json().get("faxStatus")),
    }


def test_a_restarted_sandbox_knows_every_fax_its_registrations_and_its_clock(
    tmp_path: Path, receiver: WebhookReceiver
):
    # Given a sandbox with a state file, a fax through each provider and hooks registered
    state_file = tmp_path / "sandbox" / "state.pickle"
    callback = f"http://127.0.0.1:{receiver.server_address[1]}/ifx"
    with SandboxServer(time_scale=TIME_SCALE, state_file=state_file) as first:
        http = httpx.Client(base_url=first.url, timeout=5)
        sent = send_one_of_each(http)
        hook = {"target": "http://127.0.0.1:9/fp", "event": "fax_sent"}
        http.post("/faxplus/v3/hooks", json=hook, headers=FAXPLUS_AUTH)
        http.put("/_sandbox/interfax/callback", json={"url": callback})
        first.freeze()
        first.advance(30)  # the long call is sending (-3) and due in a few more seconds
        before = statuses(http, sent)
        sends = first.sends()
    assert before == {
        "faxplus": (200, "failed_unallocated_number"),
        "interfax": 3935,
        "long": -3,
        "optum": (200, "FaxFailed"),
    }
    assert [s["reference"] for s in sends] == ["r-fp", "r-ifx", "r-long", "r-opt"]

    # When a new sandbox starts on the same file
    with SandboxServer(time_scale=TIME_SCALE, state_file=state_file) as second:
        http = httpx.Client(base_url=second.url, timeout=5)

        # Then it answers for the same faxes with the same statuses (its clock went on from
        # where it was), keeps the send log, the hooks and the Optum token it issued
        assert statuses(http, sent) == before
        assert second.sends() == sends
        hooks = http.get("/faxplus/v3/hooks", headers=FAXPLUS_AUTH).json()["data"]
        assert [h["target"] for h in hooks] == [hook["target"]]

        # and the webhook still due fires when the long call ends
        second.advance(10)
        assert interfax_status(http, sent["long"]) == 0
        wait_for(lambda: [sent["long"]] in callbacks(receiver), 5, what="the long call's callback")

        # and new faxes get new ids, and the scenario cursor went on (busy, then busy again)
        again = interfax_send(http, "+12025550102", reference="r-again")
        assert again.headers["location"].rsplit("/", 1)[-1] not in (sent["interfax"], sent["long"])
        assert second.sends(reference="r-again")[0]["attempt"] == 2


def start_sandbox(state_file: Path, port: int) -> subprocess.Popen[bytes]:
    """``faxctl sandbox --state-file`` in a process of its own, once it answers; its output
    goes to ``sandbox.log`` beside the state file."""
    command = [sys.executable, "-m", "dispatcher.cli", "sandbox", "--port", str(port)]
    command += ["--time-scale", str(TIME_SCALE), "--state-file", str(state_file)]
    ready = http_ready(f"http://127.0.0.1:{port}/_sandbox/sends")
    log = state_file.parent / "sandbox.log"
    return spawn(command, log, os.environ, ready, what="the sandbox", timeout=30)


def test_a_killed_sandbox_keeps_what_it_had_written(tmp_path: Path):
    # Given a sandbox process with a state file, and a fax through each provider
    state_file = tmp_path / "state.pickle"
    port = free_port()
    process = start_sandbox(state_file, port)
    try:
        http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5)
        sent = send_one_of_each(http)
        sends = http.get("/_sandbox/sends").json()

        # When it is killed once its snapshot holds them
        def snapshot_holds_them() -> bool:
            if not state_file.exists():
                return False
            state = read_state(state_file)
            assert state is not None, f"{state_file} exists but read_state found no snapshot"
            return len(state["sends"]) == 4

        wait_for(snapshot_holds_them, 5, what="the snapshot holding every send")
        process.send_signal(signal.SIGKILL)
        process.wait(10)
        process = start_sandbox(state_file, port)

        # Then the new process answers for the same faxes and keeps the send log
        http.post("/_sandbox/advance", params={"seconds": 5})  # everything but the long call
        after = statuses(http, sent)
        assert after["faxplus"] == (200, "failed_unallocated_number")
        assert (after["interfax"], after["optum"]) == (3935, (200, "FaxFailed"))
        assert after["long"] in (-2, -3)
        assert http.get("/_sandbox/sends").json() == sends
    finally:
        process.terminate()
        process.wait(10)


def test_an_unreadable_state_file_is_refused(tmp_path: Path):
    state_file = tmp_path / "state.pickle"
    state_file.write_bytes(b"not a snapshot")
    result = CliRunner().invoke(app, ["sandbox", "--state-file", str(state_file)])
    assert result.exit_code == 2
    assert "state file" in result.output
