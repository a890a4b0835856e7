"""The provider sandbox over raw HTTP: auth, validation, scenarios, faults, accounting, hooks."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from dispatcher.processes import wait_for
from dispatcher.sandbox.server import SandboxServer
from tests.fixtures.sandbox import WebhookReceiver

PDF = b"%PDF-1.4\n%sandbox\n"
FAXPLUS_AUTH = {"Authorization": "Bearer alohi_pat_sandbox"}
INTERFAX_AUTH = ("sandbox", "sandbox")
TENANT = "00000000-0000-0000-0000-000000000001"


@pytest.fixture
def http(sandbox: SandboxServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sandbox.url, timeout=5) as client:
        yield client


def optum_headers(http: httpx.Client) -> dict[str, str]:
    token = http.post(
        "/optum/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": "sandbox",
            "client_secret": "sandbox",
        },
    ).json()["access_token"]
    return {"Authorization": f"Bearer {token}", "X-Optum-Tenant-Id": TENANT}


def faxplus_send(
    http: httpx.Client, to: str, reference: str = "ref", **extra: Any
) -> httpx.Response:
    upload = http.post(
        "/faxplus/v3/accounts/self/files",
        params={"format": "pdf"},
        files={"fax_file": ("doc.pdf", PDF, "application/pdf")},
        headers=FAXPLUS_AUTH,
    )
    assert upload.status_code == 200, upload.text
    body = {
        "from": "no_number",
        "to": [to],
        "files": [upload.json()["path"]],
        "comment": {"text": reference, "tags": []},
        "return_ids": True,
        **extra,
    }
    return http.post("/faxplus/v3/accounts/self/outbox", json=body, headers=FAXPLUS_AUTH)


def interfax_send(http: httpx.Client, number: str, reference: str = "ref") -> httpx.Response:
    return http.post(
        "/interfax/outbound/faxes",
        params={"faxNumber": number, "reference": reference},
        content=PDF,
        headers={"Content-Type": "application/pdf"},
        auth=INTERFAX_AUTH,
    )


def optum_send(
    http: httpx.Client, headers: dict[str, str], number: str, reference: str = "ref"
) -> httpx.Response:
    return http.post(
        "/optum/fax",
        data={"faxNumber": number, "metadata": json.dumps({"reference": reference})},
        files={"document": ("doc.pdf", PDF, "application/pdf")},
        headers=headers,
    )


def interfax_status(http: httpx.Client, fax_id: str) -> int:
    return http.get(f"/interfax/outbound/faxes/{fax_id}", auth=INTERFAX_AUTH).json()["status"]


# Auth -------------------------------------------------------------------------------------


def test_auth_is_refused_in_each_providers_shape(http: httpx.Client):
    faxplus = http.get("/faxplus/v3/accounts/self/outbox", headers={"Authorization": "Bearer x"})
    assert faxplus.status_code == 401
    assert faxplus.json()["error"] == "invalid_token"

    interfax = http.get("/interfax/outbound/faxes", auth=("sandbox", "nope"))
    assert interfax.status_code == 401
    assert interfax.json()["code"] == -1003

    token = http.post(
        "/optum/oauth/token",
        data={"grant_type": "client_credentials", "client_id": "sandbox", "client_secret": "x"},
    )
    assert token.status_code == 401
    no_token = http.get("/optum/fax/abc", headers={"X-Optum-Tenant-Id": TENANT})
    assert no_token.status_code == 401
    assert no_token.headers["content-type"] == "application/problem+json"
    headers = optum_headers(http)
    no_tenant = http.get("/optum/fax/abc", headers={"Authorization": headers["Authorization"]})
    assert no_tenant.status_code == 400


def test_optum_token_by_basic_auth_and_tenant_isolation(http: httpx.Client):
    token = http.post(
        "/optum/oauth/token", data={"grant_type": "client_credentials"}, auth=("sandbox", "sandbox")
    )
    assert token.json()["token_type"] == "Bearer"
    headers = optum_headers(http)
    fax_id = optum_send(http, headers, "2025550100").json()["faxId"]
    other = {**headers, "X-Optum-Tenant-Id": "someone-else"}
    assert http.get(f"/optum/fax/{fax_id}", headers=other).status_code == 404


def test_credentials_can_be_replaced_per_provider():
    # Given a sandbox with its own FAX.PLUS token and Optum client secret
    own = {"faxplus": {"token": "alohi_pat_own"}, "optum": {"client_secret": "own"}}
    with SandboxServer(credentials=own) as server, httpx.Client(base_url=server.url) as http:
        # Then only those are accepted, and InterFAX keeps the well-known credentials
        outbox = "/faxplus/v3/accounts/self/outbox"
        assert http.get(outbox, headers=FAXPLUS_AUTH).status_code == 401
        assert http.get(outbox, headers={"Authorization": "Bearer alohi_pat_own"}).is_success
        grant = {"grant_type": "client_credentials", "client_id": "sandbox"}
        refused = http.post("/optum/oauth/token", data={**grant, "client_secret": "sandbox"})
        assert refused.status_code == 401
        assert http.post("/optum/oauth/token", data={**grant, "client_secret": "own"}).is_success
        assert http.get("/interfax/outbound/faxes", auth=INTERFAX_AUTH).is_success


@pytest.mark.parametrize(
    "credentials", [{"acme": {"token": "x"}}, {"faxplus": {"password": "x"}}], ids=str
)
def test_credentials_of_no_provider_or_no_such_name_are_refused(credentials: dict[str, Any]):
    with pytest.raises(ValueError, match="acme|password"):
        SandboxServer(credentials=credentials)


# Validation -------------------------------------------------------------------------------


def test_faxplus_validation(http: httpx.Client):
    assert faxplus_send(http, "12025550100").json()["error"] == "invalid_number"
    upload = http.post(
        "/faxplus/v3/accounts/self/files",
        files={"fax_file": ("evil.exe", b"MZ", "application/x-msdownload")},
        headers=FAXPLUS_AUTH,
    )
    assert upload.status_code == 400
    empty = http.post(
        "/faxplus/v3/accounts/self/files",
        files={"fax_file": ("doc.pdf", b"", "application/pdf")},
        headers=FAXPLUS_AUTH,
    )
    assert empty.status_code == 400
    too_many = faxplus_send(http, "+12025550100", files=["/transient-x"] * 11)
    assert (too_many.status_code, too_many.json()["error"]) == (400, "too_many_files")
    as_string = faxplus_send(http, "+12025550100", comment="plain")
    assert as_string.status_code == 400


def test_interfax_validation(http: httpx.Client):
    bad_number = interfax_send(http, "call me")
    assert (bad_number.status_code, bad_number.json()["code"]) == (400, -112)
    unsupported = http.post(
        "/interfax/outbound/faxes",
        params={"faxNumber": "+12025550100"},
        content=b"MZ",
        headers={"Content-Type": "application/x-msdownload"},
        auth=INTERFAX_AUTH,
    )
    assert unsupported.status_code == 415
    empty = http.post(
        "/interfax/outbound/faxes",
        params={"faxNumber": "+12025550100"},
        files=[("file", ("a.pdf", b"", "application/pdf"))],
        auth=INTERFAX_AUTH,
    )
    assert (empty.status_code, empty.json()["code"]) == (400, -123)


def test_optum_validation(http: httpx.Client):
    headers = optum_headers(http)
    assert optum_send(http, headers, "+44 20 7946 0000").status_code == 400
    unsupported = http.post(
        "/optum/fax",
        data={"faxNumber": "2025550100"},
        files={"document": ("doc.docx", b"PK", "application/msword")},
        headers=headers,
    )
    assert unsupported.status_code == 415
    empty = http.post(
        "/optum/fax",
        data={"faxNumber": "2025550100"},
        files={"document": ("doc.pdf", b"", "application/pdf")},
        headers=headers,
    )
    assert empty.status_code == 400
    assert empty.json()["errors"] == {"document": ["empty"]}


# Scenarios and progress -------------------------------------------------------------------


def test_faxplus_progresses_from_outbox_to_fax_record(sandbox: SandboxServer, http: httpx.Client):
    sandbox.freeze()  # statuses below are checked phase by phase
    sent = faxplus_send(http, "+12025550107", reference="ref-partial")
    assert sent.status_code == 201
    fax_id = sent.json()["ids"]["+12025550107"]
    outbox = http.get("/faxplus/v3/accounts/self/outbox", headers=FAXPLUS_AUTH).json()["records"]
    assert [(o["status"], o["comment"]["text"]) for o in outbox] == [("submitted", "ref-partial")]
    assert (
        http.get(f"/faxplus/v3/accounts/self/faxes/{fax_id}", headers=FAXPLUS_AUTH).status_code
        == 404
    )

    sandbox.advance(1)
    fax = http.get(f"/faxplus/v3/accounts/self/faxes/{fax_id}", headers=FAXPLUS_AUTH).json()
    assert (fax["status"], fax["pages"], fax["comment"]) == ("partially_sent", 2, "ref-partial")
    outbox_id = outbox[0]["id"]
    gone = http.get(f"/faxplus/v3/accounts/self/outbox/{outbox_id}", headers=FAXPLUS_AUTH)
    assert gone.status_code == 404


def test_interfax_shows_in_progress_codes_then_the_final_code(
    sandbox: SandboxServer, http: httpx.Client
):
    sandbox.freeze()  # statuses below are checked phase by phase
    location = interfax_send(http, "0012025550103").headers["location"]
    fax_id = location.rsplit("/", 1)[-1]
    assert interfax_status(http, fax_id) == -2
    sandbox.advance(0.06)  # past half of the 0.1 s hold
    assert interfax_status(http, fax_id) == -3
    sandbox.advance(1)
    assert interfax_status(http, fax_id) == 6028
    found = http.get("/interfax/outbound/search", params={"reference": "ref"}, auth=INTERFAX_AUTH)
    assert [r["id"] for r in found.json()] == [int(fax_id)]


def test_optum_lifecycle_with_retry_hold_revive_and_stop(
    sandbox: SandboxServer, http: httpx.Client
):
    sandbox.freeze()  # statuses below are checked phase by phase
    headers = optum_headers(http)
    fax = optum_send(http, headers, "12025550105", reference="ref-o").json()
    assert fax["faxStatus"] == "FaxReceived"
    fax_id = fax["faxId"]
    sandbox.advance(1)
    failed = http.get(f"/optum/fax/{fax_id}", headers=headers).json()
    assert (failed["faxStatus"], failed["failedReason"]) == ("FaxFailed", "TransmissionError")
    assert http.put(f"/optum/fax/{fax_id}/hold", headers=headers).status_code == 409

    assert http.put(f"/optum/fax/{fax_id}/retry", headers=headers).json()["faxStatus"] == "FaxRetry"
    held = http.put(f"/optum/fax/{fax_id}/hold", headers=headers).json()
    assert held["faxStatus"] == "FaxHeld"
    sandbox.advance(1)
    assert http.get(f"/optum/fax/{fax_id}", headers=headers).json()["faxStatus"] == "FaxHeld"
    http.put(f"/optum/fax/{fax_id}/revive", headers=headers)
    sandbox.advance(1)
    assert http.get(f"/optum/fax/{fax_id}", headers=headers).json()["faxStatus"] == "FaxSent"
    assert http.put(f"/optum/fax/{fax_id}/retry", headers=headers).status_code == 409
    attempts = http.get(f"/optum/fax/{fax_id}/attempts", headers=headers).json()
    assert [(a["isManualRetry"], a["attemptStatus"]) for a in attempts] == [
        (False, "Failed"),
        (True, "Sent"),
    ]
    today = failed["createdOn"][:10]
    found = http.post(
        "/optum/fax/search",
        json={"faxSentDate": today, "showFaxStatusChangeHistory": True},
        headers=headers,
    ).json()
    assert [(f["faxId"], f["metadata"]["reference"]) for f in found] == [(fax_id, "ref-o")]
    assert "FaxHeld" in [h["faxStatus"] for h in found[0]["faxStatusChangeHistory"]]

    long_hold = optum_send(http, headers, "2025550109").json()["faxId"]
    stopping = http.delete(f"/optum/fax/{long_hold}", headers=headers).json()
    assert stopping["faxStatus"] == "FaxReceivedForCancel"
    sandbox.advance(1)
    assert (
        http.get(f"/optum/fax/{long_hold}", headers=headers).json()["faxStatus"] == "FaxCancelled"
    )


def test_unknown_numbers_succeed_and_lists_repeat_their_last_code(
    sandbox: SandboxServer, http: httpx.Client
):
    ids = [
        interfax_send(http, n).headers["location"].rsplit("/", 1)[-1]
        for n in ("+15555550123", "+12025550102", "+12025550102")
    ]
    sandbox.advance(1)
    assert [interfax_status(http, i) for i in ids] == [0, 3935, 3935]


# Accounting -------------------------------------------------------------------------------


def test_send_log_counts_every_accepted_send_and_reset_clears_it(
    sandbox: SandboxServer, http: httpx.Client
):
    faxplus_send(http, "+12025550101", reference="r-fp")
    interfax_send(http, "+12025550101", reference="r-ifx")
    interfax_send(http, "bad")  # refused: not a send
    optum_send(http, optum_headers(http), "2025550101", reference="r-opt")
    sends = sandbox.sends()
    assert [(s["provider"], s["reference"], s["attempt"], s["to"]) for s in sends] == [
        ("faxplus", "r-fp", 1, "+12025550101"),
        ("interfax", "r-ifx", 1, "+12025550101"),
        ("optum", "r-opt", 1, "+12025550101"),
    ]
    assert all(s["fax_id"] and s["at"] for s in sends)
    assert sandbox.sends(reference="r-ifx")[0]["provider"] == "interfax"

    sandbox.reset()
    assert sandbox.sends() == []
    interfax_send(http, "+12025550101")
    assert sandbox.sends()[0]["attempt"] == 1  # the scenario cursor was reset too


def test_advance_moves_the_clock(sandbox: SandboxServer, http: httpx.Client):
    sandbox.freeze()  # statuses below are checked phase by phase
    fax_id = interfax_send(http, "+12025550109").headers["location"].rsplit("/", 1)[-1]
    sandbox.advance(35)
    assert interfax_status(http, fax_id) == -3
    sandbox.advance(2)
    assert interfax_status(http, fax_id) == 0
    assert http.post("/_sandbox/advance", params={"seconds": -1}).status_code == 400


# Faults -----------------------------------------------------------------------------------


def test_injected_server_errors_and_rate_limits(sandbox: SandboxServer, http: httpx.Client):
    sandbox.faults(error_rate=1, error_status=502)
    failed = http.get("/interfax/outbound/faxes", auth=INTERFAX_AUTH)
    assert (failed.status_code, failed.json()["code"]) == (502, -150)
    assert http.get("/_sandbox/sends").status_code == 200  # control endpoints are never hit

    sandbox.faults(error_rate=0, rate_limit_rate=1, retry_after=7)
    limited = http.get("/optum/fax/x", headers={"X-Optum-Tenant-Id": TENANT})
    assert (limited.status_code, limited.headers["retry-after"]) == (429, "7")
    assert limited.json()["status"] == 429


def test_faults_can_be_limited_to_providers(sandbox: SandboxServer, http: httpx.Client):
    sandbox.faults(error_rate=1, providers=["optum"])
    assert http.get("/interfax/outbound/faxes", auth=INTERFAX_AUTH).status_code == 200
    assert http.get("/optum/fax/x").status_code == 503


def test_latency_is_added(sandbox: SandboxServer, http: httpx.Client):
    sandbox.faults(latency_ms=[150, 200])
    started = time.monotonic()
    http.get("/interfax/outbound/faxes", auth=INTERFAX_AUTH)
    assert time.monotonic() - started >= 0.15


def test_read_timeout_and_dropped_connections(sandbox: SandboxServer, http: httpx.Client):
    sandbox.faults(timeout_rate=1, timeout_seconds=1)
    with pytest.raises(httpx.ReadTimeout):
        http.get("/interfax/outbound/faxes", auth=INTERFAX_AUTH, timeout=0.2)
    sandbox.faults(timeout_rate=0, drop_rate=1)
    with pytest.raises(httpx.RemoteProtocolError):
        http.get("/interfax/outbound/faxes", auth=INTERFAX_AUTH)
    sandbox.faults(drop_rate=0)
    assert sandbox.sends() == []


def test_number_faults_hit_sends_to_that_number_only(sandbox: SandboxServer, http: httpx.Client):
    sandbox.faults(numbers={"+12025550100": "429", "+12025550102": "drop"})
    assert interfax_send(http, "+12025550100").status_code == 429
    with pytest.raises(httpx.RemoteProtocolError):
        faxplus_send(http, "+12025550102")
    assert interfax_send(http, "+12025550101").status_code == 201
    assert [s["to"] for s in sandbox.sends()] == ["+12025550101"]


@pytest.mark.parametrize("provider", ["faxplus", "interfax", "optum"])
def test_drop_after_accept_records_the_send_then_drops(
    sandbox: SandboxServer, http: httpx.Client, provider: str
):
    sandbox.faults(numbers={"+12025550100": "drop_after_accept"})
    with pytest.raises(httpx.RemoteProtocolError):
        if provider == "faxplus":
            faxplus_send(http, "+12025550100", reference="lost")
        elif provider == "interfax":
            interfax_send(http, "+12025550100", reference="lost")
        else:
            optum_send(http, optum_headers(http), "2025550100", reference="lost")
    assert [(s["provider"], s["reference"]) for s in sandbox.sends()] == [(provider, "lost")]


def send_to(provider: str, http: httpx.Client, number: str, reference: str) -> httpx.Response:
    """One send through ``provider`` (an Optum token is fetched first)."""
    if provider == "faxplus":
        return faxplus_send(http, number, reference=reference)
    if provider == "interfax":
        return interfax_send(http, number, reference=reference)
    return optum_send(http, optum_headers(http), number, reference=reference)


@pytest.mark.parametrize("provider", ["faxplus", "interfax", "optum"])
def test_slow_accept_accepts_the_send_after_the_client_gave_up(
    sandbox: SandboxServer, provider: str
):
    # Given sends to one number that the provider accepts only after two seconds
    sandbox.faults(numbers={"+12025550100": "slow_accept"}, slow_accept_seconds=2.0)

    # When a client that waits a quarter of that sends (its upload and token calls are quick)
    with (
        httpx.Client(base_url=sandbox.url, timeout=0.5) as impatient,
        pytest.raises(httpx.ReadTimeout),
    ):
        send_to(provider, impatient, "+12025550100", "slow")

    # Then the provider still accepts the send once the second is up, as a real one would
    assert sandbox.sends() == []
    sent = wait_for(sandbox.sends, 5, what="the slow send accepted")
    assert [(s["provider"], s["reference"]) for s in sent] == [(provider, "slow")]
    assert sandbox.control("GET", "/faults/injected")["slow_accept"] == 1


def test_slow_accept_rate_delays_sends_only(sandbox: SandboxServer, http: httpx.Client):
    sandbox.faults(slow_accept_rate=1, slow_accept_seconds=0.3)
    http.get("/interfax/outbound/faxes", auth=INTERFAX_AUTH)  # not a send: never slowed
    started = time.monotonic()
    assert interfax_send(http, "+12025550100").status_code == 201
    assert time.monotonic() - started >= 0.3
    assert sandbox.control("GET", "/faults/injected")["slow_accept"] == 1


def test_every_injected_fault_is_counted_by_kind_until_reset(
    sandbox: SandboxServer, http: httpx.Client
):
    # Given one request hit by each kind of request fault
    sandbox.faults(error_rate=1)
    assert http.get("/interfax/outbound/faxes", auth=INTERFAX_AUTH).status_code == 503
    sandbox.faults(error_rate=0, rate_limit_rate=1)
    assert http.get("/interfax/outbound/faxes", auth=INTERFAX_AUTH).status_code == 429
    sandbox.faults(rate_limit_rate=0, drop_rate=1)
    with pytest.raises(httpx.RemoteProtocolError):
        http.get("/interfax/outbound/faxes", auth=INTERFAX_AUTH)
    sandbox.faults(drop_rate=0, timeout_rate=1, timeout_seconds=1)
    with pytest.raises(httpx.ReadTimeout):
        http.get("/interfax/outbound/faxes", auth=INTERFAX_AUTH, timeout=0.2)
    sandbox.faults(timeout_rate=0)
    # and one send by each kind of number fault
    sandbox.faults(
        numbers={"+12025550100": "drop_after_accept", "+12025550101": "5xx"},
        slow_accept_rate=1,
        slow_accept_seconds=0,
    )
    with pytest.raises(httpx.RemoteProtocolError):
        interfax_send(http, "+12025550100")
    assert interfax_send(http, "+12025550101").status_code == 503
    assert interfax_send(http, "+12025550102").status_code == 201

    # Then each is counted once by kind (the refused 5xx send was never slow)
    expected = {"5xx": 2, "429": 1, "timeout": 1, "drop": 1, "drop_after_accept": 1}
    injected = sandbox.control("GET", "/faults/injected")
    assert injected == {**dict.fromkeys(injected, 0), **expected, "slow_accept": 2}
    sandbox.reset()
    assert set(sandbox.control("GET", "/faults/injected").values()) == {0}


@pytest.mark.parametrize(
    "settings",
    [
        {"error_rate": 2},
        {"numbers": {"+1202": "boom"}},
        {"slow_accept_rate": 1.5},
        {"slow_accept_seconds": -1},
        {"webhook_duplicate_rate": "half"},
        {"webhook_delay_ms": [10]},
        {"webhook_delay_ms": -5},
        {"numbers": {"+12025550100": "webhook_duplicate"}},
    ],
)
def test_bad_fault_settings_are_refused(http: httpx.Client, settings: dict[str, Any]):
    refused = http.put("/_sandbox/faults", json=settings)
    assert refused.status_code == 400
    assert next(iter(settings)) in refused.json()["detail"]


def test_new_fault_settings_are_read_back(sandbox: SandboxServer):
    settings = sandbox.faults(
        numbers={"2025550100": "slow_accept"}, webhook_delay_ms=[50, 10], webhook_duplicate_rate=0.5
    )
    assert settings["numbers"] == {"+12025550100": "slow_accept"}
    assert (settings["webhook_delay_ms"], settings["webhook_duplicate_rate"]) == ([10, 50], 0.5)
    assert settings["slow_accept_seconds"] == 5.0


# Webhooks ---------------------------------------------------------------------------------


def _url(receiver: WebhookReceiver, path: str) -> str:
    return f"http://127.0.0.1:{receiver.server_address[1]}{path}"


def test_faxplus_hook_delivers_fax_sent(
    sandbox: SandboxServer, http: httpx.Client, receiver: WebhookReceiver
):
    hook = {"target": _url(receiver, "/fp"), "event": "fax_sent"}
    assert http.post("/faxplus/v3/hooks", json=hook, headers=FAXPLUS_AUTH).status_code == 201
    fax_id = faxplus_send(http, "+12025550100").json()["ids"]["+12025550100"]
    sandbox.advance(1)
    _, _, body = wait_for(lambda: receiver.received, 5, what="the hook")[0]
    payload = json.loads(body)
    assert payload["hook"]["event"] == "fax_sent"
    assert (payload["data"]["id"], payload["data"]["status"]) == (fax_id, "success")


def test_interfax_callback_is_form_encoded(
    sandbox: SandboxServer, http: httpx.Client, receiver: WebhookReceiver
):
    http.put("/_sandbox/interfax/callback", json={"url": _url(receiver, "/ifx")})
    fax_id = interfax_send(http, "+12025550104").headers["location"].rsplit("/", 1)[-1]
    sandbox.advance(1)
    _, headers, body = wait_for(lambda: receiver.received, 5, what="the callback")[0]
    form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
    assert headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert (form["TransactionID"], form["Status"], form["PagesSent"]) == (fax_id, "6027", "0")


def test_optum_events_are_signed_and_retried_then_missed(
    sandbox: SandboxServer, http: httpx.Client, receiver: WebhookReceiver
):
    headers = optum_headers(http)
    endpoint = {"url": _url(receiver, "/opt"), "auth": {"apiKey": {"key": "s3cret"}}}
    assert (
        http.post("/optum/fax/webhook/endpoints", json=endpoint, headers=headers).status_code == 200
    )
    assert (
        http.get("/optum/fax/webhook/endpoints", headers=headers).json()["url"] == endpoint["url"]
    )

    receiver.statuses.extend([500, 200])
    fax_id = optum_send(http, headers, "2025550100").json()["faxId"]
    sandbox.advance(1)
    deliveries = wait_for(
        lambda: len(receiver.received) == 2 and receiver.received, 5, what="two deliveries"
    )
    _, sent_headers, body = deliveries[1]
    expected = hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert sent_headers["X-Optum-Webhook-Callback-Hmac-Signature"] == expected
    event = json.loads(body)
    assert (event["type"], event["data"]["faxId"], event["data"]["faxStatus"]) == (
        "fax_sent",
        fax_id,
        "FaxSent",
    )

    receiver.statuses.extend([500] * 4)
    missed_id = optum_send(http, headers, "2025550102").json()["faxId"]
    sandbox.advance(1)
    missed = wait_for(
        lambda: http.get("/_sandbox/optum/missed-events").json(), 5, what="a missed event"
    )
    assert missed[0]["faxId"] == missed_id
    assert len(receiver.received) == 6
    history = http.post(
        "/optum/fax/search",
        json={"faxId": missed_id, "showFaxStatusChangeHistory": True},
        headers=headers,
    ).json()[0]
    assert history["faxStatus"] == "FaxFailed"
    assert history["faxStatusChangeHistory"][-1]["faxStatus"] == "FaxWebhookUpdateFailed"


def test_duplicated_webhooks_are_posted_twice_and_counted(
    sandbox: SandboxServer, http: httpx.Client, receiver: WebhookReceiver
):
    # Given every webhook duplicated, an InterFAX callback and an Optum endpoint
    sandbox.faults(webhook_duplicate_rate=1)
    http.put("/_sandbox/interfax/callback", json={"url": _url(receiver, "/ifx")})
    headers = optum_headers(http)
    endpoint = {"url": _url(receiver, "/opt"), "auth": {"apiKey": {"key": "k"}}}
    http.post("/optum/fax/webhook/endpoints", json=endpoint, headers=headers)

    # When a fax through each completes
    interfax_send(http, "+12025550100")
    optum_send(http, headers, "2025550100")
    sandbox.advance(1)

    # Then each event arrives twice, byte for byte
    received = wait_for(
        lambda: len(receiver.received) == 4 and receiver.received, 5, what="four deliveries"
    )
    bodies = sorted((path, body) for path, _, body in received)
    assert [path for path, _ in bodies] == ["/ifx", "/ifx", "/opt", "/opt"]
    assert bodies[0] == bodies[1] and bodies[2] == bodies[3]
    assert sandbox.control("GET", "/faults/injected")["webhook_duplicate"] == 2


def test_delayed_webhooks_arrive_late_and_out_of_order(
    sandbox: SandboxServer, http: httpx.Client, receiver: WebhookReceiver
):
    # Given webhooks delayed by 0.2 to 0.8 s and ten faxes that complete together
    sandbox.faults(webhook_delay_ms=[200, 800])
    sandbox.freeze()
    http.put("/_sandbox/interfax/callback", json={"url": _url(receiver, "/ifx")})
    sent = [interfax_send(http, "+12025550100").headers["location"] for _ in range(10)]
    ids = [location.rsplit("/", 1)[-1] for location in sent]

    # When they complete
    completed = time.monotonic()
    sandbox.advance(1)
    received = wait_for(
        lambda: len(receiver.received) == 10 and receiver.received, 5, what="ten deliveries"
    )

    # Then none arrived before the least delay, and not in the order they completed
    assert min(receiver.arrivals) - completed >= 0.2
    order = [parse_qs(body.decode())["TransactionID"][0] for _, _, body in received]
    assert sorted(order) == sorted(ids)
    assert order != ids
