"""The official InterFAX client (interfax 1.0.0) against the sandbox.

The client hard-codes ``https://rest.interfax.net``; its URL builder is wrapped so that only
the scheme and host (plus the sandbox's ``/interfax`` prefix) change.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from dispatcher.sandbox.server import SandboxServer

interfax = pytest.importorskip("interfax")  # needs the system libmagic
from interfax import InterFAX  # noqa: E402

PARTIAL_THEN_SUCCESS = "+12025550107"


@pytest.fixture
def client(sandbox: SandboxServer, monkeypatch: pytest.MonkeyPatch) -> InterFAX:
    real = f"https://{InterFAX.DOMAIN}"
    build = InterFAX._url_for

    def _url_for(self, path, params={}, keys=[]):  # noqa: B006 - the SDK's own signature
        return build(self, path, params, keys).replace(real, sandbox.url + "/interfax", 1)

    monkeypatch.setattr(InterFAX, "_url_for", _url_for)
    return InterFAX(username="sandbox", password="sandbox")


@pytest.fixture
def document(tmp_path: Path) -> Path:
    path = tmp_path / "note.txt"
    path.write_text("Hello from the sandbox contract test\n")
    return path


def test_deliver_then_read_final_status(sandbox: SandboxServer, client: InterFAX, document: Path):
    sandbox.freeze()  # statuses below are checked phase by phase
    fax = client.deliver(PARTIAL_THEN_SUCCESS, files=[str(document)], reference="ref-ifx-1")
    assert client.outbound.find(fax.id).status == -2
    assert client.outbound.completed(fax.id) == []

    sandbox.advance(1)
    record = client.outbound.find(fax.id)
    assert (record.status, record.pages_sent, record.reference) == (3268, 2, "ref-ifx-1")
    assert [f.id for f in client.outbound.completed(int(fax.id))] == [int(fax.id)]
    assert [f.id for f in client.outbound.search(reference="ref-ifx-1")] == [int(fax.id)]

    second = client.deliver(PARTIAL_THEN_SUCCESS, files=[str(document)], reference="ref-ifx-2")
    sandbox.advance(1)
    assert client.outbound.find(second.id).status == 0
    assert [s["attempt"] for s in sandbox.sends(provider="interfax")] == [1, 2]


def test_cancel_in_progress_and_conflict_when_final(
    sandbox: SandboxServer, client: InterFAX, document: Path
):
    long_hold = client.deliver("+12025550109", files=[str(document)])
    assert client.outbound.cancel(long_hold.id) is None
    assert client.outbound.find(long_hold.id).status == 403
    with pytest.raises(requests.HTTPError) as conflict:
        client.outbound.cancel(long_hold.id)
    assert conflict.value.response is not None, "raise_for_status keeps the response"
    assert conflict.value.response.json()["code"] == -162


def test_bad_password_is_refused(sandbox: SandboxServer, client: InterFAX, document: Path):
    client.password = "wrong"
    with pytest.raises(requests.HTTPError) as refused:
        client.deliver("+12025550100", files=[str(document)])
    assert refused.value.response is not None, "raise_for_status keeps the response"
    assert refused.value.response.status_code == 401
    assert sandbox.sends() == []
