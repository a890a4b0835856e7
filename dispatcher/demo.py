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
    resume_when_held: bool = False
    options: dict[str, Any] | None = None


#: (scenario, number, expected final state, resume when held)
SCENARIOS: list[tuple[str, str, str, bool]] = [
    ("success", "+12025550100", "succeeded", False),
    ("busy, busy, success", "+12025550101", "succeeded", False),
    ("no answer", "+12025550102", "failed", False),
    ("unallocated number", "+12025550103", "failed", False),
    ("temporary failure", "+12025550105", "succeeded", False),
    ("out of credit, resumed", "+12025550106", "succeeded", True),
    ("partial send", "+12025550107", "succeeded", False),
]


def sample_batch() -> list[DemoFax]:
    return [
        DemoFax(
            scenario,
            provider,
            number,
            expected,
            resume,
            # No answer gives up after 3 attempts here so the demo ends quickly.
            {"max_attempts": 3} if scenario == "no answer" else None,
        )
        for provider in PROVIDERS
        for scenario, number, expected, resume in SCENARIOS
    ]


def sample_document(pages: int = 2) -> bytes:
    writer = PdfWriter()
    for _ in range(pages):
        writer.add_blank_page(width=612, height=792)
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()
