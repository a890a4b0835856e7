"""What an operator sees of each provider: where it points, its circuit breaker, its
pause and its rate limits. ``faxctl providers``, ``GET /v1/providers`` and the console
show the same rows."""

from __future__ import annotations

from typing import Any

from config.settings import get_settings
from dispatcher import guards, pauses
from dispatcher.providers.registry import PROVIDERS, definition
from dispatcher.routing import current_routing

__all__ = ["provider_rows"]


def _where(provider: str) -> str:
    settings = get_settings()
    own = definition(provider).load_settings()
    if own.configured():
        return own.base_url
    return f"sandbox at {settings.sandbox_url}" if settings.sandbox_url else "not configured"


def provider_rows() -> list[dict[str, Any]]:
    """One row per provider, its breaker read from Redis and its pause from the database."""
    paused = pauses.current()
    rows = []
    for provider in PROVIDERS:
        status = guards.breaker(provider).status()
        limits = current_routing().limits.get(provider)
        pause = paused.get(provider)
        rows.append(
            {
                "provider": provider,
                "endpoint": _where(provider),
                "circuit": status.state.value,
                "consecutive_failures": status.failures,
                "probe_in_seconds": round(status.retry_in, 1),
                "paused": pause is not None,
                "paused_reason": pause.reason if pause else None,
                "paused_by": pause.by if pause else None,
                "paused_since": pause.since.isoformat() if pause else None,
                "next_credit_probe_at": (
                    pause.next_probe_at.isoformat() if pause and pause.next_probe_at else None
                ),
                "sends_per_second": limits.sends_per_second if limits else None,
                "status_reads_per_minute": limits.status_reads_per_minute if limits else None,
            }
        )
    return rows
