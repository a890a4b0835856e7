"""Injected faults: latency, 5xx, 429 with Retry-After, read timeouts, dropped connections,
late accepts, and duplicated or delayed webhooks.

Rate faults (``error_rate``, ``rate_limit_rate``, ``timeout_rate``, ``drop_rate``) hit any
provider request; ``numbers`` faults, ``drop_after_accept_rate`` and ``slow_accept_rate`` hit
sends only (a send is the request where losing the answer matters). A dropped connection is done
by returning without a response: the ASGI server then closes the socket (see ``app.SandboxApp``).

``slow_accept`` (a ``numbers`` kind, or ``slow_accept_rate``) makes a send wait
``slow_accept_seconds`` and then accept it and answer as usual, even when the client has hung up
meanwhile: a real provider finishes a request whose client timed out, so the fax is sent while
the client believes it failed. It applies to each provider's send request (the one that
creates a fax; not a file upload).

Webhooks: ``webhook_duplicate_rate`` posts that fraction of deliveries twice (each copy keeps
its retries; only the original records a missed event), and ``webhook_delay_ms`` (a number or
``[min, max]``) waits a random time before the first attempt of each delivery, so deliveries
arrive out of order.

Every fault injected is counted by kind (``INJECTED_KINDS``): ``GET /_sandbox/faults/injected``.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from typing import Any, TypeGuard

from dispatcher.sandbox.providers import PROVIDERS
from dispatcher.sandbox.scenarios import normalize_number

__all__ = ["FAULT_KINDS", "INJECTED_KINDS", "FaultConfig", "FaultError", "Faults"]

FAULT_KINDS = ("5xx", "429", "timeout", "drop", "drop_after_accept", "slow_accept")
INJECTED_KINDS = (*FAULT_KINDS, "webhook_duplicate")
#: number faults that accept the send: the handler goes on instead of answering with the fault
_ACCEPTING = ("drop_after_accept", "slow_accept")
_RATES = (
    "error_rate",
    "rate_limit_rate",
    "timeout_rate",
    "drop_rate",
    "drop_after_accept_rate",
    "slow_accept_rate",
    "webhook_duplicate_rate",
)
_DURATIONS = ("retry_after", "timeout_seconds", "slow_accept_seconds")
_RANGES_MS = ("latency_ms", "webhook_delay_ms")
Milliseconds = float | tuple[float, float]


class FaultError(ValueError):
    """A fault configuration that cannot be used."""


@dataclass(frozen=True, slots=True)
class FaultConfig:
    """The fault settings, as ``GET/PUT /_sandbox/faults`` show them."""

    latency_ms: Milliseconds = 0.0
    error_rate: float = 0.0
    error_status: int = 503
    rate_limit_rate: float = 0.0
    retry_after: float = 1.0
    timeout_rate: float = 0.0
    timeout_seconds: float = 30.0
    drop_rate: float = 0.0
    drop_after_accept_rate: float = 0.0
    slow_accept_rate: float = 0.0
    slow_accept_seconds: float = 5.0
    webhook_duplicate_rate: float = 0.0
    webhook_delay_ms: Milliseconds = 0.0
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
        for name in _RANGES_MS:
            if name in values:
                values[name] = _milliseconds(name, values[name])
        status = values.get("error_status", 503)
        if not isinstance(status, int) or not 500 <= status <= 599:
            raise FaultError("error_status must be a 5xx status")
        for name in _DURATIONS:
            if name in values and not (_is_number(values[name]) and values[name] >= 0):
                raise FaultError(f"{name} must be a non-negative number")
        if "numbers" in values:
            values["numbers"] = _numbers(values["numbers"] or {})
        providers = values.get("providers")
        if providers is not None:
            if not isinstance(providers, list | tuple) or not set(providers) <= set(PROVIDERS):
                raise FaultError(f"providers must be a list drawn from {PROVIDERS}")
            values["providers"] = tuple(providers)
        return replace(base or cls(), **values)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        for name in _RANGES_MS:
            if isinstance(data[name], tuple):
                data[name] = list(data[name])
        if self.providers is not None:
            data["providers"] = list(self.providers)
        return data


def _is_number(value: object) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_rate(value: Any) -> bool:
    return _is_number(value) and 0 <= value <= 1


def _milliseconds(name: str, value: Any) -> Milliseconds:
    """A delay setting: a non-negative number, or ``[min, max]`` drawn uniformly."""
    if isinstance(value, list | tuple):
        if len(value) != 2 or not all(_is_number(v) and v >= 0 for v in value):
            raise FaultError(f"{name} must be a number or [min, max]")
        return (float(min(value)), float(max(value)))
    if not (_is_number(value) and value >= 0):
        raise FaultError(f"{name} must be a number or [min, max]")
    return value


def _numbers(raw: Any) -> dict[str, str]:
    """``numbers`` with E.164 keys; every value must be a fault kind."""
    if not isinstance(raw, dict):
        raise FaultError("numbers must be an object of E.164 number -> fault kind")
    numbers = {}
    for number, kind in raw.items():
        normalized = normalize_number(number) if isinstance(number, str) else None
        if normalized is None or kind not in FAULT_KINDS:
            raise FaultError(f"numbers[{number!r}]: expected an E.164 key and {FAULT_KINDS}")
        numbers[normalized] = kind
    return numbers


class Faults:
    """The live fault settings (changed at run time), the dice that apply them, and the count
    of faults injected so far by kind."""

    def __init__(self, config: FaultConfig, seed: int | None = None) -> None:
        self.initial = config
        self._config = config
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._injected: Counter[str] = Counter()

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
            self._injected.clear()

    def injected(self) -> dict[str, int]:
        """Faults injected since the last reset, by kind (every kind, zero included)."""
        with self._lock:
            return {kind: self._injected[kind] for kind in INJECTED_KINDS}

    def _count(self, kind: str) -> None:
        with self._lock:
            self._injected[kind] += 1

    def _applies(self, provider: str) -> bool:
        providers = self._config.providers
        return providers is None or provider in providers

    def _roll(self, rate: float) -> bool:
        with self._lock:
            return bool(rate) and self._random.random() < rate

    def _draw_ms(self, value: Milliseconds) -> float:
        with self._lock:
            return self._random.uniform(*value) if isinstance(value, tuple) else value

    def latency(self, provider: str) -> float:
        """Seconds to wait before answering this request."""
        if not self._applies(provider):
            return 0.0
        return self._draw_ms(self._config.latency_ms) / 1000

    def for_request(self, provider: str) -> str | None:
        """A rate fault for any provider request: "5xx", "429", "timeout", "drop" or None."""
        config = self._config
        if not self._applies(provider):
            return None
        for kind, rate in (
            ("5xx", config.error_rate),
            ("429", config.rate_limit_rate),
            ("timeout", config.timeout_rate),
            ("drop", config.drop_rate),
        ):
            if self._roll(rate):
                self._count(kind)
                return kind
        return None

    def for_send(self, provider: str, number: str) -> str | None:
        """The fault that refuses a send to this number ("5xx", "429", "timeout", "drop"), if any.

        Faults that accept the send are asked for separately (``slow_accept``,
        ``drop_after_accept``), since the handler goes on to record it.
        """
        if not self._applies(provider):
            return None
        kind = self._config.numbers.get(number)
        if kind is None or kind in _ACCEPTING:
            return None
        self._count(kind)
        return kind

    def slow_accept(self, provider: str, numbers: list[str]) -> float:
        """Seconds a send to these numbers waits before it is accepted (0: not slow)."""
        if not self._applies(provider):
            return 0.0
        config = self._config
        named = any(config.numbers.get(n) == "slow_accept" for n in numbers)
        if not (named or self._roll(config.slow_accept_rate)):
            return 0.0
        self._count("slow_accept")
        return config.slow_accept_seconds

    def drop_after_accept(self, provider: str, numbers: list[str]) -> bool:
        """Whether to record this send and then drop the connection."""
        if not self._applies(provider):
            return False
        config = self._config
        named = any(config.numbers.get(n) == "drop_after_accept" for n in numbers)
        if not (named or self._roll(config.drop_after_accept_rate)):
            return False
        self._count("drop_after_accept")
        return True

    def duplicate_webhook(self, provider: str) -> bool:
        """Whether to post this webhook delivery a second time."""
        if not self._applies(provider) or not self._roll(self._config.webhook_duplicate_rate):
            return False
        self._count("webhook_duplicate")
        return True

    def webhook_delay(self, provider: str) -> float:
        """Seconds to wait before the first attempt of a webhook delivery."""
        if not self._applies(provider):
            return 0.0
        return self._draw_ms(self._config.webhook_delay_ms) / 1000
