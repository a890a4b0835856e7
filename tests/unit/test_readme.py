"""README's two commands are the ones CI and new users run."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def readme_commands() -> list[str]:
    return re.findall(r"```sh\n(.+?)\n```", (ROOT / "README.md").read_text())


def test_ci_runs_the_readme_test_command() -> None:
    test_command = next(c for c in readme_commands() if "pytest" in c)
    assert test_command in (ROOT / ".ci" / "run").read_text().splitlines()


def test_both_commands_set_up_their_own_virtualenv() -> None:
    commands = readme_commands()
    assert len(commands) >= 2
    for command in commands[:2]:
        assert command.startswith("python3 -m venv .venv && .venv/bin/pip install")


def test_every_setting_is_documented() -> None:
    from config.settings import Settings
    from dispatcher.providers.registry import definitions

    text = (ROOT / "README.md").read_text()
    for provider in definitions().values():
        for inner in provider.settings.model_fields:
            assert f"FAX_{provider.name.upper()}__{inner.upper()}" in text or (
                f"__{inner.upper()}" in text
            ), (provider.name, inner)
    for name, field in Settings.model_fields.items():
        nested = getattr(field.annotation, "model_fields", None)
        if nested is None:
            assert f"`FAX_{name.upper()}`" in text, name
            continue
        for inner in nested:
            assert f"FAX_{name.upper()}__{inner.upper()}" in text or f"__{inner.upper()}" in text
