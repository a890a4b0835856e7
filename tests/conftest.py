"""Shared fixtures, registered once (fixture modules live in tests/fixtures/)."""

from __future__ import annotations

import pytest

from config.settings import get_settings
from dispatcher.broker import stop_embedded_broker
from tests.fixtures.documents import DOCUMENT_KEYS

pytest_plugins = [
    "tests.fixtures.stack",
    "tests.fixtures.database",
    "tests.fixtures.sandbox",
    "tests.fixtures.webhooks",
    "tests.fixtures.objectstore",
    "tests.fixtures.twin",
    "tests.fixtures.api",
]


@pytest.fixture(autouse=True)
def _isolated_settings(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory):
    """Each test reads settings fresh, with FAX_HOME in a temp dir and no stray .env."""
    home = tmp_path_factory.mktemp("fax-home")
    monkeypatch.setenv("FAX_HOME", str(home))
    monkeypatch.setenv("FAX_DOCUMENT_KEYS", DOCUMENT_KEYS)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()
    # A test that reached the embedded broker started one for this home: it must not
    # outlive the run (it is a daemon, shared by the processes of one FAX_HOME).
    broker = home / "broker"
    if (broker / "broker.json").exists():
        stop_embedded_broker(broker)
