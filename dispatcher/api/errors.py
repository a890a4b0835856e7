"""One JSON error shape for every failure: ``{"error": kind, "message": ...}``.

Validation failures also name the ``field``. Dispatcher errors are translated here, at
the HTTP boundary, so routes raise the domain's own exceptions. Messages never carry
secrets or request content beyond what the caller sent and needs to fix.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from dispatcher.errors import (
    ConfigurationError,
    IdempotencyConflict,
    IllegalTransition,
    NotFound,
    ProviderError,
    TooManyRequests,
    ValidationError,
)

__all__ = ["ERROR_RESPONSES", "ErrorBody", "error_response", "install"]

log = logging.getLogger(__name__)

_KINDS = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "validation",
    429: "too_many_requests",
}


class ErrorBody(BaseModel):
    """What every error answer looks like."""

    error: str
    message: str
    field: str | None = None


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody} for code in (401, 403, 404, 409, 413, 422, 429)
}


def error_response(
    status: int, kind: str, message: str, field: str | None = None, **headers: str
) -> JSONResponse:
    """The one error shape, for handlers and for middleware that answers by itself."""
    body: dict[str, Any] = {"error": kind, "message": message}
    if field is not None:
        body["field"] = field
    return JSONResponse(body, status_code=status, headers=headers or None)


async def _validation(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ValidationError)
    return error_response(422, "validation", exc.reason, exc.field)


async def _request_validation(_: Request, exc: Exception) -> JSONResponse:
    """FastAPI's own checks (missing form field, bad query value) in our shape."""
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0]
    location = [str(part) for part in first.get("loc", ())]
    field = ".".join(location[1:]) or (location[0] if location else "request")
    return error_response(422, "validation", str(first.get("msg", "invalid")), field)


async def _not_found(_: Request, exc: Exception) -> JSONResponse:
    return error_response(404, "not_found", str(exc))


async def _too_many(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, TooManyRequests)
    wait = str(max(1, math.ceil(exc.retry_after)))
    return error_response(429, "too_many_requests", exc.reason, **{"Retry-After": wait})


async def _conflict(_: Request, exc: Exception) -> JSONResponse:
    kind = "idempotency_conflict" if isinstance(exc, IdempotencyConflict) else "illegal_transition"
    return error_response(409, kind, str(exc))


async def _provider(_: Request, exc: Exception) -> JSONResponse:
    """The provider failed, not the request: the caller may try again later."""
    return error_response(502, "provider_error", str(exc))


async def _configuration(_: Request, exc: Exception) -> JSONResponse:
    log.error("configuration error: %s", exc)
    return error_response(503, "not_configured", str(exc))


async def _http(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    return error_response(
        exc.status_code,
        _KINDS.get(exc.status_code, "error"),
        str(exc.detail),
        **(exc.headers or {}),
    )


async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
    """A bug: logged with its traceback here, and a body that reveals nothing."""
    log.exception("unhandled error", exc_info=exc)
    return error_response(500, "internal", "internal error; see the server log")


def install(app: FastAPI) -> None:
    """Register every handler on ``app``."""
    app.add_exception_handler(ValidationError, _validation)
    app.add_exception_handler(RequestValidationError, _request_validation)
    app.add_exception_handler(NotFound, _not_found)
    app.add_exception_handler(TooManyRequests, _too_many)
    app.add_exception_handler(IllegalTransition, _conflict)
    app.add_exception_handler(IdempotencyConflict, _conflict)
    app.add_exception_handler(ProviderError, _provider)
    app.add_exception_handler(ConfigurationError, _configuration)
    app.add_exception_handler(HTTPException, _http)
    app.add_exception_handler(Exception, _unexpected)
