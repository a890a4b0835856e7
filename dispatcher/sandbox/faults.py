"""Injected faults: latency, 5xx, 429 with Retry-After, read timeouts and dropped connections.

Rate faults hit any provider request; ``numbers`` faults and ``drop_after_accept`` hit sends
only (a send is the request where losing the answer matters). A dropped connection is done by
returning without a response: the ASGI server then closes the socket (see ``app.SandboxApp``).
"""

from __future__ import annotations

import random
import threading
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from dispatcher.sandbox.scenarios import PROVIDERS, normalize_number

__all__ = ["FAULT_KINDS", "FaultConfig", "FaultError", "Faults"]

FAULT_KINDS = ("5xx", "429", "timeout", "drop", "drop_after_accept")
_RATES = ("error_rate", "rate_limit_rate", "timeout_rate", "drop_rate", "drop_after_accept_rate")


class FaultError(ValueError):
    """A fault configuration that cannot be used."""


@dataclass(frozen=True, slots=True)
class FaultConfig:
    """The fault settings, as ``GET/PUT /_sandbox/faults`` show them."""

    latency_ms: float | tuple[float, float] = 0.0
    error_rate: float = 0.0
    error_status: int = 503
    rate_limit_rate: float = 0.0
    retry_after: float = 1.0
    timeout_rate: float = 0.0
    timeout_seconds: float = 30.0
    drop_rate: float = 0.0
    drop_after_accept_rate: float = 0.0
    numbers: dict[str, str] = field(default_factory=dict)
    providers: tuple[str, ...] | None = None

    @classmethod
    def parse(cls, data: dict[str, Any], base: FaultConfig | None = None) -> FaultConfig:
        """Validate a JSON object; keys it does not name keep their value from ``base``."""
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise FaultError(f"unknown fault settings: {sorted(unknown)}")
        values: dict[str, Any] = dict(data)
        for name in _RATES:
            if name in values and not _is_rate(values[name]):
                raise FaultError(f"{name} must be a number between 0 and 1")
        latency = values.get("latency_ms")
        if isinstance(latency, list | tuple):
            if len(latency) != 2 or not all(_is_number(v) and v >= 0 for v in latency):
                raise FaultError("latency_ms must be a number or [min, max]")
            values["latency_ms"] = (float(min(latency)), float(max(latency)))
        elif latency is not None and not (_is_number(latency) and latency >= 0):
            raise FaultError("latency_ms must be a number or [min, max]")
        status = values.get("error_status", 503)
        if not isinstance(status, int) or not 500 <= status <= 599:
            raise FaultError("error_status must be a 5xx status")
        for name in ("retry_after", "timeout_seconds"):
            if name in values and not (_is_number(values[name]) and values[name] >= 0):
                raise FaultError(f"{name} must be a non-negative number")
        numbers = {}
        for number, kind in (values.get("numbers") or {}).items():
            normalized = normalize_number(number)
            if normalized is None or kind not in FAULT_KINDS:
                raise FaultError(f"numbers[{number!r}]: expected an E.164 key and {FAULT_KINDS}")
            numbers[normalized] = kind
        if "numbers" in values:
            values["numbers"] = numbers
        providers = values.get("providers")
        if providers is not None:
            if not isinstance(providers, list | tuple) or not set(providers) <= set(PROVIDERS):
                raise FaultError(f"providers must be a list drawn from {PROVIDERS}")
            values["providers"] = tuple(providers)
        return replace(base or cls(), **values)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        if isinstance(self.latency_ms, tuple):
            data["latency_ms"] = list(self.latency_ms)
        if self.providers is not None:
            data["providers"] = list(self.providers)
        return data


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_rate(value: Any) -> bool:
    return _is_number(value) and 0 <= value <= 1


class Faults:
    """The live fault settings (changed at run time) and the dice that apply them."""

    def __init__(self, config: FaultConfig, seed: int | None = None) -> None:
        self.initial = config
        self._config = config
        self._random = random.Random(seed)
        self._lock = threading.Lock()

    @property
    def config(self) -> FaultConfig:
        return self._config

    def update(self, data: dict[str, Any]) -> FaultConfig:
        with self._lock:
            self._config = FaultConfig.parse(data, self._config)
            return self._config

    def reset(self) -> None:
        with self._lock:
            self._config = self.initial

    def _applies(self, provider: str) -> bool:
        providers = self._config.providers
        return providers is None or provider in providers

    def latency(self, provider: str) -> float:
        """Seconds to wait before answering this request."""
        latency = self._config.latency_ms
        if not self._applies(provider):
            return 0.0
        with self._lock:
            ms = self._random.uniform(*latency) if isinstance(latency, tuple) else latency
        return ms / 1000

    def for_request(self, provider: str) -> str | None:
        """A rate fault for any provider request: "5xx", "429", "timeout", "drop" or None."""
        config = self._config
        if not self._applies(provider):
            return None
        with self._lock:
            for kind, rate in (
                ("5xx", config.error_rate),
                ("429", config.rate_limit_rate),
                ("timeout", config.timeout_rate),
                ("drop", config.drop_rate),
            ):
                if rate and self._random.random() < rate:
                    return kind
        return None

    def for_send(self, provider: str, number: str) -> str | None:
        """The fault configured for a send to this number, if any."""
        if not self._applies(provider):
            return None
        return self._config.numbers.get(number)

    def drop_after_accept(self, provider: str, number: str) -> bool:
        """Whether to record this send and then drop the connection."""
        if not self._applies(provider):
            return False
        if self._config.numbers.get(number) == "drop_after_accept":
            return True
        rate = self._config.drop_after_accept_rate
        with self._lock:
            return bool(rate) and self._random.random() < rate
