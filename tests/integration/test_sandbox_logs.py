"""The sandbox's accounting: the request log, line overlaps and pages received per send."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from dispatcher.sandbox.server import SandboxServer
from dispatcher.sandbox.traffic import classify
from tests.fixtures.documents import make_pdf
from tests.integration.test_sandbox import optum_headers

FAXPLUS = "/faxplus/v3/accounts/self"
FAXPLUS_AUTH = {"Authorization": "Bearer alohi_pat_sandbox"}
INTERFAX_AUTH = ("sandbox", "sandbox")
NUMBER = "+12025550100"


@pytest.fixture
def http(sandbox: SandboxServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sandbox.url, timeout=5) as client:
        yield client


@pytest.fixture
def optum(http: httpx.Client) -> dict[str, str]:
    """Optum request headers: a fresh bearer token and the tenant."""
    return optum_headers(http)


def faxplus_send(http: httpx.Client, to: str, *documents: bytes, reference: str = "ref") -> str:
    paths = [
        http.post(
            f"{FAXPLUS}/files",
            files={"fax_file": ("doc.pdf", document, "application/pdf")},
            headers=FAXPLUS_AUTH,
        ).json()["path"]
        for document in documents or (make_pdf(),)
    ]
    body = {
        "from": "no_number",
        "to": [to],
        "files": paths,
        "comment": {"text": reference, "tags": []},
        "return_ids": True,
    }
    sent = http.post(f"{FAXPLUS}/outbox", json=body, headers=FAXPLUS_AUTH)
    assert sent.status_code == 201, sent.text
    return sent.json()["ids"][to]


def interfax_send(http: httpx.Client, to: str, *documents: bytes, reference: str = "ref") -> str:
    params = {"faxNumber": to, "reference": reference}
    if len(documents) > 1:
        files = [("file", (f"d{i}.pdf", d, "application/pdf")) for i, d in enumerate(documents)]
        sent = http.post("/interfax/outbound/faxes", params=params, files=files, auth=INTERFAX_AUTH)
    else:
        sent = http.post(
            "/interfax/outbound/faxes",
            params=params,
            content=documents[0] if documents else make_pdf(),
            headers={"Content-Type": "application/pdf"},
            auth=INTERFAX_AUTH,
        )
    assert sent.status_code == 201, sent.text
    return sent.headers["location"].rsplit("/", 1)[-1]


def optum_send(
    http: httpx.Client, headers: dict[str, str], to: str, document: bytes | None = None
) -> str:
    sent = http.post(
        "/optum/fax",
        data={"faxNumber": to, "metadata": json.dumps({"reference": "ref-o"})},
        files={"document": ("doc.pdf", document or make_pdf(), "application/pdf")},
        headers=headers,
    )
    assert sent.status_code == 200, sent.text
    return sent.json()["faxId"]


def requests(sandbox: SandboxServer, **filters: str) -> list[dict[str, Any]]:
    return sandbox.control("GET", "/requests", params=filters)


def overlaps(sandbox: SandboxServer) -> list[dict[str, Any]]:
    return sandbox.control("GET", "/overlaps")


def shape(pairs: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    """(number, first provider, first fax id, second provider, second fax id) per overlap."""
    return [
        (
            p["number"],
            p["first"]["provider"],
            p["first"]["fax_id"],
            p["second"]["provider"],
            p["second"]["fax_id"],
        )
        for p in pairs
    ]


# Request log ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("provider", "method", "path", "kind"),
    [
        ("faxplus", "POST", "/faxplus/v3/accounts/self/outbox", "send"),
        ("faxplus", "GET", "/faxplus/v3/accounts/self/outbox", "status"),
        ("faxplus", "GET", "/faxplus/v3/accounts/self/outbox/abc", "status"),
        ("faxplus", "GET", "/faxplus/v3/accounts/self/faxes", "status"),
        ("faxplus", "GET", "/faxplus/v3/accounts/self/faxes/abc", "status"),
        ("faxplus", "POST", "/faxplus/v3/accounts/self/files", "other"),
        ("faxplus", "DELETE", "/faxplus/v3/accounts/self/outbox/abc", "other"),
        ("faxplus", "GET", "/faxplus/v3/hooks", "other"),
        ("interfax", "POST", "/interfax/outbound/faxes", "send"),
        ("interfax", "GET", "/interfax/outbound/faxes", "status"),
        ("interfax", "GET", "/interfax/outbound/faxes/750000001", "status"),
        ("interfax", "GET", "/interfax/outbound/faxes/completed", "status"),
        ("interfax", "GET", "/interfax/outbound/search", "status"),
        ("interfax", "POST", "/interfax/outbound/faxes/750000001/cancel", "other"),
        ("interfax", "GET", "/interfax/accounts/self/ppcards/balance", "other"),
        ("optum", "POST", "/optum/fax", "send"),
        ("optum", "GET", "/optum/fax/abc", "status"),
        ("optum", "POST", "/optum/fax/search", "status"),
        ("optum", "POST", "/optum/oauth/token", "other"),
        ("optum", "GET", "/optum/fax/webhook/endpoints", "other"),
        ("optum", "GET", "/optum/fax/abc/attempts", "other"),
        ("optum", "PUT", "/optum/fax/abc/retry", "other"),
    ],
)
def test_requests_are_classed_as_send_status_or_other(
    provider: str, method: str, path: str, kind: str
):
    assert classify(provider, method, path) == kind


def test_every_provider_request_is_logged_with_its_kind(
    sandbox: SandboxServer, http: httpx.Client, optum: dict[str, str]
):
    # Given a fax through each provider and a status read of each
    sandbox.advance(100)  # the log uses the wall clock, not the sandbox clock
    started = time.time()
    faxplus_send(http, NUMBER)
    http.get(f"{FAXPLUS}/outbox", headers=FAXPLUS_AUTH)
    ifx_id = interfax_send(http, NUMBER)
    http.get(f"/interfax/outbound/faxes/{ifx_id}", auth=INTERFAX_AUTH)
    opt_id = optum_send(http, optum, NUMBER)
    http.post("/optum/fax/search", json={"faxId": opt_id}, headers=optum)
    http.get("/_sandbox/sends")  # control endpoints are not provider requests

    # When the log is read
    log = requests(sandbox)

    # Then every request is there, in order, with its kind and a wall-clock time
    assert [(r["provider"], r["method"], r["kind"]) for r in log] == [
        ("optum", "POST", "other"),  # the token, from the fixture
        ("faxplus", "POST", "other"),  # the upload
        ("faxplus", "POST", "send"),
        ("faxplus", "GET", "status"),
        ("interfax", "POST", "send"),
        ("interfax", "GET", "status"),
        ("optum", "POST", "send"),
        ("optum", "POST", "status"),
    ]
    assert log[2]["path"] == f"{FAXPLUS}/outbox"
    assert all(started <= r["at"] <= time.time() for r in log[1:])
    assert [r["provider"] for r in requests(sandbox, kind="send")] == [
        "faxplus",
        "interfax",
        "optum",
    ]
    assert [r["path"] for r in requests(sandbox, provider="optum", kind="status")] == [
        "/optum/fax/search"
    ]


def test_faulted_requests_are_logged_and_reset_clears_the_log(
    sandbox: SandboxServer, http: httpx.Client
):
    sandbox.faults(error_rate=1)
    assert http.get("/interfax/outbound/faxes", auth=INTERFAX_AUTH).status_code == 503
    assert [r["kind"] for r in requests(sandbox, provider="interfax")] == ["status"]
    sandbox.reset()
    assert requests(sandbox) == []


# Line overlaps ----------------------------------------------------------------------------


def test_two_calls_to_one_number_at_once_overlap_across_providers(
    sandbox: SandboxServer, http: httpx.Client
):
    # Given two calls in flight to one number, and one to another number
    sandbox.freeze()
    first = faxplus_send(http, NUMBER, reference="r-first")
    sandbox.advance(0.01)
    second = interfax_send(http, NUMBER, reference="r-second")
    interfax_send(http, "+12025550102")

    # Then exactly that pair overlaps, earlier call first, with both intervals
    pairs = overlaps(sandbox)
    assert shape(pairs) == [(NUMBER, "faxplus", first, "interfax", second)]
    one, two = pairs[0]["first"], pairs[0]["second"]
    assert (one["reference"], two["reference"]) == ("r-first", "r-second")
    assert one["start"] < two["start"] < one["end"]
    assert two["end"] - two["start"] == pytest.approx(0.1)  # 10 s hold x TIME_SCALE


def test_a_call_after_the_last_one_ended_does_not_overlap(
    sandbox: SandboxServer, http: httpx.Client, optum: dict[str, str]
):
    sandbox.freeze()
    interfax_send(http, NUMBER)
    sandbox.advance(0.1)  # the first call ends exactly as the next one starts: [start, end)
    optum_send(http, optum, NUMBER)
    sandbox.advance(1)
    faxplus_send(http, NUMBER)
    assert overlaps(sandbox) == []


def test_a_cancel_frees_the_line(sandbox: SandboxServer, http: httpx.Client):
    sandbox.freeze()
    long_call = interfax_send(http, "+12025550109")  # held for minutes unless cancelled
    sandbox.advance(0.01)
    assert http.post(f"/interfax/outbound/faxes/{long_call}/cancel", auth=INTERFAX_AUTH).is_success
    sandbox.advance(0.01)
    faxplus_send(http, "+12025550109")
    assert overlaps(sandbox) == []


def test_an_optum_manual_retry_is_a_call_of_its_own(
    sandbox: SandboxServer, http: httpx.Client, optum: dict[str, str]
):
    # Given an Optum fax that failed, then was retried by hand
    sandbox.freeze()
    number = "+12025550105"  # temporary failure, then success
    fax_id = optum_send(http, optum, number)
    sandbox.advance(1)
    assert http.put(f"/optum/fax/{fax_id}/retry", headers=optum).is_success

    # When another call to the number starts while the retry is on the line
    sandbox.advance(0.01)
    other = faxplus_send(http, number)

    # Then only the retry overlaps it (the first attempt had ended)
    pairs = overlaps(sandbox)
    assert shape(pairs) == [(number, "optum", fax_id, "faxplus", other)]
    retry_start = pairs[0]["first"]["start"]
    sandbox.advance(1)
    assert [p["first"]["start"] for p in overlaps(sandbox)] == [retry_start]


# Pages received ---------------------------------------------------------------------------


def test_send_log_counts_the_pages_of_every_file(
    sandbox: SandboxServer, http: httpx.Client, optum: dict[str, str]
):
    faxplus_send(http, NUMBER, make_pdf(3), make_pdf(2), reference="fp")
    interfax_send(http, NUMBER, make_pdf(4), reference="ifx-one")
    interfax_send(http, NUMBER, make_pdf(3), make_pdf(1), reference="ifx-two")
    fax_id = optum_send(http, optum, "+12025550105", make_pdf(6))
    sandbox.advance(1)
    http.put(f"/optum/fax/{fax_id}/retry", headers=optum)
    assert [(s["provider"], s["kind"], s["pages"]) for s in sandbox.sends()] == [
        ("faxplus", "send", 5),
        ("interfax", "send", 4),
        ("interfax", "send", 4),
        ("optum", "send", 6),
        ("optum", "retry", 6),
    ]


def test_a_document_that_is_not_a_pdf_counts_as_one_page(
    sandbox: SandboxServer, http: httpx.Client
):
    sent = http.post(
        "/interfax/outbound/faxes",
        params={"faxNumber": NUMBER},
        content=b"hello, fax",
        headers={"Content-Type": "text/plain"},
        auth=INTERFAX_AUTH,
    )
    assert sent.status_code == 201
    assert [s["pages"] for s in sandbox.sends()] == [1]
