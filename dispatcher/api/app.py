"""The FastAPI application: routes, error handlers, and the request size limit.

``create_app()`` builds a new app each call (tests build their own after setting the
environment); settings are read per request, so no app holds a stale copy.
"""

from __future__ import annotations

import logging
import re

from fastapi import FastAPI
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dispatcher.api import batches, callbacks, errors, faxes, metrics, providers, webhooks
from dispatcher.api.console import router as console_router
from dispatcher.privacy import mask_numbers, mask_numbers_in_http_logs
from dispatcher.runtime import document_store

__all__ = ["MAX_REQUEST_BYTES", "BodyLimit", "RedactSecrets", "create_app"]

#: The largest request body accepted. Every provider caps a fax well below this (the
#: largest at 30 MiB of documents), so anything bigger cannot be sent and is refused
#: before it is read.
MAX_REQUEST_BYTES = 50 * 1024 * 1024


class BodyLimit:
    """ASGI middleware: 413 for a body over ``limit`` bytes.

    A declared ``Content-Length`` over the limit is refused before a byte is read; a body
    without one (chunked), or longer than it claimed, is refused once the count passes the
    limit, so an oversized upload is never buffered whole.
    """

    def __init__(self, app: ASGIApp, limit: int = MAX_REQUEST_BYTES) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = f"the request body is over the limit of {self.limit} bytes"
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await errors.error_response(413, "too_large", refusal)(scope, receive, send)
            return
        received = 0

        async def counting() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:
                raise HTTPException(413, refusal)  # answered by the app's HTTPException handler
            return message

        await self.app(scope, counting, send)


_SECRET_PARAM = re.compile(r"(secret=)[^&\s]*", re.IGNORECASE)


class RedactSecrets(logging.Filter):
    """Access logs print the query string: a webhook URL's ``secret=`` must not reach them,
    nor a number searched for (``?to=``), which is shown masked."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                mask_numbers(_SECRET_PARAM.sub(r"\1***", a)) if isinstance(a, str) else a
                for a in record.args
            )
        return True


def create_app() -> FastAPI:
    app = FastAPI(
        title="fax-dispatcher",
        version="1",
        description=(
            "Submit faxes, follow them, act on them, and receive their events. Every route "
            "but /healthz and the provider webhooks needs `Authorization: Bearer <token>`: "
            "a tenant's API key (its own faxes only), or an operators' FAX_API_TOKENS token."
        ),
    )
    document_store()  # refuse to start without the documents' keys (FAX_DOCUMENT_KEYS)
    errors.install(app)
    app.include_router(faxes.router)
    app.include_router(batches.router)
    app.include_router(callbacks.router)
    app.include_router(webhooks.router)
    app.include_router(metrics.router)
    app.include_router(providers.router)
    app.include_router(console_router)

    @app.get("/healthz", tags=["operations"], summary="Liveness: the process answers")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    app.add_middleware(BodyLimit, limit=MAX_REQUEST_BYTES)
    mask_numbers_in_http_logs()  # an operator's cancel calls the provider from here
    access_log = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, RedactSecrets) for f in access_log.filters):
        access_log.addFilter(RedactSecrets())
    return app
