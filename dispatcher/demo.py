"""The demo batch: one fax per sandbox scenario and provider, and where each should end.

The numbers are the sandbox's built-in scenarios (dispatcher/sandbox/default_scenarios.json).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

from pypdf import PdfWriter

from dispatcher.providers.registry import PROVIDERS

__all__ = ["SCENARIOS", "DemoFax", "sample_batch", "sample_document"]


@dataclass(frozen=True, slots=True)
class DemoFax:
    scenario: str
    provider: str
    to: str
    expected: str  # the job state the scenario leads to
    options: dict[str, Any] | None = None


#: (scenario, number, expected final state)
SCENARIOS: list[tuple[str, str, str]] = [
    ("success", "+12025550100", "succeeded"),
    ("busy, busy, success", "+12025550101", "succeeded"),
    ("no answer", "+12025550102", "failed"),
    ("unallocated number", "+12025550103", "failed"),
    ("temporary failure", "+12025550105", "succeeded"),
    # The provider pauses itself; its probe finds credit back and the pause ends.
    ("out of credit, then probed", "+12025550106", "succeeded"),
    ("partial send", "+12025550107", "succeeded"),
]


def sample_batch() -> list[DemoFax]:
    return [
        DemoFax(
            scenario,
            provider,
            number,
            expected,
            # No answer gives up after 3 attempts here so the demo ends quickly.
            {"max_attempts": 3} if scenario == "no answer" else None,
        )
        for provider in PROVIDERS
        for scenario, number, expected in SCENARIOS
    ]


def sample_document(pages: int = 2) -> bytes:
    writer = PdfWriter()
    for _ in range(pages):
        writer.add_blank_page(width=612, height=792)
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()
