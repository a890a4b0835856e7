"""A fourth provider is one package: dropped beside the others, it is found by the
registry, accepted by validation and the API, classified by its own catalogue, and
sent through by the dispatcher, with no other file touched.

The package is written to a temporary directory that joins ``dispatcher.providers``'s
search path in a child process, so the tree and this process's registry stay as they are.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PACKAGE = {
    "__init__.py": '''
        """Acme Fax: a provider the tests add."""
        from dispatcher.documents import PDF_TIFF, MiB
        from dispatcher.providers.acme import catalogue
        from dispatcher.providers.acme.settings import AcmeSettings
        from dispatcher.providers.definition import ProviderDefinition, ProviderLimits, WebhookRule
        from dispatcher.providers.twin import TwinAdapter

        DEFINITION = ProviderDefinition(
            name="acme",
            settings=AcmeSettings,
            adapter=lambda settings, **_: TwinAdapter(name="acme", accepted="queued"),
            table=catalogue.TABLE,
            unknown=catalogue.unknown,
            limits=ProviderLimits(PDF_TIFF, max_files=1, max_total_bytes=MiB, max_pages=5),
            webhook=WebhookRule(secret_in_url=True),
        )
    ''',
    "catalogue.py": """
        from dispatcher.catalogue.model import (
            Family, Outcome, Remediation, entry, unlisted_failure,
        )

        TABLE = {
            e.code: e
            for e in [
                entry("acme", "queued", "Queued", Outcome.IN_PROGRESS, Remediation.POLL,
                      Family.IN_PROGRESS, "Waiting for a line."),
                entry("acme", "delivered", "Delivered", Outcome.SUCCESS, Remediation.SUCCESS,
                      Family.SUCCESS, "Sent."),
            ]
        }

        def unknown(code):
            return unlisted_failure("acme", code, "Unlisted: retried.")
    """,
    "settings.py": """
        from dispatcher.providers.definition import ProviderSettings, settings_config

        class AcmeSettings(ProviderSettings):
            model_config = settings_config("acme")
            base_url: str = "https://api.acme.example"

            def configured(self):
                return True

            def for_sandbox(self, sandbox_url):
                return self
    """,
}

PROBE = """
import json, os, sys, tempfile
import dispatcher.providers
dispatcher.providers.__path__.append(sys.argv[1])

from config.settings import get_settings
from dispatcher.api import create_app
from dispatcher.catalogue import classify
from dispatcher.providers.registry import PROVIDERS, build_adapter
from dispatcher.providers.base import SendRequest, Document
from dispatcher.store.db import upgrade
from dispatcher.submission import FaxRequest, submit_many
from dispatcher.store.db import session_scope
from dispatcher.store.models import Job
from dispatcher.demo import sample_document

upgrade()
(job,) = submit_many(
    [FaxRequest("+12125550100", [("a.pdf", sample_document(1))], provider="acme")],
    publish=False,
)
with session_scope() as session:
    stored = session.get_one(Job, job.job_id).provider
schema = create_app().openapi()["components"]["schemas"]
form = next(s for name, s in schema.items() if name.startswith("Body_create_fax"))
adapter = build_adapter("acme", get_settings())
fax_id = adapter.send(SendRequest(job.job_id, "ref-1", "+12125550100", [], {}))
print(json.dumps({
    "providers": list(PROVIDERS),
    "stored": stored,
    "api_enum": form["properties"]["provider"]["enum"],
    "delivered": classify("acme", "delivered").outcome,
    "unknown": classify("acme", "E42").remediation,
    "status": adapter.status(fax_id).code,
}))
"""


def test_a_fourth_provider_is_its_own_package_and_nothing_else(tmp_path: Path) -> None:
    package = tmp_path / "acme"
    package.mkdir()
    for name, text in PACKAGE.items():
        (package / name).write_text(textwrap.dedent(text))
    env = {"FAX_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin"}

    found = subprocess.run(
        [sys.executable, "-c", PROBE, str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=120,
    )

    assert found.returncode == 0, found.stderr[-3000:]
    result = json.loads(found.stdout.strip().splitlines()[-1])
    assert result == {
        "providers": ["acme", "faxplus", "interfax", "optum"],
        "stored": "acme",
        "api_enum": ["acme", "faxplus", "interfax", "optum"],
        "delivered": "success",
        "unknown": "wait_and_retry",
        "status": "queued",
    }
