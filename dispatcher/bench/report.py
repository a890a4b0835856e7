"""One result row per measurement, and the three ways to show them: a rich table,
Markdown (for the README) and JSON (with the details)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from rich.console import Console
from rich.table import Table

__all__ = ["Measurement", "print_table", "to_json", "to_markdown"]


@dataclass
class Measurement:
    """``ratio`` is ours / baseline. ``goal`` is the ratio the issue asks for; with
    ``lower_is_better`` the ratio must stay at or under it (a time budget)."""

    key: str
    name: str
    unit: str
    ours: float
    baseline: float
    goal: float | None = None
    lower_is_better: bool = False
    note: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        return self.ours / self.baseline if self.baseline else 0.0

    @property
    def met(self) -> bool | None:
        if self.goal is None:
            return None
        return self.ratio <= self.goal if self.lower_is_better else self.ratio >= self.goal

    def goal_text(self) -> str:
        if self.goal is None:
            return "-"
        return f"{'≤' if self.lower_is_better else '≥'} {self.goal:g}x"


def _number(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.2f}"


def _row(m: Measurement) -> list[str]:
    met = {True: "yes", False: "NO", None: "-"}[m.met]
    return [
        m.name,
        f"{_number(m.ours)} {m.unit}",
        f"{_number(m.baseline)} {m.unit}",
        f"{m.ratio:.2f}x",
        m.goal_text(),
        met,
    ]


HEADERS = ["measurement", "ours", "baseline", "ratio", "goal", "met?"]


def print_table(results: list[Measurement], console: Console) -> None:
    table = Table(title="faxctl bench")
    for header in HEADERS:
        table.add_column(header)
    for m in results:
        table.add_row(*_row(m))
    console.print(table)
    for m in results:
        if m.note:
            console.print(f"[dim]{m.name}: {m.note}[/dim]")


def to_markdown(results: list[Measurement]) -> str:
    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    lines += ["| " + " | ".join(_row(m)) + " |" for m in results]
    notes = [f"- {m.name}: {m.note}" for m in results if m.note]
    return "\n".join(lines + ([""] + notes if notes else [])) + "\n"


def to_json(results: list[Measurement]) -> str:
    return json.dumps(
        [{**asdict(m), "ratio": m.ratio, "met": m.met} for m in results], indent=2, default=str
    )
