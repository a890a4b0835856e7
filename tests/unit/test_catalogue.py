"""The status catalogue: every seed code is known, and remediations follow the provider's words."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from dispatcher.catalogue import (
    Family,
    Outcome,
    Remediation,
    classify,
    classify_transport,
    entries,
    normalize_code,
)
from dispatcher.providers.registry import PROVIDERS

SEED_CODES: dict[str, list[str | int]] = json.loads(
    (Path(__file__).parents[1] / "fixtures" / "seed_codes.json").read_text()
)
ENTRY_FIELDS = {
    "provider",
    "code",
    "label",
    "outcome",
    "remediation",
    "reroutable",
    "family",
    "description",
    "known",
}


def _seed_cases() -> list[tuple[str, str | int]]:
    return [(provider, code) for provider, codes in SEED_CODES.items() for code in codes]


def test_fixture_covers_every_provider() -> None:
    assert set(SEED_CODES) == set(PROVIDERS)
    assert all(SEED_CODES.values())


@pytest.mark.parametrize(("provider", "code"), _seed_cases())
def test_every_seed_code_is_known(provider: str, code: str | int) -> None:
    entry = classify(provider, code)
    assert entry.known
    assert entry.provider == provider
    assert entry.code == normalize_code(provider, code)
    assert entry.label
    assert entry.description


@pytest.mark.parametrize("provider", PROVIDERS)
def test_tables_are_consistent(provider: str) -> None:
    rows = entries(provider)
    assert len({e.code for e in rows}) == len(rows)
    for e in rows:
        assert e.provider == provider
        assert e.known
        assert classify(provider, e.code) is e
        # Only a success status may say success, and a success is always final.
        assert (e.remediation is Remediation.SUCCESS) == (e.outcome is Outcome.SUCCESS)
        if e.outcome is Outcome.IN_PROGRESS:
            assert e.remediation in (Remediation.POLL, Remediation.WAIT_FOR_CREDIT)


@pytest.mark.parametrize(
    ("provider", "code", "outcome", "remediation", "family"),
    [
        ("interfax", 3931, Outcome.FAILURE, Remediation.WAIT_AND_RETRY, Family.BUSY),
        ("interfax", 0, Outcome.SUCCESS, Remediation.SUCCESS, Family.SUCCESS),
        ("interfax", -3, Outcome.IN_PROGRESS, Remediation.POLL, Family.IN_PROGRESS),
        ("interfax", -22, Outcome.IN_PROGRESS, Remediation.WAIT_FOR_CREDIT, Family.CREDIT),
        ("interfax", 205000, Outcome.FAILURE, Remediation.WAIT_FOR_CREDIT, Family.CREDIT),
        ("interfax", 6001, Outcome.FAILURE, Remediation.NO_RETRY, Family.NUMBER),
        ("interfax", 3935, Outcome.FAILURE, Remediation.WAIT_AND_RETRY, Family.NO_ANSWER),
        (
            "interfax",
            3211,
            Outcome.FAILURE,
            Remediation.WAIT_AND_RETRY,
            Family.MACHINE_INCOMPATIBILITY,
        ),
        ("interfax", 3268, Outcome.PARTIAL, Remediation.WAIT_AND_RETRY, Family.PARTIAL),
        ("interfax", 403, Outcome.CANCELLED, Remediation.NO_RETRY, Family.CANCELLED),
        ("interfax", 204000, Outcome.FAILURE, Remediation.NO_RETRY, Family.DOCUMENT),
        ("interfax", 206001, Outcome.FAILURE, Remediation.WAIT_AND_RETRY, Family.INTERNAL),
        ("faxplus", "success", Outcome.SUCCESS, Remediation.SUCCESS, Family.SUCCESS),
        ("faxplus", "sending", Outcome.IN_PROGRESS, Remediation.POLL, Family.IN_PROGRESS),
        (
            "faxplus",
            "failed_normal_temporary_failure",
            Outcome.FAILURE,
            Remediation.RETRY_IMMEDIATELY,
            Family.TELEPHONY,
        ),
        ("faxplus", "failed_user_busy", Outcome.FAILURE, Remediation.WAIT_AND_RETRY, Family.BUSY),
        (
            "faxplus",
            "failed_unallocated_number",
            Outcome.FAILURE,
            Remediation.NO_RETRY,
            Family.NUMBER,
        ),
        (
            "faxplus",
            "failed_mimetype_not_supported",
            Outcome.FAILURE,
            Remediation.NO_RETRY,
            Family.DOCUMENT,
        ),
        (
            "faxplus",
            "insufficient_credit",
            Outcome.FAILURE,
            Remediation.WAIT_FOR_CREDIT,
            Family.CREDIT,
        ),
        ("faxplus", "partially_sent", Outcome.PARTIAL, Remediation.WAIT_AND_RETRY, Family.PARTIAL),
        ("faxplus", "failed_fs_49", Outcome.PARTIAL, Remediation.WAIT_AND_RETRY, Family.PARTIAL),
        (
            "faxplus",
            "failed_fs_3",
            Outcome.FAILURE,
            Remediation.NO_RETRY,
            Family.MACHINE_INCOMPATIBILITY,
        ),
        ("optum", "FaxSent", Outcome.SUCCESS, Remediation.SUCCESS, Family.SUCCESS),
        ("optum", "FaxFailed", Outcome.FAILURE, Remediation.WAIT_AND_RETRY, Family.TELEPHONY),
        ("optum", "FaxCancelled", Outcome.CANCELLED, Remediation.NO_RETRY, Family.CANCELLED),
        (
            "optum",
            "FaxWebhookUpdateFailed",
            Outcome.IN_PROGRESS,
            Remediation.POLL,
            Family.IN_PROGRESS,
        ),
        ("optum", "FaxFailed/Busy", Outcome.FAILURE, Remediation.WAIT_AND_RETRY, Family.BUSY),
        ("optum", "FaxFailed/InvalidNumber", Outcome.FAILURE, Remediation.NO_RETRY, Family.NUMBER),
        (
            "optum",
            "FaxFailed/InsufficientCredit",
            Outcome.FAILURE,
            Remediation.WAIT_FOR_CREDIT,
            Family.CREDIT,
        ),
    ],
)
def test_remediation_follows_provider_words(
    provider: str, code: str | int, outcome: Outcome, remediation: Remediation, family: Family
) -> None:
    entry = classify(provider, code)
    assert (entry.outcome, entry.remediation, entry.family) == (outcome, remediation, family)
    assert entry.known


@pytest.mark.parametrize(
    ("provider", "code", "reroutable"),
    [
        ("interfax", 2, True),  # "will attempt to route your fax through different servers"
        ("interfax", 606, True),  # SIP over T.38 not supported
        ("interfax", 6002, True),  # no route available
        ("interfax", 3931, False),
        ("faxplus", "failed_destination_not_supported", True),
        ("faxplus", "failed_unallocated_number", False),
    ],
)
def test_reroutable(provider: str, code: str | int, reroutable: bool) -> None:
    assert classify(provider, code).reroutable is reroutable


@pytest.mark.parametrize(
    ("provider", "code", "outcome", "remediation"),
    [
        ("interfax", -7, Outcome.IN_PROGRESS, Remediation.POLL),
        ("interfax", 99999, Outcome.FAILURE, Remediation.WAIT_AND_RETRY),
        ("interfax", "garbage", Outcome.FAILURE, Remediation.WAIT_AND_RETRY),
        ("faxplus", "failed_something_new", Outcome.FAILURE, Remediation.WAIT_AND_RETRY),
        ("faxplus", "queued_somewhere", Outcome.IN_PROGRESS, Remediation.POLL),
        ("optum", "FaxSomethingNew", Outcome.IN_PROGRESS, Remediation.POLL),
        ("optum", "FaxFailed/Weird", Outcome.FAILURE, Remediation.WAIT_AND_RETRY),
        ("optum", "FaxSomethingNew/Weird", Outcome.IN_PROGRESS, Remediation.POLL),
    ],
)
def test_unknown_codes_get_safe_default(
    provider: str, code: str | int, outcome: Outcome, remediation: Remediation
) -> None:
    entry = classify(provider, code)
    assert not entry.known
    assert (entry.outcome, entry.remediation) == (outcome, remediation)
    assert entry.code == normalize_code(provider, code)
    assert entry.provider == provider


def test_unknown_optum_reason_keeps_status_meaning() -> None:
    entry = classify("optum", "FaxFailed/Weird")
    base = classify("optum", "FaxFailed")
    assert entry.code == "FaxFailed/Weird"
    assert entry.family is base.family
    assert "Weird" in entry.description
    assert base.known  # the table row itself is untouched


@pytest.mark.parametrize("code", ["0003931", 3931, " 3931 ", "3931"])
def test_normalize_interfax_code(code: str | int) -> None:
    assert normalize_code("interfax", code) == "3931"
    assert classify("interfax", code).family is Family.BUSY


def test_normalize_keeps_text_codes() -> None:
    assert normalize_code("faxplus", " success ") == "success"
    assert normalize_code("optum", "FaxSent") == "FaxSent"
    assert normalize_code("interfax", "-0022") == "-22"


@pytest.mark.parametrize(
    ("kind", "remediation", "family"),
    [
        ("http_503", Remediation.WAIT_AND_RETRY, Family.TRANSPORT),
        ("timeout", Remediation.WAIT_AND_RETRY, Family.TRANSPORT),
        ("http_401", Remediation.NO_RETRY, Family.AUTH),
        ("http_429", Remediation.WAIT_AND_RETRY, Family.RATE_LIMIT),
        ("http_422", Remediation.NO_RETRY, Family.REJECTED),
    ],
)
def test_transport_classify(kind: str, remediation: Remediation, family: Family) -> None:
    entry = classify_transport("faxplus", kind)
    assert (entry.remediation, entry.family) == (remediation, family)
    assert entry.outcome is Outcome.FAILURE
    assert entry.code == kind
    assert entry.provider == "faxplus"


# The CLI -------------------------------------------------------------------------------------


runner = CliRunner()


@pytest.fixture
def app() -> typer.Typer:
    """Imported lazily so a broken command module fails only the CLI tests, not the catalogue's."""
    from dispatcher.cli import app

    return app


