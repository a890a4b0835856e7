"""Every provider adapter against the sandbox over real HTTP: scenarios, faults, webhooks."""

from __future__ import annotations

import hashlib
import hmac
import json
import queue
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

import httpx
import pytest
from pydantic import SecretStr

from config.settings import Settings, get_settings
from dispatcher.catalogue import Outcome, Remediation, classify, classify_transport
from dispatcher.errors import (
    ConfigurationError,
    ProviderAuthError,
    ProviderError,
    ProviderRateLimited,
    ProviderRejected,
    ProviderTimeout,
    ProviderTransientError,
    ValidationError,
)
from dispatcher.processes import free_port, wait_for
from dispatcher.providers.base import (
    Document,
    ManualRetry,
    ProviderAdapter,
    ProviderStatus,
    SendRequest,
)
from dispatcher.providers.definition import ProviderSettings
from dispatcher.providers.faxplus import api as faxplus_api
from dispatcher.providers.faxplus.settings import FaxPlusSettings
from dispatcher.providers.interfax.settings import InterFaxSettings
from dispatcher.providers.optum import api as optum_api
from dispatcher.providers.optum.adapter import OptumAdapter
from dispatcher.providers.optum.settings import OptumSettings
from dispatcher.providers.registry import PROVIDERS, build_adapter
from dispatcher.runtime import clear_adapters, get_adapter
from dispatcher.sandbox.scenarios import DEFAULT_FILE
from dispatcher.sandbox.server import SandboxServer
from tests.fixtures.sandbox import register_webhook

T = TypeVar("T")

PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
WEBHOOK_SECRET = "optum-webhook-secret-for-tests"
SCENARIOS: dict[str, dict[str, Any]] = {
    number: spec
    for number, spec in json.loads(DEFAULT_FILE.read_text()).items()
    if not number.startswith("_")
}
SUCCESS_NUMBER = "+12025550100"
#: Every send of these tests began after this (lookups search back to it).
STARTED = datetime.now(UTC)
PARTIAL_NUMBER = "+12025550107"
LONG_NUMBER = "+12025550109"
#: Text only each provider's own refusal of a bad number contains.
REFUSALS = {
    "faxplus": faxplus_api.ERROR_INVALID_NUMBER,
    "interfax": "No valid recipient",
    "optum": "faxNumber must be",
}


def first_code(provider: str, number: str) -> str:
    """The code a first send to ``number`` ends with, as the adapter reports it."""
    spec = SCENARIOS[number]
    code = str(spec[provider][0])
    if code == optum_api.STATUS_FAILED and spec.get("failed_reason"):
        return f"{code}/{spec['failed_reason']}"
    return code


def fax_request(to: str, **metadata: str) -> SendRequest:
    return SendRequest(
        job_id=f"job-{uuid.uuid4().hex[:8]}",
        reference=f"ref-{uuid.uuid4().hex}",
        to=to,
        documents=[Document("letter.pdf", "application/pdf", PDF)],
        metadata=metadata,
    )


def read_until(read: Callable[[], T], done: Callable[[T], bool], timeout: float = 10.0) -> T:
    """Read until ``done`` holds of the reading, and return it (``TimeoutError`` if it never
    does)."""

    def finished() -> tuple[T] | None:
        value = read()
        return (value,) if done(value) else None

    return wait_for(finished, timeout, what="the reading awaited", interval=0.02)[0]


def settings_for(sandbox: SandboxServer) -> Settings:
    return Settings(sandbox_url=sandbox.url)


@pytest.fixture(autouse=True)
def _optum_signs_with_the_test_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAX_OPTUM__WEBHOOK_SECRET", WEBHOOK_SECRET)


