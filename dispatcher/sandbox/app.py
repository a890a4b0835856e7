"""The sandbox application: every provider's API, the control endpoints and the faults."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from config.settings import get_settings
from dispatcher.sandbox import control
from dispatcher.sandbox.context import Context, SandboxConfig
from dispatcher.sandbox.errors import CONTROL_KEY, Answer, fault_response, provider_error
from dispatcher.sandbox.faults import Faults
from dispatcher.sandbox.persistence import StateWriter, load_state
from dispatcher.sandbox.providers import PROVIDERS, credentials, provider_of, sandboxes
from dispatcher.sandbox.scenarios import Scenarios
from dispatcher.sandbox.state import Clock, Store
from dispatcher.sandbox.webhooks import WebhookDispatcher

__all__ = ["SandboxApp", "create_app"]

_DROPPED = "dropped"  # a non-None return makes uvicorn close the socket without a response
_READS = ("GET", "HEAD", "OPTIONS")  # requests that change no state


class _QuietDrops(logging.Filter):
    """Hide uvicorn's complaint about the deliberate non-None return of a dropped request."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (
            str(record.msg).startswith("ASGI callable should return None")
            and isinstance(record.args, tuple)  # a mapping when one dict is the only argument
            and record.args
            and record.args[0] == _DROPPED
        )


logging.getLogger("uvicorn.error").addFilter(_QuietDrops())


class SandboxApp(FastAPI):
    """FastAPI plus the outermost fault layer: latency, rate faults and dropped connections.

    Dropping must happen outside Starlette's error middleware (which would answer 500), so it
    lives here: handlers set ``scope[CONTROL_KEY]["drop"]`` and this returns without a reply.
    """

    sandbox: Context

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> Any:
        if scope["type"] != "http":
            return await super().__call__(scope, receive, send)
        control_state = scope[CONTROL_KEY] = {"drop": False}
        provider = provider_of(scope["path"])
        kind = None
        if provider is not None:
            requests = self.sandbox.store.requests
            requests.record(provider, scope["method"], scope["path"], time.time())
            faults = self.sandbox.faults
            delay = faults.latency(provider)
            if delay:
                await asyncio.sleep(delay)
            kind = faults.for_request(provider)
        if kind is not None:
            if provider is None:
                raise RuntimeError("a fault was drawn for a request to no provider")
            response = await fault_response(provider, kind, self.sandbox.faults.config)
            await response(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)
        if scope["method"] not in _READS:
            self.sandbox.store.touch()  # after the handler: the snapshot must include its change
        return _DROPPED if control_state["drop"] else None


def create_app(config: SandboxConfig | None = None, **overrides: Any) -> SandboxApp:
    """The sandbox ASGI app; keyword ``overrides`` replace fields of ``config``."""
    config = replace(config or SandboxConfig(), **overrides)
    time_scale = config.time_scale if config.time_scale is not None else get_settings().time_scale
    scenarios = config.scenarios or Scenarios.load(config.scenarios_file)
    store = Store(scenarios, Clock(), time_scale, config.hold_seconds)
    if config.state_file is not None:
        load_state(store, config.state_file)  # before the routers: their ids go on from it
    writer = StateWriter(store, config.state_file) if config.state_file is not None else None
    ctx = Context(
        config=config,
        store=store,
        faults=Faults(config.faults),
        time_scale=time_scale,
        credentials=credentials(config.credentials),
    )
    notifiers = {name: module.notifier(ctx) for name, module in sandboxes().items()}
    dispatcher = WebhookDispatcher(store, notifiers, config.webhook_timeout, ctx.faults)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        dispatcher.start()
        if writer is not None:
            writer.start()
        try:
            yield
        finally:
            dispatcher.stop()
            if writer is not None:
                writer.stop()

    app = SandboxApp(
        title="fax-dispatcher provider sandbox",
        description=f"The fax APIs of {', '.join(PROVIDERS)}, locally, with scenarios and faults.",
        lifespan=lifespan,
        docs_url="/_sandbox/docs",
        openapi_url="/_sandbox/openapi.json",
        redoc_url=None,
    )
    app.sandbox = ctx
    for module in sandboxes().values():
        app.include_router(module.build_router(ctx))
    app.include_router(control.build_router(ctx))

    @app.exception_handler(Answer)
    async def answer(_: Request, exc: Answer) -> Response:
        return exc.response

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        return provider_error(provider_of(request.url.path), exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        return provider_error(provider_of(request.url.path), 400, str(exc.errors()))

    @app.exception_handler(ClientDisconnect)
    async def gone(_: Request, __: ClientDisconnect) -> Response:
        # The client hung up mid-request (a killed worker): nobody is left to answer.
        return Response(status_code=499)

    return app
