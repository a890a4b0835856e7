"""The official FAX.PLUS SDK (faxplus-api 3.0.5) against the sandbox; only the host changes."""

from __future__ import annotations

from pathlib import Path

import pytest

from dispatcher.sandbox.server import SandboxServer

faxplus = pytest.importorskip("faxplus")
from faxplus import (  # noqa: E402
    ApiClient,
    Configuration,
    FaxesApi,
    FilesApi,
    OutboxApi,
    OutboxComment,
    PayloadOutbox,
    Webhook,
    WebhooksApi,
)
from faxplus.rest import ApiException  # noqa: E402

BUSY_THEN_SUCCESS = "+12025550101"


@pytest.fixture
def client(sandbox: SandboxServer) -> ApiClient:
    conf = Configuration()
    conf.host = sandbox.url + "/faxplus/v3"
    conf.access_token = "alohi_pat_sandbox"
    return ApiClient(conf)


@pytest.fixture
def pdf(tmp_path: Path) -> Path:
    from pypdf import PdfWriter

    writer = PdfWriter()
    writer.add_blank_page(612, 792)
    path = tmp_path / "report.pdf"
    with path.open("wb") as fh:
        writer.write(fh)
    return path


def _send(client: ApiClient, pdf: Path, to: str, reference: str) -> str:
    uploaded = FilesApi(client).upload_file("self", fax_file=str(pdf), format="pdf")
    body = PayloadOutbox(
        from_number="+12025550199",
        to=[to],
        files=[uploaded.path],
        comment=OutboxComment(text=reference, tags=[]),
        return_ids=True,
    )
    return OutboxApi(client).send_fax("self", body=body).ids[to]


def test_send_then_read_final_status(sandbox: SandboxServer, client: ApiClient, pdf: Path):
    sandbox.freeze()  # statuses below are checked phase by phase
    fax_id = _send(client, pdf, BUSY_THEN_SUCCESS, "ref-sdk-1")

    outbox = OutboxApi(client).list_outbox_faxes("self").records
    assert [o.status for o in outbox] == ["submitted"]
    with pytest.raises(ApiException) as pending:
        FaxesApi(client).get_fax("self", fax_id)
    assert pending.value.status == 404

    sandbox.advance(1)
    fax = FaxesApi(client).get_fax("self", fax_id)
    assert (fax.id, fax.status, fax.comment) == (fax_id, "failed_user_busy", "ref-sdk-1")
    assert OutboxApi(client).list_outbox_faxes("self").records == []

    listed = FaxesApi(client).list_faxes("self", category="sent", limit=10).data.records
    assert [(f.id, f.comment) for f in listed] == [(fax_id, "ref-sdk-1")]
    assert [s["reference"] for s in sandbox.sends()] == ["ref-sdk-1"]


def test_second_attempt_follows_the_scenario(sandbox: SandboxServer, client: ApiClient, pdf: Path):
    first = _send(client, pdf, BUSY_THEN_SUCCESS, "a1")
    second = _send(client, pdf, BUSY_THEN_SUCCESS, "a2")
    sandbox.advance(1)
    statuses = [FaxesApi(client).get_fax("self", i).status for i in (first, second)]
    assert statuses == ["failed_user_busy", "failed_user_busy"]
    third = _send(client, pdf, BUSY_THEN_SUCCESS, "a3")
    sandbox.advance(1)
    fax = FaxesApi(client).get_fax("self", third)
    assert (fax.status, fax.pages) == ("success", 1)


def test_bad_token_is_refused(sandbox: SandboxServer):
    conf = Configuration()
    conf.host = sandbox.url + "/faxplus/v3"
    conf.access_token = "alohi_pat_wrong"
    with pytest.raises(ApiException) as refused:
        OutboxApi(ApiClient(conf)).list_outbox_faxes("self")
    assert refused.value.status == 401


def test_webhooks_crud(client: ApiClient):
    api = WebhooksApi(client)
    hook = api.create_webhook(body=Webhook(target="http://127.0.0.1:9/cb", event="fax_sent"))
    assert [h.id for h in api.get_webhooks("fax_sent").data] == [hook.id]
    api.delete_webhook(hook.id)
    assert api.get_webhooks("fax_sent").data == []
