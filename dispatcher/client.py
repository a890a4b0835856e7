"""The HTTP client of the fax-dispatcher API, for services on any host.

Usage::

    from dispatcher.client import FaxClient

    with FaxClient("https://fax.internal", token) as fax:
        job = fax.submit("+12025550100", [("invoice.pdf", pdf_bytes)])
        fax.get(job.id).state

``AsyncFaxClient`` has the same methods, awaited. Results are typed (``Fax``,
``Attempt``, ``Event``, ``FaxPage``, ``Batch``); every API error is one exception class
(``FaxApiError`` and its subclasses).

Safe retries: each submit carries an idempotency key (the caller's, or one made per
call) and sends it again on its own retries, so a submit whose answer was lost never
makes a second fax. Connection errors, timeouts, 429 and 5xx are retried with backoff
for requests that are safe to repeat (reads, and submits); an action (cancel, hold,
resume, retry) is retried only when it surely never reached the server.

Code on a host with database access may submit in-process instead:
``dispatcher.inprocess``.
"""

from __future__ import annotations

import asyncio
import builtins
import csv
import hashlib
import io
import json
import random
import time
import uuid
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import Any, Self, TypedDict, TypeVar, Unpack

import httpx
from pydantic import TypeAdapter

from dispatcher.schemas import (
    Attempt,
    Batch,
    Delivery,
    DeliveryPage,
    Endpoint,
    EndpointCreated,
    Event,
    Fax,
    FaxPage,
)

__all__ = [
    "AsyncFaxClient",
    "Conflict",
    "FaxApiError",
    "FaxClient",
    "FaxConnectionError",
    "FaxRequest",
    "Filters",
    "Forbidden",
    "InvalidRequest",
    "NotFound",
    "RateLimited",
    "Retries",
    "ServerError",
    "Unauthorized",
]

T = TypeVar("T")
Documents = Sequence[tuple[str, bytes]]


class FaxApiError(Exception):
    """The API refused or failed a request; ``error`` is its kind, ``field`` the field
    at fault when it names one."""

    def __init__(self, status: int, error: str, message: str, field: str | None = None) -> None:
        self.status = status
        self.error = error
        self.message = message
        self.field = field
        super().__init__(f"{status} {error}: {message}")


class InvalidRequest(FaxApiError):
    """400/422: bad input; nothing was written. ``field`` names it."""


class Unauthorized(FaxApiError):
    """401: no token, or one the API does not know."""


class Forbidden(FaxApiError):
    """403: the token may not do this."""


class NotFound(FaxApiError):
    """404: no such fax or batch (for this token)."""


class Conflict(FaxApiError):
    """409: the fax's state does not allow the action, or a key was reused."""


class RateLimited(FaxApiError):
    """429: slow down; ``retry_after`` seconds."""

    def __init__(self, *args: Any, retry_after: float | None = None) -> None:
        super().__init__(*args)
        self.retry_after = retry_after


class ServerError(FaxApiError):
    """5xx: the service failed; the request may be tried again later."""


class FaxConnectionError(FaxApiError):
    """The API could not be reached, after the retries."""

    def __init__(self, message: str) -> None:
        super().__init__(0, "connection", message)


_ERRORS: dict[int, type[FaxApiError]] = {
    400: InvalidRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    422: InvalidRequest,
    429: RateLimited,
}


@dataclass(frozen=True, slots=True)
class FaxRequest:
    """One fax of a ``submit_many``: its row in the batch upload."""

    to: str
    documents: Documents
    provider: str | None = None
    key: str | None = None
    send_at: datetime | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Call:
    """One API call: the request, whether it may be sent again, and how to read the
    answer."""

    request: httpx.Request
    repeatable: bool
    parse: TypeAdapter[Any]


@dataclass(frozen=True, slots=True)
class Retries:
    """How many times a call is sent again, and the backoff between tries."""

    attempts: int = 4
    base: float = 0.5
    cap: float = 8.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        if retry_after is not None:
            return min(retry_after, self.cap)
        backoff: float = min(self.cap, self.base * 2**attempt)
        return backoff * random.uniform(0.5, 1.0)


#: What the exchange yields: a request to send, or seconds to sleep.
_Step = httpx.Request | float


