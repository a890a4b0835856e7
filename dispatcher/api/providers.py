"""``/v1/providers``: each provider's breaker, pause and limits; pause and resume one.
For the operators' tokens only."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path

from dispatcher import pauses
from dispatcher.api.auth import require_operator
from dispatcher.api.errors import ERROR_RESPONSES
from dispatcher.errors import NotFound
from dispatcher.provider_status import provider_rows
from dispatcher.providers.registry import PROVIDERS
from dispatcher.tenants import Caller

__all__ = ["list_providers", "pause_provider", "resume_provider", "router"]

router = APIRouter(prefix="/v1/providers", tags=["operations"], responses=ERROR_RESPONSES)

Operator = Annotated[Caller, Depends(require_operator)]


def _provider(name: Annotated[str, Path(json_schema_extra={"enum": list(PROVIDERS)})]) -> str:
    if name not in PROVIDERS:
        raise NotFound("provider", name[:32])
    return name


ProviderName = Annotated[str, Depends(_provider)]


def _row(name: str) -> dict[str, Any]:
    return next(row for row in provider_rows() if row["provider"] == name)


@router.get("", summary="Each provider's circuit breaker, pause and rate limits")
def list_providers(caller: Operator) -> list[dict[str, Any]]:
    return provider_rows()


@router.post("/{name}/pause", summary="Stop new sends through a provider, on every worker")
def pause_provider(
    name: ProviderName,
    caller: Operator,
    reason: Annotated[str, Body(embed=True, max_length=500)] = "paused by an operator",
) -> dict[str, Any]:
    """Its jobs wait as pending with ``reason``; faxes in progress are still followed."""
    pauses.pause(name, reason, caller.actor)
    return _row(name)


@router.post("/{name}/resume", summary="Send through a paused provider again")
def resume_provider(name: ProviderName, caller: Operator) -> dict[str, Any]:
    pauses.resume(name)
    return _row(name)
