"""``faxctl flower``: Celery's monitoring UI for this app, behind basic auth.

Flower shows task names, arguments and results; tasks carry ids only, but the UI can also
revoke tasks, so it does not start open unless asked to with ``--no-auth``. The
credentials go to Flower through its environment (``FLOWER_BASIC_AUTH``), never on the
command line, where any user on the host could read them.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from config.settings import get_settings
from dispatcher.cli._app import EXIT_INVALID, app, err_console, fail

__all__ = ["flower"]


@app.command()
def flower(
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 5555,
    address: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    no_auth: Annotated[
        bool, typer.Option("--no-auth", help="Serve without basic auth (local use only).")
    ] = False,
) -> None:
    """Run Flower for workers.app, with basic auth from FAX_FLOWER_BASIC_AUTH (user:password)."""
    env = {k: v for k, v in os.environ.items() if k != "FLOWER_BASIC_AUTH"}
    credentials = get_settings().flower_basic_auth
    if credentials is not None and not no_auth:
        value = credentials.get_secret_value()
        if ":" not in value:
            raise fail("FAX_FLOWER_BASIC_AUTH must look like user:password", EXIT_INVALID)
        env["FLOWER_BASIC_AUTH"] = value
    elif not no_auth:
        raise fail(
            "FAX_FLOWER_BASIC_AUTH is not set; set it (user:password) or pass --no-auth",
            EXIT_INVALID,
        )
    else:
        err_console.print("[yellow]warning:[/yellow] Flower runs without auth", highlight=False)
    argv = [sys.executable, "-m", "celery", "-A", "workers.app", "flower"]
    os.execve(sys.executable, [*argv, f"--port={port}", f"--address={address}"], env)