def test_cli_explain_json(app: typer.Typer) -> None:
    result = runner.invoke(app, ["explain", "interfax", "3931", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert set(data) == ENTRY_FIELDS
    assert data["provider"] == "interfax"
    assert data["code"] == "3931"
    assert data["family"] == "busy"
    assert data["remediation"] == "wait_and_retry"
    assert data["known"] is True


def test_cli_explain_unknown_code(app: typer.Typer) -> None:
    # Negative InterFAX codes look like options to click: they come after "--".
    result = runner.invoke(app, ["explain", "--json", "interfax", "--", "-7"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["known"] is False
    assert data["remediation"] == "poll"


def test_cli_explain_text(app: typer.Typer) -> None:
    result = runner.invoke(app, ["explain", "faxplus", "failed_user_busy"])
    assert result.exit_code == 0, result.output
    assert "wait_and_retry" in result.stdout


def test_cli_catalogue_json(app: typer.Typer) -> None:
    result = runner.invoke(app, ["catalogue", "optum", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert isinstance(rows, list)
    assert all(set(row) == ENTRY_FIELDS for row in rows)
    assert set(SEED_CODES["optum"]) <= {row["code"] for row in rows}


def test_cli_unknown_provider_fails(app: typer.Typer) -> None:
    result = runner.invoke(app, ["explain", "nofax", "1"])
    assert result.exit_code != 0
    result = runner.invoke(app, ["catalogue", "nofax", "--json"])
    assert result.exit_code != 0
