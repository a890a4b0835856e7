"""Error answers in the shape of the provider a request is for, and the fault answers built
on them."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from dispatcher.sandbox.faults import FaultConfig, Faults
from dispatcher.sandbox.providers import sandbox

__all__ = [
    "CONTROL_KEY",
    "Answer",
    "Dropped",
    "before_accept",
    "fault_response",
    "provider_error",
]

CONTROL_KEY = "sandbox.control"


def provider_error(
    provider: str | None, status: int, message: str, headers: Mapping[str, str] | None = None
) -> Response:
    """A generic error (fault, unknown route) in the shape of the provider it is for."""
    if provider is None:
        return JSONResponse({"detail": message}, status, headers)
    return sandbox(provider).error_response(status, message, headers)


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
