"""The provider HTTP boundary: every httpx failure and HTTP error status becomes our error."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from dispatcher.catalogue import Remediation, classify_transport
from dispatcher.errors import (
    ProviderAuthError,
    ProviderError,
    ProviderRateLimited,
    ProviderRejected,
    ProviderTimeout,
    ProviderTransientError,
)
from dispatcher.providers._http import BearerAuth, ProviderHttp, parse_retry_after
from dispatcher.providers.optum.adapter import ClientCredentials

SECRET = "alohi_pat_very_secret_value"

Handler = Callable[[httpx.Request], httpx.Response]


def boundary(handler: Handler, **kwargs: Any) -> ProviderHttp:
    return ProviderHttp(
        "faxplus",
        "https://provider.test/v3",
        auth=BearerAuth(SecretStr(SECRET)),
        transport=httpx.MockTransport(handler),
        **kwargs,
    )


def answer(status: int, **kwargs: Any) -> Handler:
    return lambda request: httpx.Response(status, **kwargs)


def fail_with(exc_type: type[httpx.TransportError]) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc_type("boom", request=request)

    return handler


@pytest.mark.parametrize(
    ("status", "error_type", "kind", "remediation"),
    [
        (500, ProviderTransientError, "http_500", Remediation.WAIT_AND_RETRY),
        (502, ProviderTransientError, "http_502", Remediation.WAIT_AND_RETRY),
        (503, ProviderTransientError, "http_503", Remediation.WAIT_AND_RETRY),
        (429, ProviderRateLimited, "http_429", Remediation.WAIT_AND_RETRY),
        (401, ProviderAuthError, "http_401", Remediation.NO_RETRY),
        (403, ProviderAuthError, "http_403", Remediation.NO_RETRY),
        (400, ProviderRejected, "http_400", Remediation.NO_RETRY),
        (404, ProviderRejected, "http_404", Remediation.NO_RETRY),
        (409, ProviderRejected, "http_409", Remediation.NO_RETRY),
        (413, ProviderRejected, "http_413", Remediation.NO_RETRY),
        (422, ProviderRejected, "http_422", Remediation.NO_RETRY),
    ],
)
def test_error_statuses_map_to_errors_the_catalogue_classifies(
    status: int, error_type: type[ProviderError], kind: str, remediation: Remediation
) -> None:
    # Given a provider answering with an error status
    http = boundary(answer(status))

    # When we call it, Then the matching error comes out, classified by the catalogue
    with pytest.raises(error_type) as caught:
        http.request("GET", "/accounts/self/faxes/1", job_id="job-1")
    assert caught.value.kind == kind
    assert caught.value.status_code == status
    assert caught.value.job_id == "job-1"
    assert classify_transport("faxplus", caught.value.kind).remediation is remediation


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"error": "too_many_files", "description": "At most 10"}, "too_many_files: At most 10"),
        (
            {"code": -112, "message": "No valid recipient", "moreInfo": "faxNumber missing"},
            "-112: No valid recipient; faxNumber missing",
        ),
        ({"code": -1005, "message": "Fax resource not found", "moreInfo": None}, "-1005"),
        (
            {"title": "Bad Request", "status": 400, "detail": "faxNumber: must be 10 digits"},
            "Bad Request: faxNumber: must be 10 digits",
        ),
    ],
)
def test_a_refusal_carries_the_providers_own_message(body: dict[str, Any], expected: str) -> None:
    http = boundary(answer(400, json=body))

    with pytest.raises(ProviderRejected) as caught:
        http.request("POST", "/accounts/self/outbox")

    assert expected in caught.value.message


def test_a_refusal_without_json_keeps_its_text() -> None:
    http = boundary(answer(400, text="bad number"))

    with pytest.raises(ProviderRejected, match="bad number"):
        http.request("POST", "/x")


def test_rate_limit_reads_retry_after_seconds() -> None:
    http = boundary(answer(429, headers={"Retry-After": "7"}))

    with pytest.raises(ProviderRateLimited) as caught:
        http.request("GET", "/x")

    assert caught.value.retry_after == 7.0
    assert caught.value.maybe_sent is False


def test_retry_after_may_be_an_http_date() -> None:
    now = datetime(2024, 1, 1, 12, 0, tzinfo=UTC)
    header = format_datetime(now + timedelta(seconds=30), usegmt=True)

    assert parse_retry_after(header, now=now) == 30.0
    assert parse_retry_after(format_datetime(now - timedelta(seconds=5), usegmt=True), now=now) == 0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None


@pytest.mark.parametrize(
    ("exc_type", "error_type", "kind", "maybe_sent"),
    [
        (httpx.ConnectError, ProviderTransientError, "connect", False),
        (httpx.ConnectTimeout, ProviderTimeout, "timeout", False),
        (httpx.PoolTimeout, ProviderTimeout, "timeout", False),
        (httpx.ReadTimeout, ProviderTimeout, "timeout", True),
        (httpx.WriteTimeout, ProviderTimeout, "timeout", True),
        (httpx.RemoteProtocolError, ProviderTransientError, "protocol", True),
        (httpx.ReadError, ProviderTransientError, "protocol", True),
    ],
)
def test_transport_failures_say_whether_a_send_may_have_landed(
    exc_type: type[httpx.TransportError],
    error_type: type[ProviderError],
    kind: str,
    maybe_sent: bool,
) -> None:
    http = boundary(fail_with(exc_type))

    with pytest.raises(error_type) as caught:
        http.request("POST", "/accounts/self/outbox", sending=True)

    assert type(caught.value) is error_type
    assert caught.value.kind == kind
    assert caught.value.maybe_sent is maybe_sent
    assert isinstance(caught.value.__cause__, exc_type)
    assert classify_transport("faxplus", kind).remediation is Remediation.WAIT_AND_RETRY


def test_only_the_sending_call_may_have_sent_a_fax() -> None:
    http = boundary(answer(503))

    with pytest.raises(ProviderTransientError) as on_read:
        http.request("GET", "/accounts/self/faxes/1")
    with pytest.raises(ProviderTransientError) as on_send:
        http.request("POST", "/accounts/self/outbox", sending=True)

    assert on_read.value.maybe_sent is False
    assert on_send.value.maybe_sent is True


def test_allowed_statuses_come_back_as_responses() -> None:
    http = boundary(answer(404, json={"error": "not_found"}))

    assert http.request("GET", "/accounts/self/faxes/1", allow=(404,)).status_code == 404


@pytest.mark.parametrize(
    ("response", "expect"),
    [
        (httpx.Response(200, text="<html>oops"), object),
        (httpx.Response(200, content=b""), object),
        (httpx.Response(200, json=[1, 2]), dict),
    ],
)
def test_an_unreadable_success_is_a_protocol_error(response: httpx.Response, expect: type) -> None:
    http = boundary(lambda request: response)

    with pytest.raises(ProviderTransientError) as caught:
        http.json(http.request("POST", "/x", sending=True), expect, sending=True)

    assert caught.value.kind == "protocol"
    assert caught.value.maybe_sent is True
    assert classify_transport("faxplus", "protocol").remediation is Remediation.WAIT_AND_RETRY


def test_the_token_is_sent_but_never_shown() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["Authorization"])
        return httpx.Response(401, json={"error": "invalid_token", "description": "expired"})

    http = boundary(handler)
    with pytest.raises(ProviderAuthError) as caught:
        http.request("GET", "/accounts/self")

    assert seen == [f"Bearer {SECRET}"]
    assert SECRET not in str(caught.value)
    assert SECRET not in repr(caught.value)
    assert SECRET not in repr(http.client)


def test_a_client_credentials_token_is_cached_and_refreshed_once_on_401() -> None:
    # Given a token endpoint and an API that refuses the first token once
    tokens = iter(["t1", "t2"])
    calls: list[tuple[str, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth/token":
            calls.append(("token", ""))
            return httpx.Response(200, json={"access_token": next(tokens), "expires_in": 3600})
        auth = request.headers["Authorization"]
        calls.append(("api", auth))
        stale = auth == "Bearer t1" and len([c for c in calls if c[0] == "api"]) == 2
        return httpx.Response(401 if stale else 200, json={})

    auth = ClientCredentials(
        "optum", "https://optum.test/oauth/token", "client", SecretStr("client-secret")
    )
    http = ProviderHttp(
        "optum", "https://optum.test", auth=auth, transport=httpx.MockTransport(handler)
    )

    # When three calls are made
    for _ in range(3):
        http.request("GET", "/fax/1")

    # Then one token served the first call, a 401 fetched a new one, and it stayed cached
    assert calls == [
        ("token", ""),
        ("api", "Bearer t1"),
        ("api", "Bearer t1"),
        ("token", ""),
        ("api", "Bearer t2"),
        ("api", "Bearer t2"),
    ]


def test_refused_client_credentials_are_an_auth_error() -> None:
    auth = ClientCredentials(
        "optum", "https://optum.test/oauth/token", "client", SecretStr("client-secret")
    )
    http = ProviderHttp(
        "optum",
        "https://optum.test",
        auth=auth,
        transport=httpx.MockTransport(answer(401, json={"title": "Unauthorized"})),
    )

    with pytest.raises(ProviderAuthError) as caught:
        http.request("GET", "/fax/1")

    assert caught.value.kind == "http_401"
    assert "client-secret" not in str(caught.value)


def test_each_thread_sends_on_its_own_client_and_close_closes_them_all() -> None:
    # Given calls from the main thread and from two others
    http = boundary(answer(200, json={}))
    seen: list[httpx.Client] = []

    def call() -> None:
        http.request("GET", "/accounts/self")
        seen.append(http.client)

    call()
    call()
    for thread in [threading.Thread(target=call) for _ in range(2)]:
        thread.start()
        thread.join()
    # Then one thread keeps its client, and each thread has its own (one connection each)
    assert seen[0] is seen[1]
    assert len({id(client) for client in seen}) == 3
    http.close()
    assert all(client.is_closed for client in seen)


def test_an_injected_client_serves_every_thread() -> None:
    client = httpx.Client(transport=httpx.MockTransport(answer(200, json={})))
    http = ProviderHttp("interfax", "https://provider.test", client=client)
    seen: list[httpx.Client] = []
    thread = threading.Thread(target=lambda: seen.append(http.client))
    thread.start()
    thread.join()
    assert seen == [client]
    assert http.client is client
