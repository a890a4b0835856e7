"""The one boundary where httpx exceptions and HTTP error statuses become dispatcher errors.

Every adapter sends through ``ProviderHttp.request``; nothing above ``dispatcher.providers``
ever sees an ``httpx`` exception. Mapping (``kind`` is what the catalogue classifies):

    httpx.ConnectError, ConnectTimeout, PoolTimeout  ProviderTransientError/ProviderTimeout,
                                                     never sent (``maybe_sent`` False)
    httpx.TimeoutException                           ProviderTimeout "timeout"
    any other httpx.TransportError                   ProviderTransientError "protocol"
    5xx                                              ProviderTransientError "http_<status>"
    429                                              ProviderRateLimited (Retry-After)
    401, 403                                         ProviderAuthError "http_401"/"http_403"
    other 4xx                                        ProviderRejected "http_<status>", the
                                                     provider's own message
    2xx whose JSON cannot be read                    ProviderTransientError "protocol"
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Collection, Generator, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import certifi
import httpx
from pydantic import SecretStr

from dispatcher.errors import (
    ProviderAuthError,
    ProviderError,
    ProviderRateLimited,
    ProviderRejected,
    ProviderTimeout,
    ProviderTransientError,
)
from dispatcher.providers.base import ProviderAdapter, default_timeout

__all__ = [
    "BearerAuth",
    "HttpAdapter",
    "ProviderHttp",
    "error_for_response",
    "parse_retry_after",
    "provider_message",
    "translate_transport_errors",
]

#: Keys of a provider's error body, most specific first: FAX.PLUS ``error``/``description``,
#: InterFAX ``code``/``message``/``moreInfo``, Optum ProblemDetails ``title``/``detail``.
_ERROR_CODE_KEYS = ("error", "code", "title")
_ERROR_TEXT_KEYS = ("description", "message", "detail", "moreInfo")
_MAX_MESSAGE = 300

#: Failures that happen before the request leaves this process: the provider never saw it.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
_UNREADABLE = object()


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP date); None if absent."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def provider_message(response: httpx.Response) -> str:
    """The provider's own words from an error body, whatever its shape; never request data."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        code = next((str(body[k]) for k in _ERROR_CODE_KEYS if body.get(k) not in (None, "")), "")
        texts = [str(body[k]) for k in _ERROR_TEXT_KEYS if body.get(k) not in (None, "")]
        text = "; ".join(dict.fromkeys(texts))
        message = f"{code}: {text}" if code and text else code or text
    else:
        message = response.text.strip()
    return (message or response.reason_phrase or f"HTTP {response.status_code}")[:_MAX_MESSAGE]


def error_for_response(provider: str, response: httpx.Response) -> ProviderError:
    """The dispatcher error for a non-2xx answer."""
    status = response.status_code
    kind = f"http_{status}"
    message = provider_message(response)
    if status == 429:
        return ProviderRateLimited(
            provider, parse_retry_after(response.headers.get("Retry-After")), message
        )
    if status >= 500:
        return ProviderTransientError(provider, kind, message, status_code=status)
    if status in (401, 403):
        return ProviderAuthError(provider, kind, message, status_code=status)
    return ProviderRejected(provider, kind, message, status_code=status)


def _transport_error(provider: str, exc: httpx.TransportError, where: str) -> ProviderError:
    message = f"{where}: {type(exc).__name__}: {exc}"[:_MAX_MESSAGE]
    if isinstance(exc, httpx.ConnectError):
        error: ProviderError = ProviderTransientError(provider, "connect", message)
    elif isinstance(exc, httpx.TimeoutException):
        error = ProviderTimeout(provider, "timeout", message)
    else:
        error = ProviderTransientError(provider, "protocol", message)
    if isinstance(exc, _NOT_SENT):
        error.maybe_sent = False
    return error


@contextmanager
def translate_transport_errors(provider: str, where: str = "request") -> Iterator[None]:
    """Re-raise any httpx error inside the block as the matching ``ProviderError``."""
    try:
        yield
    except httpx.TransportError as exc:
        raise _transport_error(provider, exc, where) from exc
    except httpx.HTTPError as exc:  # InvalidURL, DecodingError, TooManyRedirects, ...
        raise ProviderTransientError(provider, "protocol", f"{where}: {exc}") from exc


