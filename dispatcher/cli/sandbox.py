"""``faxctl sandbox``: run the local provider sandbox in the foreground."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from dispatcher.cli._app import EXIT_INVALID, app, fail

__all__ = ["sandbox"]


@app.command()
def sandbox(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8765,
    scenarios: Annotated[
        Path | None,
        typer.Option(help="Scenario JSON file (default: the built-in set).", exists=True),
    ] = None,
    time_scale: Annotated[
        float | None,
        typer.Option(help="Multiplies every hold and delay (default FAX_TIME_SCALE)."),
    ] = None,
    latency_ms: Annotated[float, typer.Option(help="Added to every provider call.")] = 0.0,
    faults: Annotated[
        str | None, typer.Option(help="Fault settings as JSON, e.g. '{\"error_rate\": 0.1}'.")
    ] = None,
    state_file: Annotated[
        Path | None,
        typer.Option(help="Keep faxes, registrations and the send log across restarts here."),
    ] = None,
) -> None:
    """Serve every provider's API locally, each under /<provider> (and /_sandbox to steer it)."""
    from dispatcher.sandbox.faults import FaultConfig, FaultError
    from dispatcher.sandbox.persistence import StateFileError
    from dispatcher.sandbox.scenarios import ScenarioError, Scenarios
    from dispatcher.sandbox.server import run

    if time_scale is not None and time_scale <= 0:
        raise fail("--time-scale must be > 0", EXIT_INVALID)
    try:
        settings = json.loads(faults) if faults else {}
        fault_config = FaultConfig.parse({"latency_ms": latency_ms, **settings})
        table = Scenarios.load(scenarios)
    except (ValueError, FaultError, ScenarioError) as exc:
        raise fail(str(exc), EXIT_INVALID) from exc
    try:
        run(
            host,
            port,
            scenarios=table,
            time_scale=time_scale,
            faults=fault_config,
            state_file=state_file,
        )
    except StateFileError as exc:
        raise fail(str(exc), EXIT_INVALID) from exc
