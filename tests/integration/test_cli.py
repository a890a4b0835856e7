"""``faxctl`` end to end on the real stack: send, read back, act, and the exit codes."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from dispatcher.cli import app
from tests.fixtures.documents import make_pdf
from tests.fixtures.stack import Stack

pytestmark = pytest.mark.e2e
runner = CliRunner()


def faxctl(*args: str) -> tuple[int, Any]:
    """The exit code, and what was printed: parsed JSON (as loaded), else the text."""
    result = runner.invoke(app, list(args))
    try:
        return result.exit_code, json.loads(result.stdout)
    except ValueError:
        return result.exit_code, result.output


def test_send_then_read_status_and_attempts(stack: Stack, tmp_path: Path) -> None:
    letter = tmp_path / "letter.pdf"
    letter.write_bytes(make_pdf(2))
    code, sent = faxctl("send", "+12025550101", str(letter), "--provider", "interfax", "--json")
    assert code == 0 and sent["created"] is True
    job_id = sent["id"]

    status = stack.wait_for(
        lambda: (s := faxctl("status", job_id, "--json")[1])["state"] == "succeeded" and s
    )
    assert {
        "id",
        "state",
        "provider",
        "to",
        "attempts",
        "last_code",
        "remediation",
        "next_attempt_at",
        "reason",
    } <= set(status)
    assert (status["to"], status["attempts"], status["last_code"]) == ("+12025550101", 3, "0")

    code, attempts = faxctl("attempts", job_id, "--json")
    assert code == 0
    assert [a["code"] for a in attempts] == ["3931", "3931", "0"]
    for attempt in attempts:
        assert {
            "number",
            "provider",
            "provider_fax_id",
            "code",
            "outcome",
            "remediation",
            "started_at",
            "finished_at",
            "pages_sent",
            "error",
        } <= set(attempt)

    code, listed = faxctl("list", "--state", "succeeded", "--json")
    assert code == 0 and job_id in [j["id"] for j in listed]
    # a time without a zone is the machine's local time, as for the actions on a filter
    today = datetime.now().strftime("%Y-%m-%d")
    code, listed = faxctl("list", "--since", today, "--json")
    assert code == 0 and job_id in [j["id"] for j in listed]
    code, listed = faxctl("list", "--until", today, "--json")
    assert code == 0 and job_id not in [j["id"] for j in listed]


def test_operator_commands_and_exit_codes(stack: Stack, tmp_path: Path) -> None:
    letter = tmp_path / "letter.pdf"
    letter.write_bytes(make_pdf())
    _, sent = faxctl("send", "+12025550109", str(letter), "--provider", "optum", "--json")
    job_id = sent["id"]
    stack.wait_for(lambda: faxctl("status", job_id, "--json")[1]["state"] == "in_progress")
    code, cancelled = faxctl("cancel", job_id, "--json")
    assert code == 0 and cancelled["state"] == "cancelled"
    assert faxctl("resume", job_id)[0] == 4  # a cancelled job cannot be resumed: conflict
    assert faxctl("status", "0" * 32)[0] == 3  # not found
    assert faxctl("send", "12345", str(letter))[0] == 2  # invalid input
    assert faxctl("send", "+12025550100", str(tmp_path / "missing.pdf"))[0] == 2
    assert stack.sends(job_id) and len(stack.sends(job_id)) == 1
