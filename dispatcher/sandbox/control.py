"""``/_sandbox``: the control endpoints tests and demos use (no auth).

The send log proves nothing was sent twice, the request log counts polls, the overlaps show
any number dialled by two calls at once; ``advance`` moves the clock instead of sleeping.
A provider's own control endpoints are under ``/_sandbox/<name>`` (see ``providers``).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from dispatcher.sandbox.context import Context
from dispatcher.sandbox.faults import FaultError
from dispatcher.sandbox.lines import overlaps
from dispatcher.sandbox.providers import sandboxes
from dispatcher.sandbox.state import to_datetime

__all__ = ["PREFIX", "build_router"]

PREFIX = "/_sandbox"


def build_router(ctx: Context) -> APIRouter:
    router = APIRouter(prefix=PREFIX)
    store = ctx.store

    @router.get("/sends")
    async def sends(provider: str | None = None, reference: str | None = None) -> list[Any]:
        """Every transmission accepted, oldest first; optionally filtered."""
        with store.lock:
            entries = list(store.sends)
        return [
            e.to_json()
            for e in entries
            if (provider is None or e.provider == provider)
            and (reference is None or e.reference == reference)
        ]

    @router.get("/requests")
    async def requests(provider: str | None = None, kind: str | None = None) -> list[Any]:
        """Every provider request (send, status or other), oldest first; optionally filtered."""
        return [
            e.to_json()
            for e in store.requests.entries()
            if (provider is None or e.provider == provider) and (kind is None or e.kind == kind)
        ]

    @router.get("/overlaps")
    async def line_overlaps() -> list[dict[str, Any]]:
        """Pairs of calls (any providers) to one number that were on the line at once."""
        return overlaps(call for module in sandboxes().values() for call in module.calls(ctx))

    @router.post("/reset")
    async def reset() -> dict[str, Any]:
        """Forget every fax, send, request, registration, fault change and fault count; unfreeze
        the clock."""
        store.reset()
        store.clock.freeze(False)
        ctx.faults.reset()
        return {"reset": True}

    @router.get("/faults")
    async def get_faults() -> dict[str, Any]:
        return ctx.faults.config.to_json()

    @router.get("/faults/injected")
    async def injected_faults() -> dict[str, int]:
        """How many faults of each kind were injected since the last reset."""
        return ctx.faults.injected()

    @router.put("/faults")
    async def put_faults(request: Request) -> Any:
        """Change the named fault settings; the others keep their value."""
        body = await request.json()
        if not isinstance(body, dict):
            return JSONResponse({"detail": "expected a JSON object"}, 400)
        try:
            return ctx.faults.update(body).to_json()
        except FaultError as exc:
            return JSONResponse({"detail": str(exc)}, 400)

    @router.post("/advance")
    async def advance(seconds: float) -> Any:
        """Move the sandbox clock forward by real (already scaled) seconds."""
        if seconds < 0:
            return JSONResponse({"detail": "seconds must be >= 0"}, 400)
        offset = store.clock.advance(seconds)
        store.wakeup.set()
        return {"now": to_datetime(store.now()).isoformat(), "offset": offset}

    @router.post("/clock")
    async def clock(frozen: bool) -> dict[str, Any]:
        """Freeze the clock (it then moves only on ``advance``) or let it run again."""
        store.clock.freeze(frozen)
        store.wakeup.set()
        return {"frozen": frozen, "now": to_datetime(store.now()).isoformat()}

    @router.get("/webhooks")
    async def webhooks() -> list[dict[str, Any]]:
        """Every webhook delivery attempt, with the status the receiver answered."""
        with store.lock:
            return list(store.deliveries)

    @router.get("/scenarios")
    async def scenarios() -> dict[str, Any]:
        return {
            number: {"name": s.name, **{p: list(c) for p, c in s.codes.items()}}
            for number, s in store.scenarios.entries.items()
        }

    for name, module in sandboxes().items():
        own = module.control_router(ctx)
        if own is not None:
            router.include_router(own, prefix=f"/{name}")
    return router