class ProviderHttp:
    """The pooled ``httpx`` clients of one provider, and the error boundary around them.

    Each thread gets its own client: a thread waits on one call at a time, so its pool
    holds one connection, and httpcore, which scans every connection of a pool on every
    request (twice, and for each idle one again), never sees more. With one client shared
    by fifty send threads that scan cost more than the call. The clients share one TLS
    context (loading the CA bundle is the costly part of a client).

    Paths are joined to ``base_url`` here, and auth and headers go on every call, so an
    injected ``client`` (or ``transport``), the test seam, brings only timeouts and a pool;
    an injected client serves every thread.
    """

    def __init__(
        self,
        provider: str,
        base_url: str,
        *,
        auth: httpx.Auth | None = None,
        headers: dict[str, str] | None = None,
        client: httpx.Client | None = None,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.provider = provider
        self._timeout = default_timeout(timeout)
        self.base_url = base_url.rstrip("/")
        self._auth = auth
        self._headers = headers or {}
        self._shared = client
        self._transport = transport
        self._tls: ssl.SSLContext | None = None
        self._local = threading.local()
        self._clients: list[httpx.Client] = []
        self._lock = threading.Lock()

    @property
    def client(self) -> httpx.Client:
        """The calling thread's client."""
        if self._shared is not None:
            return self._shared
        client: httpx.Client | None = getattr(self._local, "client", None)
        if client is None:
            with self._lock:
                if self._tls is None:
                    self._tls = ssl.create_default_context(cafile=certifi.where())
                client = httpx.Client(
                    timeout=self._timeout, transport=self._transport, verify=self._tls
                )
                self._clients.append(client)
            self._local.client = client
        return client

    def request(
        self,
        method: str,
        url: str,
        *,
        allow: Collection[int] = (),
        sending: bool = False,
        job_id: str | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """Send one request; a 2xx (or a status in ``allow``) comes back, anything else raises.

        ``sending`` marks the call that creates a fax: only its failures may have sent one,
        so only they keep ``maybe_sent`` (which makes the caller reconcile by reference).
        """
        headers = {**self._headers, **kwargs.pop("headers", {})}
        auth = self._auth or httpx.USE_CLIENT_DEFAULT
        try:
            with translate_transport_errors(self.provider, f"{method} {url}"):
                response = self.client.request(
                    method, self.base_url + url, headers=headers, auth=auth, **kwargs
                )
            if not response.is_success and response.status_code not in allow:
                raise error_for_response(self.provider, response)
        except ProviderError as error:
            error.job_id = error.job_id or job_id
            if not sending:
                error.maybe_sent = False
            raise
        return response

    def json(
        self, response: httpx.Response, expect: type = object, *, sending: bool = False
    ) -> Any:
        """A 2xx body as JSON of type ``expect``; anything else is a garbled answer."""
        try:
            body = response.json()
        except (ValueError, UnicodeDecodeError):
            body = _UNREADABLE
        if isinstance(body, expect) and body is not _UNREADABLE:
            return body
        error = ProviderTransientError(
            self.provider,
            "protocol",
            f"{response.request.method} {response.request.url.path}: "
            f"expected a JSON {expect.__name__}",
            status_code=response.status_code,
        )
        error.maybe_sent = sending
        raise error

    def close(self) -> None:
        if self._shared is not None:
            self._shared.close()
        with self._lock:
            for client in self._clients:
                client.close()
            self._clients.clear()
        self._local = threading.local()


class BearerAuth(httpx.Auth):
    """Adds ``Authorization: Bearer`` at send time, so the token stays inside its SecretStr."""

    def __init__(self, token: SecretStr) -> None:
        self._token = token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self._token.get_secret_value()}"
        yield request


class HttpAdapter(ProviderAdapter):
    """An adapter over one ``ProviderHttp``: its repr names only provider and URL."""

    _http: ProviderHttp

    def __repr__(self) -> str:
        return f"{type(self).__name__}(provider={self.name!r}, base_url={self._http.base_url!r})"

    def close(self) -> None:
        self._http.close()
