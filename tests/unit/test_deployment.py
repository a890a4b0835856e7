"""Procfile and docker-compose.yml point only at real entry points and real settings.

There is no Docker engine here, so the compose file is checked, not run; the Procfile is
started for real in tests/integration/test_stack.py.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from config.settings import Settings
from dispatcher.cli import app

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
PROCFILE = dict(
    line.split(":", 1) for line in (ROOT / "Procfile").read_text().splitlines() if line.strip()
)


def is_setting(name: str) -> bool:
    """FAX_HOME -> Settings.home; FAX_OPTUM__TENANT_ID -> Settings.optum.tenant_id."""
    parts = name.removeprefix("FAX_").lower().split("__")
    model: type = Settings
    for part in parts:
        fields = getattr(model, "model_fields", {})
        if part not in fields:
            return False
        model = fields[part].annotation
    return True


def check_command(argv: list[str]) -> None:
    if argv[0] == "faxctl":
        subcommand = [a for a in argv[1:] if not a.startswith("-")][:2]
        result = CliRunner().invoke(app, [*subcommand[:1], "--help"])
        assert result.exit_code == 0, f"faxctl {subcommand[0]} is not a command: {result.output}"
    elif argv[0] == "celery":
        assert argv[1:3] == ["-A", "workers.app"], argv
        assert argv[3] in {"worker", "beat", "flower", "inspect"}, argv
    else:
        assert argv[0] in {"redis-server", "postgres"}, argv


@pytest.mark.parametrize("name", sorted(COMPOSE["services"]))
def test_every_compose_service_runs_a_real_entry_point(name: str) -> None:
    service = COMPOSE["services"][name]
    if "command" in service:
        check_command(service["command"])
    else:
        assert "image" in service and name in {"postgres"}


@pytest.mark.parametrize("name", sorted(COMPOSE["services"]))
def test_every_fax_variable_in_compose_is_a_setting(name: str) -> None:
    env = COMPOSE["services"][name].get("environment", {})
    for key in env:
        if key.startswith("FAX_"):
            assert is_setting(key), f"{name}: {key} is not a setting"


def test_the_deployment_has_persistent_stores_and_one_beat() -> None:
    services = COMPOSE["services"]
    assert "--appendonly" in services["redis"]["command"]
    assert any("postgres-data" in v for v in services["postgres"]["volumes"])
    assert services["beat"]["deploy"]["replicas"] == 1
    assert services["sandbox"]["profiles"] == ["sandbox"]


@pytest.mark.parametrize("name", sorted(PROCFILE))
def test_every_procfile_line_runs_a_real_entry_point(name: str) -> None:
    command = re.sub(r"\$\{[^}]*\}", "1", PROCFILE[name])
    check_command(shlex.split(command))


def test_setting_names_are_checked_for_real() -> None:
    assert is_setting("FAX_OPTUM__TENANT_ID")
    assert not is_setting("FAX_OPTUM__TENANT")
    assert not is_setting("FAX_NOPE")
