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
from dispatcher.providers.registry import PROVIDERS, definition

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
PROCFILE = dict(
    line.split(":", 1) for line in (ROOT / "Procfile").read_text().splitlines() if line.strip()
)


def is_setting(name: str) -> bool:
    """FAX_HOME -> Settings.home; FAX_S3__BUCKET -> Settings.s3.bucket; FAX_OPTUM__TENANT_ID
    -> the Optum provider's settings, tenant_id."""
    parts = name.removeprefix("FAX_").lower().split("__")
    if parts[0] in PROVIDERS and len(parts) == 2:
        return parts[1] in definition(parts[0]).settings.model_fields
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


APP_SERVICES = ["api", "worker", "beat", "flower", "migrate"]


@pytest.mark.parametrize("name", APP_SERVICES)
def test_settings_and_secrets_reach_every_app_service_from_env_file(name: str) -> None:
    assert COMPOSE["services"][name]["env_file"] == ".env"


@pytest.mark.parametrize("name", ["api", "worker", "beat", "flower"])
def test_nothing_starts_before_the_migration_completes(name: str) -> None:
    depends = COMPOSE["services"][name]["depends_on"]
    assert depends["migrate"] == {"condition": "service_completed_successfully"}


@pytest.mark.parametrize("name", APP_SERVICES)
def test_no_host_disk_is_shared_between_services(name: str) -> None:
    """Documents are in the database: a worker on another host needs no volume."""
    assert "volumes" not in COMPOSE["services"][name]
    assert set(COMPOSE.get("volumes", {})) == {"redis-data", "postgres-data"}


def test_flower_and_the_api_refuse_to_start_without_their_secrets() -> None:
    services = COMPOSE["services"]
    assert services["flower"]["environment"]["FAX_FLOWER_BASIC_AUTH"].startswith(
        "${FAX_FLOWER_BASIC_AUTH:?"
    )
    assert services["api"]["environment"]["FAX_API_TOKENS"].startswith("${FAX_API_TOKENS:?")
    for name in ("api", "worker", "beat", "migrate"):  # documents are encrypted at rest
        keys = services[name]["environment"]["FAX_DOCUMENT_KEYS"]
        assert keys.startswith("${FAX_DOCUMENT_KEYS:?")
    assert services["flower"]["restart"] == "on-failure:3"  # never a restart loop


def test_env_example_documents_real_settings_and_every_secret_compose_needs() -> None:
    lines = (ROOT / ".env.example").read_text().splitlines()
    names = {
        line.lstrip("# ").split("=", 1)[0]
        for line in lines
        if "=" in line and line.lstrip("# ").split("=", 1)[0].isupper()
    }
    required = {"POSTGRES_PASSWORD", "FAX_API_TOKENS", "FAX_FLOWER_BASIC_AUTH", "FAX_DOCUMENT_KEYS"}
    assert required <= names
    for name in names - {"POSTGRES_PASSWORD"}:
        assert is_setting(name), f"{name} is not a setting"
    for provider in ("FAXPLUS", "INTERFAX", "OPTUM"):
        assert any(n.startswith(f"FAX_{provider}__") for n in names)


@pytest.mark.parametrize("name", sorted(PROCFILE))
def test_every_procfile_line_runs_a_real_entry_point(name: str) -> None:
    command = re.sub(r"\$\{[^}]*\}", "1", PROCFILE[name])
    check_command(shlex.split(command))


def test_setting_names_are_checked_for_real() -> None:
    assert is_setting("FAX_OPTUM__TENANT_ID")
    assert not is_setting("FAX_OPTUM__TENANT")
    assert not is_setting("FAX_NOPE")


def test_a_blank_setting_in_env_is_no_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    """A line of .env.example left blank must not give a provider an empty token."""
    monkeypatch.setenv("FAX_FAXPLUS__TOKEN", "")
    monkeypatch.setenv("FAX_DOCUMENT_STORE", "")
    assert definition("faxplus").load_settings().configured() is False
    assert Settings().document_store == "database"
