"""Routing and destination rules from ``config/routing.toml``.

One place answers: which providers may send to this number and in what order, is this
number ever dialled, when may it be dialled, and the resilience knobs (breaker, lines,
rate limits) for each provider.
"""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from functools import cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import phonenumbers
from phonenumbers import timezone as number_timezones

from config.settings import get_settings
from dispatcher.errors import ConfigurationError, ValidationError
from dispatcher.providers.registry import provider_name

__all__ = ["Limits", "Routing", "Window", "current_routing", "load_routing", "next_provider"]

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True, slots=True)
class Window:
    """Hours a destination may be dialled, in its own local time."""

    prefix: str
    start: time
    end: time | None  # None = until midnight
    days: frozenset[int]

    def allows(self, local: datetime) -> bool:
        if local.weekday() not in self.days:
            return False
        moment = local.time()
        return self.start <= moment and (self.end is None or moment < self.end)

    def next_opening(self, local: datetime) -> datetime:
        """The first moment at or after ``local`` inside the window."""
        if self.allows(local):
            return local
        for offset in range(8):
            day = local.date() + timedelta(days=offset)
            opening = datetime.combine(day, self.start, tzinfo=local.tzinfo)
            if day.weekday() in self.days and opening > local:
                return opening
        raise ConfigurationError(f"window {self.prefix} never opens")


@dataclass(frozen=True, slots=True)
class Limits:
    sends_per_second: float | None = None
    status_reads_per_minute: float | None = None


@dataclass(frozen=True, slots=True)
class Routing:
    routes: dict[str, tuple[str, ...]]
    rejects: tuple[tuple[str, str], ...] = ()
    windows: tuple[Window, ...] = ()
    breaker_threshold: int = 5
    breaker_cooldown: float = 60.0
    line_lease: float = 1800.0
    line_wait: float = 30.0
    share_busy: bool = True
    limits: dict[str, Limits] = field(default_factory=dict)

    def route_for(self, number: str) -> tuple[str, ...]:
        """Providers for a destination, most specific rule first."""
        prefixes = [k for k in self.routes if k.startswith("+") and number.startswith(k)]
        if prefixes:
            return self.routes[max(prefixes, key=len)]
        region = phonenumbers.region_code_for_number(phonenumbers.parse(number))
        return self.routes.get(region or "") or self.routes["default"]

    def reject_reason(self, number: str) -> str | None:
        """Why a number is never dialled, or None."""
        return next((why for prefix, why in self.rejects if number.startswith(prefix)), None)

    def opens_at(self, number: str, now: datetime) -> datetime | None:
        """When the number's sending window next opens (UTC), or None if it is open now."""
        window = next((w for w in self.windows if number.startswith(w.prefix)), None)
        if window is None:
            return None
        zones = number_timezones.time_zones_for_number(phonenumbers.parse(number))
        zone = ZoneInfo(zones[0]) if zones and zones[0] != "Etc/Unknown" else UTC
        local = now.astimezone(zone)
        if window.allows(local):
            return None
        return window.next_opening(local).astimezone(UTC)


def _time(text: str, where: str) -> time | None:
    if text == "24:00":
        return None
    try:
        return time.fromisoformat(text)
    except ValueError as exc:
        raise ConfigurationError(f"{where}: {text!r} is not HH:MM") from exc


def _routes(data: dict[str, Any]) -> dict[str, tuple[str, ...]]:
    try:
        routes = {key: tuple(provider_name(p) for p in value) for key, value in data.items()}
    except ValidationError as exc:
        raise ConfigurationError(f"[routes]: {exc.reason}") from exc
    if not routes.get("default"):
        raise ConfigurationError("[routes] needs a non-empty default")
    return routes


def _window(item: dict[str, Any]) -> Window:
    where = f"[[window]] {item.get('prefix', '?')}"
    days = item.get("days", list(DAYS))
    unknown = set(days) - set(DAYS)
    if unknown:
        raise ConfigurationError(f"{where}: unknown days {sorted(unknown)}")
    start = _time(item.get("start", "00:00"), where) or time(0)
    return Window(
        item["prefix"],
        start,
        _time(item.get("end", "24:00"), where),
        frozenset(DAYS.index(d) for d in days),
    )


@cache
def load_routing(path: Path) -> Routing:
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigurationError(f"cannot read routing config {path}: {exc}") from exc
    breaker = data.get("breaker", {})
    lines = data.get("lines", {})
    return Routing(
        routes=_routes(data.get("routes", {})),
        rejects=tuple((r["prefix"], r["reason"]) for r in data.get("reject", [])),
        windows=tuple(_window(w) for w in data.get("window", [])),
        breaker_threshold=int(breaker.get("threshold", 5)),
        breaker_cooldown=float(breaker.get("cooldown", 60.0)),
        line_lease=float(lines.get("lease", 1800.0)),
        line_wait=float(lines.get("wait", 30.0)),
        share_busy=bool(lines.get("share_busy", True)),
        limits={name: Limits(**values) for name, values in data.get("limits", {}).items()},
    )


def current_routing() -> Routing:
    """The routing file FAX_ROUTING_FILE names (read once per file per process)."""
    return load_routing(get_settings().routing_file)


def next_provider(route: Sequence[str], current: str) -> str | None:
    """The provider after ``current`` on a job's route (its failover order), if any."""
    order = list(route) or [current]
    if current not in order:
        return None
    index = order.index(current)
    return order[index + 1] if index + 1 < len(order) else None
