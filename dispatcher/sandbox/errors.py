"""Error answers in each provider's own shape, and the fault answers built on them."""

from __future__ import annotations

import asyncio
import secrets
from http import HTTPStatus
from typing import Any

from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from dispatcher.providers import faxplus_api, interfax_api, optum_api
from dispatcher.sandbox.faults import FaultConfig, Faults

__all__ = [
    "CONTROL_KEY",
    "Answer",
    "Dropped",
    "before_accept",
    "fault_response",
    "faxplus_error",
    "interfax_error",
    "optum_problem",
    "provider_error",
    "provider_of",
]

CONTROL_KEY = "sandbox.control"
_RFC9110 = "https://tools.ietf.org/html/rfc9110#section-"
_PROBLEM_TYPES = {
    400: "15.5.1",
    401: "15.5.2",
    403: "15.5.4",
    404: "15.5.5",
    405: "15.5.6",
    409: "15.5.10",
    413: "15.5.14",
    415: "15.5.16",
    500: "15.6.1",
    502: "15.6.3",
    503: "15.6.4",
    504: "15.6.5",
}
_FAXPLUS_CODES = {
    401: faxplus_api.ERROR_INVALID_TOKEN,
    404: faxplus_api.ERROR_NOT_FOUND,
    429: faxplus_api.ERROR_RATE_LIMITED,
}
_INTERFAX_CODES = {
    401: interfax_api.ERROR_AUTHENTICATION,
    404: interfax_api.ERROR_NOT_FOUND,
    429: interfax_api.ERROR_TOO_MANY_REQUESTS,
}


def provider_of(path: str) -> str | None:
    """Which provider a request path belongs to, from its prefix."""
    for provider in ("faxplus", "interfax", "optum"):
        if path == f"/{provider}" or path.startswith(f"/{provider}/"):
            return provider
    return None


def faxplus_error(
    status: int, error: str, description: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": error, "description": description}, status, headers)


def interfax_error(
    status: int,
    code: int,
    message: str,
    more_info: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """InterFAX errors; the recordings serve them as ``text/json``."""
    body = {"code": code, "message": message, "moreInfo": more_info}
    return JSONResponse(body, status, headers, media_type="text/json")


def optum_problem(
    status: int,
    detail: str,
    errors: dict[str, list[str]] | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    """An RFC 9110 ProblemDetails body, as the proposed Optum error shape."""
    section = _PROBLEM_TYPES.get(status)
    body: dict[str, Any] = {
        "type": _RFC9110 + section if section else "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "traceId": f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-00",
        **extra,
    }
    if errors:
        body["errors"] = errors
    return JSONResponse(body, status, headers, media_type=optum_api.PROBLEM_CONTENT_TYPE)


def provider_error(
    provider: str | None, status: int, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    """A generic error (fault, unknown route) in the shape of the provider it is for."""
    if provider == "faxplus":
        code = _FAXPLUS_CODES.get(status, "bad_request" if status < 500 else "server_error")
        return faxplus_error(status, code, message, headers)
    if provider == "interfax":
        code = _INTERFAX_CODES.get(status, interfax_api.ERROR_INTERNAL)
        return interfax_error(status, code, HTTPStatus(status).phrase, message, headers)
    if provider == "optum":
        return optum_problem(status, message, headers=headers)
    return JSONResponse({"detail": message}, status, headers)


class Dropped(Response):
    """Send nothing and ask ``SandboxApp`` to close the connection: a dropped connection."""

    def __init__(self) -> None:
        super().__init__(status_code=599)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope[CONTROL_KEY]["drop"] = True


async def fault_response(provider: str, kind: str, config: FaultConfig) -> Response:
    """What a client sees for a fault: an error, a hang then a drop, or a drop."""
    if kind == "5xx":
        return provider_error(provider, config.error_status, "Injected server error.")
    if kind == "429":
        retry_after = {"Retry-After": f"{config.retry_after:g}"}
        return provider_error(provider, 429, "Injected rate limit.", retry_after)
    if kind == "timeout":
        await asyncio.sleep(config.timeout_seconds)
    return Dropped()


async def before_accept(faults: Faults, provider: str, numbers: list[str]) -> Response | None:
    """The send faults that come before accepting: a refusal to answer with, or a late accept.

    A slow accept sleeps here and then lets the handler accept: the sleep is not cut short when
    the client hangs up (uvicorn does not cancel a handler on disconnect, and a reply sent to a
    closed connection is dropped), so the fax is sent although its client saw a timeout.
    """
    for number in numbers:
        kind = faults.for_send(provider, number)
        if kind:
            return await fault_response(provider, kind, faults.config)
    delay = faults.slow_accept(provider, numbers)
    if delay:
        await asyncio.sleep(delay)
    return None


class Answer(Exception):  # noqa: N818 - it is an answer, not a failure
    """Raised from anywhere in a handler to send ``response`` as the reply."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status_code)
        self.response = response