def _exchange(call: _Call, retries: Retries) -> Generator[_Step, httpx.Response | None, Any]:
    """The whole life of a call, without I/O: it yields requests to send and seconds to
    wait, and gets back each response (or an exception thrown in); ``FaxClient`` and
    ``AsyncFaxClient`` only run it. Returns the parsed answer, or raises."""
    for attempt in range(retries.attempts):
        last = attempt == retries.attempts - 1
        try:
            response = yield call.request
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:  # never reached the server
            if last:
                raise FaxConnectionError(f"{call.request.url.host}: {exc}") from exc
            yield retries.delay(attempt)
            continue
        except httpx.TransportError as exc:  # it may have: repeat only what may be repeated
            if last or not call.repeatable:
                raise FaxConnectionError(f"{call.request.url.host}: {exc}") from exc
            yield retries.delay(attempt)
            continue
        assert response is not None
        if response.is_success:
            return call.parse.validate_python(response.json())
        error = _error(response)
        retryable = response.status_code == 429 or response.status_code >= 500
        if last or not retryable or not call.repeatable:
            raise error
        yield retries.delay(attempt, getattr(error, "retry_after", None))
    raise AssertionError("unreachable")  # pragma: no cover


def _error(response: httpx.Response) -> FaxApiError:
    try:
        body = response.json()
    except ValueError:
        body = {}
    body = body if isinstance(body, dict) else {}
    status = response.status_code
    args = (
        status,
        str(body.get("error") or "error"),
        str(body.get("message") or response.reason_phrase),
        body.get("field"),
    )
    kind = _ERRORS.get(status, ServerError if status >= 500 else FaxApiError)
    if kind is RateLimited:
        after = response.headers.get("Retry-After")
        return RateLimited(*args, retry_after=float(after) if after else None)
    return kind(*args)


_FAX: TypeAdapter[Fax] = TypeAdapter(Fax)
_FAXES: TypeAdapter[FaxPage] = TypeAdapter(FaxPage)
_ATTEMPTS: TypeAdapter[list[Attempt]] = TypeAdapter(list[Attempt])
_EVENTS: TypeAdapter[list[Event]] = TypeAdapter(list[Event])
_BATCH: TypeAdapter[Batch] = TypeAdapter(Batch)
_ENDPOINT: TypeAdapter[EndpointCreated] = TypeAdapter(EndpointCreated)
_ENDPOINTS: TypeAdapter[list[Endpoint]] = TypeAdapter(list[Endpoint])
_DELIVERY: TypeAdapter[Delivery] = TypeAdapter(Delivery)
_DELIVERIES: TypeAdapter[DeliveryPage] = TypeAdapter(DeliveryPage)


class Filters(TypedDict, total=False):
    """What ``list`` narrows the caller's faxes to; all given must match."""

    state: str
    provider: str
    priority: str
    to: str
    idempotency_key: str
    batch: str
    metadata: Mapping[str, str]
    since: datetime
    until: datetime


def _form(values: Mapping[str, Any]) -> dict[str, str]:
    """Form fields, leaving out the ones not given."""
    out: dict[str, str] = {}
    for name, value in values.items():
        if value is None or value == {}:
            continue
        if isinstance(value, datetime):
            out[name] = value.isoformat()
        elif isinstance(value, Mapping):
            out[name] = json.dumps(dict(value))
        else:
            out[name] = str(value)
    return out