@pytest.fixture(params=PROVIDERS)
def provider(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def adapter(provider: str, sandbox: SandboxServer) -> Iterator[ProviderAdapter]:
    built = build_adapter(provider, settings_for(sandbox))
    yield built
    built.close()


def send_failure(adapter: ProviderAdapter, request: SendRequest) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        adapter.send(request)
    return caught.value


# --- scenarios ------------------------------------------------------------------------------


@pytest.mark.parametrize("number", [n for n in SCENARIOS if n != LONG_NUMBER])
def test_a_send_to_each_scenario_number_ends_with_its_scenario_code(
    adapter: ProviderAdapter, provider: str, sandbox: SandboxServer, number: str
) -> None:
    # Given a fax sent to a scenario number
    request = fax_request(number)
    fax_id = adapter.send(request)

    # Then it is in progress at first
    first = adapter.status(fax_id)
    assert classify(provider, first.code).outcome is Outcome.IN_PROGRESS

    # When its transmission ends, Then the status is the scenario's code, with its details
    sandbox.advance(1)
    expected = first_code(provider, number)
    final = read_until(lambda: adapter.status(fax_id), lambda s: s.code == expected)
    assert final.code == expected
    assert final.fax_id == fax_id
    assert final.reference == request.reference
    assert final.started_at is not None and final.finished_at is not None
    assert final.raw
    if number == PARTIAL_NUMBER:
        assert final.pages_sent == SCENARIOS[number]["pages_sent"]
    if number == SUCCESS_NUMBER:
        assert final.pages_sent == 1
    assert [s["fax_id"] for s in sandbox.sends(reference=request.reference)] == [fax_id]


def test_statuses_reads_finished_and_running_faxes_together(
    adapter: ProviderAdapter, provider: str, sandbox: SandboxServer
) -> None:
    # Given finished faxes and one that runs for a long time
    numbers = ["+12025550100", "+12025550102", "+12025550108", LONG_NUMBER]
    fax_ids = [adapter.send(fax_request(n)) for n in numbers]
    sandbox.advance(1)

    # When they are read as one batch
    statuses = read_until(
        lambda: adapter.statuses(fax_ids),
        lambda found: found[fax_ids[0]].code == first_code(provider, numbers[0]),
    )

    # Then each has its own status, in the order asked
    assert list(statuses) == fax_ids
    for number, fax_id in zip(numbers[:-1], fax_ids, strict=False):
        assert statuses[fax_id].code == first_code(provider, number)
    running = statuses[fax_ids[-1]]
    assert classify(provider, running.code).outcome is Outcome.IN_PROGRESS


def test_a_long_running_fax_can_be_cancelled(
    adapter: ProviderAdapter, provider: str, sandbox: SandboxServer
) -> None:
    # Given a fax that stays in progress
    request = fax_request(LONG_NUMBER)
    fax_id = adapter.send(request)

    # When it is cancelled
    adapter.cancel(fax_id)

    # Then the provider stops it: a cancelled status, or (FAX.PLUS) gone from the outbox
    if provider == "faxplus":
        assert adapter.find_by_reference(request.reference, STARTED) is None
    else:
        final = read_until(
            lambda: adapter.status(fax_id),
            lambda s: classify(provider, s.code).outcome is Outcome.CANCELLED,
        )
        assert classify(provider, final.code).outcome is Outcome.CANCELLED


def test_cancelling_a_finished_fax_is_refused(
    adapter: ProviderAdapter, provider: str, sandbox: SandboxServer
) -> None:
    fax_id = adapter.send(fax_request(SUCCESS_NUMBER))
    sandbox.advance(1)
    read_until(
        lambda: adapter.status(fax_id), lambda s: s.code == first_code(provider, SUCCESS_NUMBER)
    )

    with pytest.raises(ProviderRejected) as caught:
        adapter.cancel(fax_id)

    assert caught.value.kind == "http_409"
    assert classify_transport(provider, caught.value.kind).remediation is Remediation.NO_RETRY


# --- reconciliation -------------------------------------------------------------------------


def test_a_send_whose_answer_was_lost_is_found_by_its_reference(
    adapter: ProviderAdapter, provider: str, sandbox: SandboxServer
) -> None:
    # Given the sandbox accepts a send, then drops the connection before answering
    sandbox.faults(numbers={SUCCESS_NUMBER: "drop_after_accept"})
    request = fax_request(SUCCESS_NUMBER)

    # When the send is made, Then it fails as a transport error that may have sent the fax
    error = send_failure(adapter, request)
    assert isinstance(error, ProviderTransientError)
    assert error.maybe_sent is True
    assert classify_transport(provider, error.kind).remediation is Remediation.WAIT_AND_RETRY

    # And find_by_reference finds exactly the fax the sandbox logged
    [logged] = sandbox.sends(reference=request.reference)
    found = read_until(lambda: _find(adapter, request.reference), lambda s: s is not None)
    assert found is not None
    assert found.fax_id == logged["fax_id"]
    assert found.reference == request.reference


def test_a_reference_that_was_never_sent_is_not_found(
    adapter: ProviderAdapter, sandbox: SandboxServer
) -> None:
    adapter.send(fax_request(SUCCESS_NUMBER))
    sandbox.advance(1)

    assert adapter.find_by_reference(f"ref-{uuid.uuid4().hex}", STARTED) is None


# --- faults ---------------------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["5xx", "drop"])
def test_a_send_that_fails_in_transit_is_retried_after_reconciling(
    adapter: ProviderAdapter, provider: str, sandbox: SandboxServer, fault: str
) -> None:
    # Given a send refused (5xx) or dropped before the sandbox accepted it
    sandbox.faults(numbers={SUCCESS_NUMBER: fault}, error_status=503)
    request = fax_request(SUCCESS_NUMBER)

    # When it is sent
    error = send_failure(adapter, request)

    # Then it is a transient error to retry, after reconciling, which finds nothing
    assert type(error) is ProviderTransientError
    assert error.kind == ("http_503" if fault == "5xx" else "protocol")
    assert error.maybe_sent is True
    assert error.job_id == request.job_id
    assert classify_transport(provider, error.kind).remediation is Remediation.WAIT_AND_RETRY
    assert adapter.find_by_reference(request.reference, STARTED) is None


def test_a_rate_limited_send_says_how_long_to_wait(
    adapter: ProviderAdapter, provider: str, sandbox: SandboxServer
) -> None:
    sandbox.faults(numbers={SUCCESS_NUMBER: "429"}, retry_after=7)

    error = send_failure(adapter, fax_request(SUCCESS_NUMBER))

    assert isinstance(error, ProviderRateLimited)
    assert error.retry_after == 7.0
    assert error.kind == "http_429"
    assert classify_transport(provider, error.kind).remediation is Remediation.WAIT_AND_RETRY


def test_a_send_with_no_answer_in_time_is_a_timeout(provider: str, sandbox: SandboxServer) -> None:
    # Given a sandbox that holds the send longer than the adapter waits
    sandbox.faults(numbers={SUCCESS_NUMBER: "timeout"}, timeout_seconds=2)
    impatient = httpx.Client(timeout=httpx.Timeout(5.0, read=0.3))
    adapter = build_adapter(provider, settings_for(sandbox), client=impatient)

    # When it sends, Then it times out, and the fax may have been sent
    try:
        error = send_failure(adapter, fax_request(SUCCESS_NUMBER))
    finally:
        adapter.close()
    assert isinstance(error, ProviderTimeout)
    assert error.kind == "timeout"
    assert error.maybe_sent is True
    assert classify_transport(provider, error.kind).remediation is Remediation.WAIT_AND_RETRY


def test_a_server_error_on_a_read_is_transient_and_sent_nothing(
    adapter: ProviderAdapter, provider: str, sandbox: SandboxServer
) -> None:
    fax_id = adapter.send(fax_request(SUCCESS_NUMBER))
    sandbox.faults(error_rate=1.0, error_status=500)

    with pytest.raises(ProviderTransientError) as caught:
        adapter.status(fax_id)

    assert caught.value.kind == "http_500"
    assert caught.value.maybe_sent is False


def test_an_unreachable_provider_is_a_connect_error(provider: str) -> None:
    closed_port = free_port()  # nothing listens there
    adapter = build_adapter(provider, Settings(sandbox_url=f"http://127.0.0.1:{closed_port}"))

    try:
        error = send_failure(adapter, fax_request(SUCCESS_NUMBER))
    finally:
        adapter.close()

    assert type(error) is ProviderTransientError
    assert error.kind == "connect"
    assert error.maybe_sent is False
    assert classify_transport(provider, error.kind).remediation is Remediation.WAIT_AND_RETRY


BAD_SECRET = "not-the-right-secret-0123456789"


def bad_credentials(provider: str, sandbox: SandboxServer) -> ProviderSettings:
    """Credentials the sandbox refuses (so the sandbox fallback is not used)."""
    if provider == "faxplus":
        return FaxPlusSettings(
            base_url=f"{sandbox.url}/faxplus/v3", token=SecretStr(f"alohi_pat_{BAD_SECRET}")
        )
    if provider == "interfax":
        return InterFaxSettings(
            base_url=f"{sandbox.url}/interfax", username="sandbox", password=SecretStr(BAD_SECRET)
        )
    return OptumSettings(
        base_url=f"{sandbox.url}/optum",
        token_url=f"{sandbox.url}/optum/oauth/token",
        client_id="sandbox",
        client_secret=SecretStr(BAD_SECRET),
        webhook_secret=SecretStr(BAD_SECRET),
    )


def test_refused_credentials_stop_retries_and_never_show(
    provider: str, sandbox: SandboxServer
) -> None:
    adapter = build_adapter(provider, Settings(), own=bad_credentials(provider, sandbox))

    try:
        error = send_failure(adapter, fax_request(SUCCESS_NUMBER))
    finally:
        adapter.close()

    assert isinstance(error, ProviderAuthError)
    assert error.kind == "http_401"
    assert error.maybe_sent is False
    assert classify_transport(provider, error.kind).remediation is Remediation.NO_RETRY
    for text in (str(error), repr(error), repr(adapter), error.message):
        assert BAD_SECRET not in text
    assert sandbox.sends() == []


def test_an_invalid_request_is_refused_with_the_providers_message(
    adapter: ProviderAdapter, provider: str, sandbox: SandboxServer
) -> None:
    error = send_failure(adapter, fax_request("+1202"))

    assert isinstance(error, ProviderRejected)
    assert error.kind == "http_400"
    assert REFUSALS[provider] in error.message
    assert error.maybe_sent is False
    assert sandbox.sends() == []
    assert classify_transport(provider, error.kind).remediation is Remediation.NO_RETRY


def test_an_adapter_shows_no_secret(adapter: ProviderAdapter, sandbox: SandboxServer) -> None:
    text = repr(adapter)

    assert sandbox.url in text
    for secret in ("alohi_pat_sandbox", "sandbox:sandbox", "client_secret", "Bearer", "Basic"):
        assert secret not in text


def test_a_provider_with_neither_credentials_nor_sandbox_is_a_configuration_error(
    provider: str,
) -> None:
    with pytest.raises(ConfigurationError, match=provider):
        build_adapter(provider, Settings(sandbox_url=None))


def test_each_process_keeps_one_adapter_per_provider(
    provider: str, sandbox: SandboxServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAX_SANDBOX_URL", sandbox.url)
    get_settings.cache_clear()

    try:
        assert get_adapter(provider) is get_adapter(provider)
        assert sandbox.url in repr(get_adapter(provider))
    finally:
        clear_adapters()


# --- webhooks -------------------------------------------------------------------------------


class Receiver:
    """A local HTTP endpoint that records every callback the sandbox posts to it."""

    def __init__(self) -> None:
        self.calls: queue.Queue[tuple[dict[str, str], bytes]] = queue.Queue()
        calls = self.calls

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                calls.put((dict(self.headers.items()), body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def next_call(self, timeout: float = 10.0) -> tuple[dict[str, str], bytes]:
        return self.calls.get(timeout=timeout)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


def test_a_completion_callback_parses_to_the_polled_status(
    adapter: ProviderAdapter,
    provider: str,
    sandbox: SandboxServer,
    receiver: Receiver,
) -> None:
    # Given callbacks registered with the provider
    register_webhook(sandbox.url, provider, receiver.url, WEBHOOK_SECRET)

    # When a fax completes
    fax_id = adapter.send(fax_request(PARTIAL_NUMBER))
    sandbox.advance(1)
    headers, body = receiver.next_call()

    # Then its callback says what polling says
    [status] = adapter.parse_webhook(headers, body).statuses
    polled = adapter.status(fax_id)
    assert (status.fax_id, status.code) == (fax_id, polled.code)
    assert status.pages_sent == polled.pages_sent == SCENARIOS[PARTIAL_NUMBER]["pages_sent"]


@pytest.mark.parametrize("body", [b"", b"not json {", b"[1, 2]", b'{"data": {}}'])
def test_a_malformed_callback_is_refused(adapter: ProviderAdapter, body: bytes) -> None:
    headers = {optum_api.SIGNATURE_HEADER: _sign(body)}

    with pytest.raises(ValidationError):
        adapter.parse_webhook(headers, body)


@pytest.mark.parametrize("signature", [None, "", "0" * 64, "tampered"])
def test_an_optum_callback_without_a_valid_signature_is_refused(
    sandbox: SandboxServer, signature: str | None
) -> None:
    adapter = build_adapter("optum", settings_for(sandbox))
    body = json.dumps(
        {
            "id": "f1",
            "type": "fax_sent",
            "causationId": "event-1",
            "time": "2026-11-26T10:00:00Z",
            "data": {"faxId": "f1", "faxStatus": "FaxSent"},
        }
    ).encode()
    headers = {} if signature is None else {optum_api.SIGNATURE_HEADER: signature}

    with pytest.raises(ValidationError) as caught:
        adapter.parse_webhook(headers, body)
    assert caught.value.field == "signature"

    callback = adapter.parse_webhook({optum_api.SIGNATURE_HEADER: _sign(body)}, body)
    [status] = callback.statuses
    assert (status.fax_id, status.code) == ("f1", "FaxSent")
    assert (callback.event_id, callback.sent_at) == (
        "event-1",
        datetime(2026, 11, 26, 10, 0, tzinfo=UTC),
    )
    adapter.close()


# --- Optum extras ---------------------------------------------------------------------------


def test_optum_holds_revives_retries_and_lists_attempts(sandbox: SandboxServer) -> None:
    adapter = build_adapter("optum", settings_for(sandbox))
    assert isinstance(adapter, OptumAdapter), "hold, revive and attempts are Optum's own"
    held = adapter.send(fax_request(LONG_NUMBER))
    failed = adapter.send(fax_request("+12025550102"))

    assert adapter.hold(held).code == optum_api.STATUS_HELD
    assert adapter.revive(held).code == optum_api.STATUS_RECEIVED

    sandbox.advance(1)
    read_until(lambda: adapter.status(failed), lambda s: s.code.startswith(optum_api.STATUS_FAILED))
    assert adapter.manual_retry(failed) is ManualRetry.NONE
    adapter.retry(failed)
    assert adapter.status(failed).code == optum_api.STATUS_RETRY
    assert adapter.manual_retry(failed) is ManualRetry.RUNNING
    attempts = adapter.attempts(failed)
    assert [a["attemptNumber"] for a in attempts] == [1, 2]
    assert attempts[1]["isManualRetry"] is True
    adapter.close()


def test_a_server_error_on_optums_manual_retry_may_have_retried_like_a_send(
    sandbox: SandboxServer,
) -> None:
    # A manual retry makes a transmission: a 5xx or a timeout may come from a gateway after
    # Optum took it, so it is followed up like a send's, never taken as "not retried"
    adapter = build_adapter("optum", settings_for(sandbox))
    failed = adapter.send(fax_request("+12025550102"))
    sandbox.advance(1)
    read_until(lambda: adapter.status(failed), lambda s: s.code.startswith(optum_api.STATUS_FAILED))
    sandbox.faults(error_rate=1.0, error_status=502)

    with pytest.raises(ProviderTransientError) as caught:
        adapter.retry(failed)

    assert caught.value.maybe_sent is True
    adapter.close()


# --- helpers --------------------------------------------------------------------------------


def _find(adapter: ProviderAdapter, reference: str) -> ProviderStatus | None:
    """find_by_reference, read again while the provider cannot answer yet."""
    try:
        return adapter.find_by_reference(reference, STARTED)
    except ProviderTransientError:
        return None


def _sign(body: bytes) -> str:
    return hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
