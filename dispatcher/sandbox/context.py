"""The sandbox's configuration and the runtime objects every router shares."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from dispatcher.sandbox.faults import FaultConfig, Faults
from dispatcher.sandbox.scenarios import Scenarios
from dispatcher.sandbox.state import Store

__all__ = ["Context", "SandboxConfig"]


@dataclass(frozen=True, slots=True)
class SandboxConfig:
    """Everything ``create_app`` takes; defaults are the documented sandbox credentials.

    ``time_scale`` None means FAX_TIME_SCALE from the settings. ``scenarios`` wins over
    ``scenarios_file``; with neither, the built-in default set is used. ``state_file`` keeps
    the state across restarts (see ``persistence``); None keeps it in memory only.
    """

    scenarios_file: Path | None = None
    scenarios: Scenarios | None = None
    time_scale: float | None = None
    hold_seconds: float = 10.0
    cancel_seconds: float = 1.0
    faxplus_token: str = "alohi_pat_sandbox"
    faxplus_uid: str = "5a4db0c1d2e3f40516273849aabbccdd"
    interfax_username: str = "sandbox"
    interfax_password: str = "sandbox"
    interfax_callback_url: str | None = None
    optum_client_id: str = "sandbox"
    optum_client_secret: str = "sandbox"
    webhook_retry_delays: tuple[float, ...] = (1.0, 2.0, 4.0)
    webhook_timeout: float = 5.0
    faults: FaultConfig = field(default_factory=FaultConfig)
    state_file: Path | None = None


@dataclass(slots=True)
class Context:
    """What the routers share: the config, the store (state and clock) and the faults."""

    config: SandboxConfig
    store: Store
    faults: Faults
    time_scale: float

    def scaled(self, seconds: float) -> float:
        return seconds * self.time_scale