class _Calls:
    """Builds each call of the API; the clients below only run them."""

    def __init__(self, base_url: str, token: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {token}"}

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Request:
        headers = {**self.headers, **kwargs.pop("headers", {})}
        return httpx.Request(method, f"{self.base_url}{path}", headers=headers, **kwargs)

    def submit(
        self,
        to: str,
        documents: Documents,
        *,
        provider: str | None,
        idempotency_key: str | None,
        send_at: datetime | None,
        deadline: datetime | None,
        metadata: Mapping[str, str] | None,
        options: Mapping[str, Any] | None,
        priority: str | None,
        callback_url: str | None,
    ) -> _Call:
        fields = {
            "to": to,
            "provider": provider,
            "send_at": send_at,
            "deadline": deadline,
            "metadata": metadata or {},
            "options": options or {},
            "priority": priority,
            "callback_url": callback_url,
        }
        request = self._request(
            "POST",
            "/v1/faxes",
            data=_form(fields),
            files=[("documents", (name, content)) for name, content in documents],
            headers={"Idempotency-Key": idempotency_key or f"client:{uuid.uuid4().hex}"},
        )
        return _Call(request, True, _FAX)

    def submit_many(
        self,
        requests: Sequence[FaxRequest],
        *,
        name: str,
        batch: str | None,
        first_row: int,
    ) -> _Call:
        rows = io.StringIO()
        meta = sorted({key for r in requests for key in r.metadata})
        writer = csv.writer(rows)
        writer.writerow(
            ["key", "to", "provider", "document", "send_at", *(f"meta_{m}" for m in meta)]
        )
        files: dict[str, bytes] = {}
        for request in requests:
            names = []
            for doc_name, content in request.documents:
                # One upload per distinct document, however many faxes send it.
                unique = f"{hashlib.sha256(content).hexdigest()[:16]}-{doc_name}"
                files.setdefault(unique, content)
                names.append(unique)
            if len(names) != 1:
                raise ValueError("submit_many sends one document per fax")
            writer.writerow(
                [
                    request.key or "",
                    request.to,
                    request.provider or "",
                    names[0],
                    request.send_at.isoformat() if request.send_at else "",
                    *(request.metadata.get(m, "") for m in meta),
                ]
            )
        upload = self._request(
            "POST",
            "/v1/batches",
            data=_form({"batch": batch, "first_row": first_row}),
            files=[
                ("rows", (name, rows.getvalue().encode())),
                *(("documents", (doc, content)) for doc, content in files.items()),
            ],
        )
        # Keyed rows (by their key, else their content): sending it again adds nothing.
        return _Call(upload, True, _BATCH)

    def upload_batch(
        self,
        rows: bytes,
        name: str,
        documents: Mapping[str, bytes],
        *,
        provider: str | None,
        default_document: str | None,
        batch: str | None,
        first_row: int,
    ) -> _Call:
        fields = {
            "provider": provider,
            "document": default_document,
            "batch": batch,
            "first_row": first_row,
        }
        request = self._request(
            "POST",
            "/v1/batches",
            data=_form(fields),
            files=[
                ("rows", (name, rows)),
                *(("documents", (doc, content)) for doc, content in documents.items()),
            ],
        )
        return _Call(request, True, _BATCH)

    def get(self, job_id: str) -> _Call:
        return _Call(self._request("GET", f"/v1/faxes/{job_id}"), True, _FAX)

    def attempts(self, job_id: str) -> _Call:
        return _Call(self._request("GET", f"/v1/faxes/{job_id}/attempts"), True, _ATTEMPTS)

    def events(self, job_id: str) -> _Call:
        return _Call(self._request("GET", f"/v1/faxes/{job_id}/events"), True, _EVENTS)

    def list(self, filters: Filters, limit: int, before: str | None) -> _Call:
        given: dict[str, Any] = dict(filters)
        pairs: Mapping[str, str] = given.pop("metadata", None) or {}
        params = [*_form({**given, "limit": limit, "before": before}).items()]
        params += [("metadata", f"{key}={value}") for key, value in pairs.items()]
        return _Call(self._request("GET", "/v1/faxes", params=params), True, _FAXES)

    def register_endpoint(self, url: str, event_types: Sequence[str] | None) -> _Call:
        body: dict[str, Any] = {"url": url}
        if event_types is not None:
            body["event_types"] = list(event_types)
        # Not repeated on a lost answer: a second endpoint would get every event twice.
        return _Call(self._request("POST", "/v1/endpoints", json=body), False, _ENDPOINT)

    def endpoints(self) -> _Call:
        return _Call(self._request("GET", "/v1/endpoints"), True, _ENDPOINTS)

    def deliveries(
        self,
        job_id: str | None,
        endpoint_id: str | None,
        state: str | None,
        limit: int,
        before: str | None,
    ) -> _Call:
        params = _form(
            {
                "job_id": job_id,
                "endpoint_id": endpoint_id,
                "state": state,
                "limit": limit,
                "before": before,
            }
        )
        return _Call(self._request("GET", "/v1/callbacks", params=params), True, _DELIVERIES)

    def redeliver(self, delivery_id: str) -> _Call:
        path = f"/v1/callbacks/{delivery_id}/redeliver"
        return _Call(self._request("POST", path), True, _DELIVERY)

    def batch(self, batch_id: str) -> _Call:
        return _Call(self._request("GET", f"/v1/batches/{batch_id}"), True, _BATCH)

    def action(self, job_id: str, name: str) -> _Call:
        return _Call(self._request("POST", f"/v1/faxes/{job_id}/{name}"), False, _FAX)

    def purge_data(self, job_id: str) -> _Call:
        return _Call(self._request("DELETE", f"/v1/faxes/{job_id}/data"), True, _FAX)


class FaxClient:
    """The API over HTTP, blocking. One instance holds one pooled connection set: share it."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: float = 30.0,
        retries: Retries = Retries(),
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._calls = _Calls(base_url, token)
        self._retries = retries
        self._http = httpx.Client(timeout=timeout, transport=transport)

    def _run(self, call: _Call) -> Any:
        exchange = _exchange(call, self._retries)
        step = next(exchange)
        while True:
            try:
                if isinstance(step, httpx.Request):
                    try:
                        response = self._http.send(step)
                    except httpx.TransportError as exc:
                        step = exchange.throw(exc)
                        continue
                    step = exchange.send(response)
                else:
                    time.sleep(step)
                    step = exchange.send(None)
            except StopIteration as done:
                return done.value

    def submit(
        self,
        to: str,
        documents: Documents,
        *,
        provider: str | None = None,
        idempotency_key: str | None = None,
        send_at: datetime | None = None,
        deadline: datetime | None = None,
        metadata: Mapping[str, str] | None = None,
        options: Mapping[str, Any] | None = None,
        priority: str | None = None,
        callback_url: str | None = None,
    ) -> Fax:
        """Submit one fax; the same ``idempotency_key`` again returns the same job."""
        call = self._calls.submit(
            to,
            documents,
            provider=provider,
            idempotency_key=idempotency_key,
            send_at=send_at,
            deadline=deadline,
            metadata=metadata,
            options=options,
            priority=priority,
            callback_url=callback_url,
        )
        result: Fax = self._run(call)
        return result

    def submit_many(
        self,
        requests: Sequence[FaxRequest],
        *,
        name: str = "client.csv",
        batch: str | None = None,
        first_row: int = 1,
    ) -> Batch:
        """Submit many faxes as one batch; rejected rows are in the answer (row 2 is the
        first request). Each is keyed by its ``key``, else its content."""
        result: Batch = self._run(
            self._calls.submit_many(requests, name=name, batch=batch, first_row=first_row)
        )
        return result

    def upload_batch(
        self,
        rows: bytes,
        name: str,
        documents: Mapping[str, bytes],
        *,
        provider: str | None = None,
        default_document: str | None = None,
        batch: str | None = None,
        first_row: int = 1,
    ) -> Batch:
        """Upload a CSV (or a part of one) and the documents it names."""
        result: Batch = self._run(
            self._calls.upload_batch(
                rows,
                name,
                documents,
                provider=provider,
                default_document=default_document,
                batch=batch,
                first_row=first_row,
            )
        )
        return result

    def get(self, job_id: str) -> Fax:
        result: Fax = self._run(self._calls.get(job_id))
        return result

    def attempts(self, job_id: str) -> list[Attempt]:
        result: list[Attempt] = self._run(self._calls.attempts(job_id))
        return result

    def events(self, job_id: str) -> list[Event]:
        result: list[Event] = self._run(self._calls.events(job_id))
        return result

    def list(
        self, *, limit: int = 50, before: str | None = None, **filters: Unpack[Filters]
    ) -> FaxPage:
        """A page of the caller's faxes, newest first, that match every filter given."""
        result: FaxPage = self._run(self._calls.list(filters, limit, before))
        return result

    def register_endpoint(
        self, url: str, event_types: Sequence[str] | None = None
    ) -> EndpointCreated:
        """Have the events of the caller's faxes posted to ``url`` (all types by default);
        the answer holds the signing secret, shown this once."""
        result: EndpointCreated = self._run(self._calls.register_endpoint(url, event_types))
        return result

    def endpoints(self) -> builtins.list[Endpoint]:
        result: builtins.list[Endpoint] = self._run(self._calls.endpoints())
        return result

    def deliveries(
        self,
        *,
        job_id: str | None = None,
        endpoint_id: str | None = None,
        state: str | None = None,
        limit: int = 50,
        before: str | None = None,
    ) -> DeliveryPage:
        """The caller's event deliveries, newest first."""
        call = self._calls.deliveries(job_id, endpoint_id, state, limit, before)
        result: DeliveryPage = self._run(call)
        return result

    def redeliver(self, delivery_id: str) -> Delivery:
        result: Delivery = self._run(self._calls.redeliver(delivery_id))
        return result

    def batch(self, batch_id: str) -> Batch:
        result: Batch = self._run(self._calls.batch(batch_id))
        return result

    def cancel(self, job_id: str) -> Fax:
        result: Fax = self._run(self._calls.action(job_id, "cancel"))
        return result

    def hold(self, job_id: str) -> Fax:
        result: Fax = self._run(self._calls.action(job_id, "hold"))
        return result

    def resume(self, job_id: str) -> Fax:
        result: Fax = self._run(self._calls.action(job_id, "resume"))
        return result

    def retry(self, job_id: str) -> Fax:
        result: Fax = self._run(self._calls.action(job_id, "retry"))
        return result

    def purge_data(self, job_id: str) -> Fax:
        """Purge an ended fax's documents, number, metadata and raw payloads now."""
        result: Fax = self._run(self._calls.purge_data(job_id))
        return result

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class AsyncFaxClient:
    """The same API as ``FaxClient``, for asyncio code: every method is awaited."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: float = 30.0,
        retries: Retries = Retries(),
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._calls = _Calls(base_url, token)
        self._retries = retries
        self._http = httpx.AsyncClient(timeout=timeout, transport=transport)

    async def _run(self, call: _Call) -> Any:
        exchange = _exchange(call, self._retries)
        step = next(exchange)
        while True:
            try:
                if isinstance(step, httpx.Request):
                    try:
                        response = await self._http.send(step)
                    except httpx.TransportError as exc:
                        step = exchange.throw(exc)
                        continue
                    step = exchange.send(response)
                else:
                    await asyncio.sleep(step)
                    step = exchange.send(None)
            except StopIteration as done:
                return done.value

    async def submit(
        self,
        to: str,
        documents: Documents,
        *,
        provider: str | None = None,
        idempotency_key: str | None = None,
        send_at: datetime | None = None,
        deadline: datetime | None = None,
        metadata: Mapping[str, str] | None = None,
        options: Mapping[str, Any] | None = None,
        priority: str | None = None,
        callback_url: str | None = None,
    ) -> Fax:
        call = self._calls.submit(
            to,
            documents,
            provider=provider,
            idempotency_key=idempotency_key,
            send_at=send_at,
            deadline=deadline,
            metadata=metadata,
            options=options,
            priority=priority,
            callback_url=callback_url,
        )
        result: Fax = await self._run(call)
        return result

    async def submit_many(
        self,
        requests: Sequence[FaxRequest],
        *,
        name: str = "client.csv",
        batch: str | None = None,
        first_row: int = 1,
    ) -> Batch:
        result: Batch = await self._run(
            self._calls.submit_many(requests, name=name, batch=batch, first_row=first_row)
        )
        return result

    async def upload_batch(
        self,
        rows: bytes,
        name: str,
        documents: Mapping[str, bytes],
        *,
        provider: str | None = None,
        default_document: str | None = None,
        batch: str | None = None,
        first_row: int = 1,
    ) -> Batch:
        result: Batch = await self._run(
            self._calls.upload_batch(
                rows,
                name,
                documents,
                provider=provider,
                default_document=default_document,
                batch=batch,
                first_row=first_row,
            )
        )
        return result

    async def get(self, job_id: str) -> Fax:
        result: Fax = await self._run(self._calls.get(job_id))
        return result

    async def attempts(self, job_id: str) -> list[Attempt]:
        result: list[Attempt] = await self._run(self._calls.attempts(job_id))
        return result

    async def events(self, job_id: str) -> list[Event]:
        result: list[Event] = await self._run(self._calls.events(job_id))
        return result

    async def list(
        self, *, limit: int = 50, before: str | None = None, **filters: Unpack[Filters]
    ) -> FaxPage:
        result: FaxPage = await self._run(self._calls.list(filters, limit, before))
        return result

    async def register_endpoint(
        self, url: str, event_types: Sequence[str] | None = None
    ) -> EndpointCreated:
        result: EndpointCreated = await self._run(self._calls.register_endpoint(url, event_types))
        return result

    async def endpoints(self) -> builtins.list[Endpoint]:
        result: builtins.list[Endpoint] = await self._run(self._calls.endpoints())
        return result

    async def deliveries(
        self,
        *,
        job_id: str | None = None,
        endpoint_id: str | None = None,
        state: str | None = None,
        limit: int = 50,
        before: str | None = None,
    ) -> DeliveryPage:
        call = self._calls.deliveries(job_id, endpoint_id, state, limit, before)
        result: DeliveryPage = await self._run(call)
        return result

    async def redeliver(self, delivery_id: str) -> Delivery:
        result: Delivery = await self._run(self._calls.redeliver(delivery_id))
        return result

    async def batch(self, batch_id: str) -> Batch:
        result: Batch = await self._run(self._calls.batch(batch_id))
        return result

    async def cancel(self, job_id: str) -> Fax:
        result: Fax = await self._run(self._calls.action(job_id, "cancel"))
        return result

    async def hold(self, job_id: str) -> Fax:
        result: Fax = await self._run(self._calls.action(job_id, "hold"))
        return result

    async def resume(self, job_id: str) -> Fax:
        result: Fax = await self._run(self._calls.action(job_id, "resume"))
        return result

    async def retry(self, job_id: str) -> Fax:
        result: Fax = await self._run(self._calls.action(job_id, "retry"))
        return result

    async def purge_data(self, job_id: str) -> Fax:
        """Purge an ended fax's documents, number, metadata and raw payloads now."""
        result: Fax = await self._run(self._calls.purge_data(job_id))
        return result

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
