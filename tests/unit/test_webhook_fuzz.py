"""Webhook parsers under fuzzing: whatever arrives, a parser returns statuses or raises
``ValidationError``, never anything else (which would be a 500 at the receiver)."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from dispatcher.errors import ValidationError
from dispatcher.providers.base import ProviderAdapter, parse_count, parse_number
from dispatcher.providers.faxplus.adapter import FaxPlusAdapter
from dispatcher.providers.faxplus.settings import FaxPlusSettings
from dispatcher.providers.interfax.adapter import InterFaxAdapter
from dispatcher.providers.interfax.settings import InterFaxSettings
from dispatcher.providers.optum.adapter import OptumAdapter
from dispatcher.providers.optum.settings import OptumSettings

SECRET = "fuzz-secret"
ADAPTERS: dict[str, ProviderAdapter] = {
    "faxplus": FaxPlusAdapter(FaxPlusSettings(token=SecretStr("t"))),
    "interfax": InterFaxAdapter(InterFaxSettings(username="u", password=SecretStr("p"))),
    "optum": OptumAdapter(
        OptumSettings(client_id="c", client_secret=SecretStr("s"), webhook_secret=SecretStr(SECRET))
    ),
}
SIGNATURE = "X-Optum-Webhook-Callback-Hmac-Signature"

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=20,
)
fax_like = st.fixed_dictionaries(
    {},
    optional={
        "hook": st.dictionaries(st.sampled_from(["id", "event", "event_time"]), json_values),
        "data": st.dictionaries(
            st.sampled_from(
                [
                    "id",
                    "status",
                    "pages",
                    "cost",
                    "faxId",
                    "faxStatus",
                    "failedReason",
                    "updatedOn",
                    "to",
                    "from",
                ]
            ),
            json_values,
        ),
        "causationId": json_values,
        "type": json_values,
    },
)
bodies = (
    st.binary(max_size=300)
    | json_values.map(lambda v: json.dumps(v).encode())
    | fax_like.map(lambda v: json.dumps(v).encode())
    | st.dictionaries(
        st.sampled_from(["TransactionID", "Status", "PagesSent", "Duration", "CompletionTime"]),
        st.text(max_size=12),
    ).map(lambda form: "&".join(f"{k}={v}" for k, v in form.items()).encode())
)


def _headers(provider: str, body: bytes, signed: bool) -> dict[str, str]:
    if provider == "optum" and signed:
        return {SIGNATURE: hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()}
    return {"Content-Type": "application/json"}


@pytest.mark.parametrize("provider", sorted(ADAPTERS))
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=bodies, signed=st.booleans())
def test_parsers_accept_or_refuse_cleanly(provider: str, body: bytes, signed: bool) -> None:
    adapter = ADAPTERS[provider]
    try:
        statuses = adapter.parse_webhook(_headers(provider, body, signed), body).statuses
    except ValidationError:
        return
    for status in statuses:
        assert isinstance(status.fax_id, str) and status.fax_id
        assert isinstance(status.code, str) and status.code


def test_an_unsigned_optum_event_is_refused_even_when_well_formed() -> None:
    body = json.dumps(
        {"causationId": "e1", "data": {"faxId": "f1", "faxStatus": "FaxSent"}}
    ).encode()
    with pytest.raises(ValidationError, match="signature"):
        ADAPTERS["optum"].parse_webhook({}, body)
    signed = ADAPTERS["optum"].parse_webhook(_headers("optum", body, True), body)
    assert [s.code for s in signed.statuses] == ["FaxSent"]


def test_a_signed_optum_event_without_its_id_is_refused() -> None:
    body = json.dumps({"data": {"faxId": "f1", "faxStatus": "FaxSent"}}).encode()
    with pytest.raises(ValidationError) as caught:
        ADAPTERS["optum"].parse_webhook(_headers("optum", body, True), body)
    assert caught.value.field == "causationId"


@pytest.mark.parametrize("value", ["INF", "-inf", "NaN", 1e400, float("nan")])
def test_numbers_that_are_not_finite_read_as_missing(value: object) -> None:
    # Found by the fuzz above: an InterFAX callback with status=INF crashed the parser.
    assert parse_number(value) is None
    assert parse_count(value) is None


@pytest.mark.parametrize(("value", "count"), [("3", 3), (2.0, 2), (" 7 ", 7), ("x", None)])
def test_counts_read_numbers_and_numeric_strings(value: object, count: int | None) -> None:
    assert parse_count(value) == count
