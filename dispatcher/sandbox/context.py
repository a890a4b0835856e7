"""The sandbox's configuration and the runtime objects every router shares."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from dispatcher.sandbox.faults import FaultConfig, Faults
from dispatcher.sandbox.scenarios import Scenarios
from dispatcher.sandbox.state import Store

__all__ = ["Context", "SandboxConfig"]


@dataclass(frozen=True, slots=True)
class SandboxConfig:
    """Everything ``create_app`` takes.

    ``time_scale`` None means FAX_TIME_SCALE from the settings. ``scenarios`` wins over
    ``scenarios_file``; with neither, the built-in default set is used. ``credentials``
    replaces, per provider, any of the well-known credentials it accepts (its module's
    ``CREDENTIALS``): ``{provider: {name: value}}``. ``state_file`` keeps the state
    across restarts (see ``persistence``); None keeps it in memory only.
    """

    scenarios_file: Path | None = None
    scenarios: Scenarios | None = None
    time_scale: float | None = None
    hold_seconds: float = 10.0
    cancel_seconds: float = 1.0
    credentials: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    webhook_retry_delays: tuple[float, ...] = (1.0, 2.0, 4.0)
    webhook_timeout: float = 5.0
    faults: FaultConfig = field(default_factory=FaultConfig)
    state_file: Path | None = None


@dataclass(slots=True)
class Context:
    """What the routers share: the config, the store (state and clock), the faults and the
    credentials each provider accepts (by provider, then name)."""

    config: SandboxConfig
    store: Store
    faults: Faults
    time_scale: float
    credentials: Mapping[str, Mapping[str, str]]

    def scaled(self, seconds: float) -> float:
        return seconds * self.time_scale
