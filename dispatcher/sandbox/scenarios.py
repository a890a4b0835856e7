"""Scenarios: what happens to a fax, chosen by its destination number.

A scenario file maps an E.164 number to, per provider, the final codes of successive
transmissions in that provider's own vocabulary. Past the end of a list the last code repeats;
a number not in the file succeeds.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dispatcher.sandbox.providers import PROVIDERS, sandbox

__all__ = [
    "DEFAULT_FILE",
    "Outcome",
    "Scenario",
    "ScenarioError",
    "Scenarios",
    "normalize_number",
]

DEFAULT_FILE = Path(__file__).with_name("default_scenarios.json")
_E164 = re.compile(r"^\+[1-9][0-9]{7,14}$")
_SEPARATORS = re.compile(r"[\s().\-/]")


class ScenarioError(ValueError):
    """The scenario file is malformed; the message says where."""


def normalize_number(raw: str) -> str | None:
    """E.164 for a number written the ways providers accept, else None.

    ``+1-202-555-0101``, ``0012025550101`` and US 10/11 digit forms all become ``+12025550101``.
    """
    text = _SEPARATORS.sub("", raw.strip())
    if text.startswith("00"):
        text = "+" + text[2:]
    elif text.isdigit() and len(text) == 10:
        text = "+1" + text
    elif text.isdigit() and len(text) == 11 and text.startswith("1"):
        text = "+" + text
    return text if _E164.match(text) else None


@dataclass(frozen=True, slots=True)
class Outcome:
    """The final result of one transmission, drawn from a scenario."""

    code: str | int
    attempt: int
    pages_sent: int | None = None
    failed_reason: str | None = None
    hold_seconds: float | None = None


@dataclass(frozen=True, slots=True)
class Scenario:
    """One number's script: final codes per provider plus optional details."""

    codes: Mapping[str, tuple[str | int, ...]] = field(default_factory=dict)
    pages_sent: int | None = None
    failed_reason: str | None = None
    hold_seconds: float | None = None
    name: str | None = None


class Scenarios:
    """The scenario table, validated once at load."""

    def __init__(self, entries: Mapping[str, Scenario]) -> None:
        self.entries = dict(entries)

    @classmethod
    def load(cls, path: Path | str | None = None) -> Scenarios:
        """Read a scenario file (the built-in default set when ``path`` is None)."""
        source = Path(path) if path is not None else DEFAULT_FILE
        try:
            data = json.loads(source.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ScenarioError(f"{source}: {exc}") from exc
        return cls.parse(data, origin=str(source))

    @classmethod
    def parse(cls, data: Any, origin: str = "scenarios") -> Scenarios:
        if not isinstance(data, dict):
            raise ScenarioError(f"{origin}: expected a JSON object of number -> scenario")
        entries: dict[str, Scenario] = {}
        for number, spec in data.items():
            where = f"{origin}[{number!r}]"
            if number.startswith("_"):
                continue
            normalized = normalize_number(number)
            if normalized is None or not isinstance(spec, dict):
                raise ScenarioError(f"{where}: key must be an E.164 number, value an object")
            entries[normalized] = _parse_entry(spec, where)
        return cls(entries)

    def outcome(self, provider: str, number: str, index: int) -> Outcome:
        """The outcome of transmission ``index`` (0-based) of ``provider`` to ``number``."""
        scenario = self.entries.get(number)
        codes = scenario.codes.get(provider) if scenario else None
        if not scenario or not codes:
            return Outcome(code=sandbox(provider).SUCCESS, attempt=index + 1)
        return Outcome(
            code=codes[min(index, len(codes) - 1)],
            attempt=index + 1,
            pages_sent=scenario.pages_sent,
            failed_reason=scenario.failed_reason,
            hold_seconds=scenario.hold_seconds,
        )


def _parse_entry(spec: dict[str, Any], where: str) -> Scenario:
    codes: dict[str, tuple[str | int, ...]] = {}
    for provider in PROVIDERS:
        if provider not in spec:
            continue
        values = spec[provider]
        kind = sandbox(provider).CODE_TYPE
        if (
            not isinstance(values, list)
            or not values
            or not all(isinstance(v, kind) and not isinstance(v, bool) for v in values)
        ):
            raise ScenarioError(f"{where}.{provider}: expected a non-empty list of {kind.__name__}")
        codes[provider] = tuple(values)
    pages = spec.get("pages_sent")
    if pages is not None and (not isinstance(pages, int) or pages < 0):
        raise ScenarioError(f"{where}.pages_sent: expected a non-negative integer")
    reason = spec.get("failed_reason")
    if reason is not None and not isinstance(reason, str):
        raise ScenarioError(f"{where}.failed_reason: expected a string")
    hold = spec.get("hold_seconds")
    if hold is not None and (not isinstance(hold, int | float) or hold < 0):
        raise ScenarioError(f"{where}.hold_seconds: expected a non-negative number")
    return Scenario(
        codes=codes,
        pages_sent=pages,
        failed_reason=reason,
        hold_seconds=float(hold) if hold is not None else None,
        name=spec.get("_name"),
    )
