"""Optum fax adapter: OAuth2 client credentials, a tenant header, multipart send.

Most request and response names are proposals (``optum_api``). A failed fax's code is
``FaxFailed/<failedReason>`` (``FaxFailed/Busy``) so the catalogue can tell the reasons apart.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable, Generator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import httpx
from pydantic import SecretStr

from dispatcher.clock import utcnow
from dispatcher.errors import ConfigurationError, ProviderTransientError, ValidationError
from dispatcher.providers._http import HttpAdapter, ProviderHttp, error_for_response
from dispatcher.providers.base import (
    LOOKBACK_MARGIN,
    Callback,
    ManualRetry,
    ProviderStatus,
    SendRequest,
    batches,
    fill_missing,
    lookback_start,
    parse_count,
    parse_time,
    webhook_json,
)
from dispatcher.providers.optum import api
from dispatcher.providers.optum.settings import OptumSettings

__all__ = ["ClientCredentials", "OptumAdapter"]

#: Refresh the token this long before it expires, so no call carries a dying token.
_EXPIRY_MARGIN = 60.0


class ClientCredentials(httpx.Auth):
    """A bearer token from the client-credentials grant: cached, refreshed once on 401."""

    requires_response_body = True

    def __init__(
        self,
        provider: str,
        token_url: str,
        client_id: str,
        client_secret: SecretStr,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._provider = provider
        self._token_url = token_url
        self._client_id = client_id
        self._client_secret = client_secret
        self._clock = clock
        self._lock = threading.Lock()
        self._token: SecretStr | None = None
        self._expires_at = 0.0

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        with self._lock:
            if self._token is None or self._clock() >= self._expires_at:
                self._store((yield self._token_request()))
            token = self._token
        response = yield self._authorized(request, token)
        if response.status_code == 401:
            with self._lock:
                if self._token is token:
                    self._store((yield self._token_request()))
                token = self._token
            yield self._authorized(request, token)

    def _token_request(self) -> httpx.Request:
        form = {
            "grant_type": "client_credentials",
            "client_id": self._client_id,
            "client_secret": self._client_secret.get_secret_value(),
        }
        return httpx.Request("POST", self._token_url, data=form)

    def _store(self, response: httpx.Response) -> None:
        if not response.is_success:
            raise error_for_response(self._provider, response)
        try:
            body = response.json()
            token = body["access_token"]
        except (ValueError, KeyError, TypeError) as exc:
            raise ProviderTransientError(
                self._provider, "protocol", "the token endpoint gave no access_token"
            ) from exc
        lifetime = float(body.get("expires_in") or api.TOKEN_LIFETIME)
        self._token = SecretStr(str(token))
        self._expires_at = self._clock() + max(0.0, lifetime - _EXPIRY_MARGIN)

    @staticmethod
    def _authorized(request: httpx.Request, token: SecretStr | None) -> httpx.Request:
        if token is not None:
            request.headers["Authorization"] = f"Bearer {token.get_secret_value()}"
        return request


class OptumAdapter(HttpAdapter):
    """Optum fax management; also exposes Optum's own retry, hold, revive and attempts."""

    name = "optum"

    def __init__(
        self,
        settings: OptumSettings,
        *,
        client: httpx.Client | None = None,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 30.0,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        if not settings.client_id or settings.client_secret is None:
            raise ConfigurationError("optum: client_id and client_secret are required")
        token_url = settings.token_url or settings.base_url.rstrip("/") + api.TOKEN_PATH
        self._http = ProviderHttp(
            self.name,
            settings.base_url,
            auth=ClientCredentials(
                self.name, token_url, settings.client_id, settings.client_secret
            ),
            headers={api.TENANT_HEADER: settings.tenant_id},
            client=client,
            transport=transport,
            timeout=timeout,
        )
        self._webhook_secret = settings.webhook_secret
        #: today's date for a search by sent date comes from here (tests move it)
        self.clock = clock

    def send(self, request: SendRequest) -> str:
        metadata = {**request.metadata, api.METADATA_REFERENCE_KEY: request.reference}
        response = self._http.request(
            "POST",
            api.SEND_PATH,
            data={api.PART_FAX_NUMBER: request.to, api.PART_METADATA: json.dumps(metadata)},
            files=[
                (api.PART_DOCUMENT, (d.name, d.content, d.mime_type)) for d in request.documents
            ],
            sending=True,
            job_id=request.job_id,
        )
        fax_id = self._http.json(response, dict, sending=True).get(api.FIELD_FAX_ID)
        if not fax_id:
            raise ProviderTransientError(
                self.name, "protocol", "the fax was accepted without a faxId"
            )
        return str(fax_id)

    def status(self, fax_id: str) -> ProviderStatus:
        return self._fax("GET", api.FAX_PATH, fax_id)

    def statuses(self, fax_ids: Sequence[str]) -> dict[str, ProviderStatus]:
        """Search with comma-separated ids, one call per batch."""
        found: dict[str, ProviderStatus] = {}
        for batch in batches(fax_ids, api.SEARCH_BATCH_SIZE):
            found |= {s.fax_id: s for s in map(_status, self._search(api.SEARCH_FAX_ID, batch))}
        return fill_missing(found, fax_ids, self.status)

    def cancel(self, fax_id: str) -> None:
        self._http.request("DELETE", api.FAX_PATH.format(fax_id=fax_id))

    def find_by_reference(self, reference: str, since: datetime) -> ProviderStatus | None:
        """Search each day's faxes (UTC), newest day first, back to the attempt's start,
        for our reference in the metadata: a lookup days later still finds the send."""
        first = lookback_start(since).date()
        last = (self.clock() + LOOKBACK_MARGIN).date()
        for day in (last - timedelta(days=n) for n in range((last - first).days + 1)):
            for fax in self._search(api.SEARCH_FAX_SENT_DATE, [day.isoformat()]):
                metadata = fax.get(api.FIELD_METADATA)
                if isinstance(metadata, dict) and (
                    metadata.get(api.METADATA_REFERENCE_KEY) == reference
                ):
                    return _status(fax)
        return None

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> Callback:
        """A signed CloudEvents envelope whose ``data`` is the fax object; the envelope's
        ``causationId`` is the event's own id and ``time`` when Optum made it."""
        self._verify_signature(headers, body)
        envelope = webhook_json(body)
        data = envelope.get("data")
        if (
            not isinstance(data, dict)
            or not data.get(api.FIELD_FAX_ID)
            or not data.get(api.FIELD_STATUS)
        ):
            raise ValidationError("body", "expected an Optum event with data.faxId, data.faxStatus")
        event_id = envelope.get("causationId")
        if not isinstance(event_id, str) or not event_id:
            raise ValidationError("causationId", "an Optum event needs its causationId")
        return Callback([_status(data)], event_id, parse_time(envelope.get("time")))

    has_manual_retry = True

    def retry(self, fax_id: str) -> None:
        """Optum's single manual retry of a failed fax. It makes a transmission, so its
        failures may have reached Optum (a gateway's 5xx, a timeout), like a send's."""
        self._fax("PUT", api.RETRY_PATH, fax_id, sending=True)

    def manual_retry(self, fax_id: str) -> ManualRetry:
        """From Optum's list of the fax's attempts: its manual one, and whether it ended."""
        manual = [a for a in self.attempts(fax_id) if a.get(api.FIELD_IS_MANUAL_RETRY) is True]
        if not manual:
            return ManualRetry.NONE
        running = manual[-1].get(api.FIELD_ATTEMPT_STATUS) == api.ATTEMPT_IN_PROGRESS
        return ManualRetry.RUNNING if running else ManualRetry.FINISHED

    def hold(self, fax_id: str) -> ProviderStatus:
        """Pause a fax between attempts."""
        return self._fax("PUT", api.HOLD_PATH, fax_id)

    def revive(self, fax_id: str) -> ProviderStatus:
        """Put a held fax back in the queue."""
        return self._fax("PUT", api.REVIVE_PATH, fax_id)

    def attempts(self, fax_id: str) -> list[dict[str, Any]]:
        """Each transmission attempt Optum made, in order, as Optum describes it."""
        response = self._http.request("GET", api.ATTEMPTS_PATH.format(fax_id=fax_id))
        return [a for a in self._http.json(response, list) if isinstance(a, dict)]

    def _fax(
        self, method: str, template: str, fax_id: str, *, sending: bool = False
    ) -> ProviderStatus:
        response = self._http.request(method, template.format(fax_id=fax_id), sending=sending)
        return _status(self._http.json(response, dict, sending=sending))

    def _search(self, field: str, values: Sequence[str]) -> list[dict[str, Any]]:
        response = self._http.request("POST", api.SEARCH_PATH, json={field: ",".join(values)})
        body = self._http.json(response)
        if isinstance(body, dict):  # tolerate a wrapper object: its first list is the result
            body = next((v for v in body.values() if isinstance(v, list)), [])
        if not isinstance(body, list):
            raise ProviderTransientError(self.name, "protocol", "search gave no list of faxes")
        return [f for f in body if isinstance(f, dict) and f.get(api.FIELD_FAX_ID)]

    def _verify_signature(self, headers: Mapping[str, str], body: bytes) -> None:
        """Lower-case hex HMAC-SHA256 of the raw body, compared in constant time."""
        if self._webhook_secret is None:
            raise ValidationError("signature", "no Optum webhook secret is configured")
        given = next(
            (v for k, v in headers.items() if k.lower() == api.SIGNATURE_HEADER.lower()), ""
        )
        secret = self._webhook_secret.get_secret_value().encode()
        expected = hmac.new(secret, body, hashlib.sha256).hexdigest()
        if not given or not hmac.compare_digest(expected, given.strip().lower()):
            raise ValidationError("signature", "missing or invalid webhook signature")


def _status(fax: Mapping[str, Any]) -> ProviderStatus:
    status = str(fax.get(api.FIELD_STATUS) or "")
    if not fax.get(api.FIELD_FAX_ID) or not status:
        raise ProviderTransientError("optum", "protocol", "a fax object without faxId or faxStatus")
    reason = fax.get(api.FIELD_FAILED_REASON) or None
    metadata = fax.get(api.FIELD_METADATA)
    return ProviderStatus(
        fax_id=str(fax[api.FIELD_FAX_ID]),
        code=f"{status}/{reason}" if status == api.STATUS_FAILED and reason else status,
        pages_sent=parse_count(fax.get(api.FIELD_PAGES_SENT)),
        started_at=parse_time(fax.get(api.FIELD_CREATED_ON)),
        finished_at=(
            parse_time(fax.get(api.FIELD_UPDATED_ON)) if status in api.TERMINAL_STATUSES else None
        ),
        reference=metadata.get(api.METADATA_REFERENCE_KEY) if isinstance(metadata, dict) else None,
        failed_reason=str(reason) if reason else None,
        raw=fax,
    )
