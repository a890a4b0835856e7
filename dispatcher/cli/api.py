"""``faxctl api``: serve the HTTP API with uvicorn in the foreground."""

from __future__ import annotations

from typing import Annotated

import typer

from config.settings import get_settings
from dispatcher.cli._app import app, err_console

__all__ = ["api"]


@app.command()
def api(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
) -> None:
    """Serve the HTTP API (OpenAPI document at /openapi.json, docs at /docs)."""
    import uvicorn

    if not get_settings().api_tokens:
        err_console.print(
            "[yellow]warning:[/yellow] FAX_API_TOKENS is not set: every route but /healthz "
            "answers 403 until it is.",
            highlight=False,
        )
    uvicorn.run("dispatcher.api:create_app", factory=True, host=host, port=port)
