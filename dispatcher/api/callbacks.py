"""``/v1/endpoints`` and ``/v1/callbacks``: where a caller's fax events go, and how their
delivery went. A tenant sees and acts on its own only."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from dispatcher.api.auth import CallerDep, require_caller
from dispatcher.api.cursor import page_of
from dispatcher.api.errors import ERROR_RESPONSES
from dispatcher.callbacks import EVENT_TYPES, delivery, endpoints
from dispatcher.schemas import Delivery, DeliveryPage, Endpoint, EndpointCreated

__all__ = [
    "NewEndpoint",
    "create_endpoint",
    "disable_endpoint",
    "get_delivery",
    "list_deliveries",
    "list_endpoints",
    "redeliver",
    "router",
]

router = APIRouter(
    prefix="/v1",
    tags=["callbacks"],
    dependencies=[Depends(require_caller)],
    responses=ERROR_RESPONSES,
)
MAX_PAGE = 500


class NewEndpoint(BaseModel):
    url: str = Field(description="An https URL on a public address.")
    event_types: list[str] = Field(
        default=list(EVENT_TYPES), json_schema_extra={"items": {"enum": list(EVENT_TYPES)}}
    )


@router.post(
    "/endpoints", status_code=201, response_model=EndpointCreated, summary="Register an endpoint"
)
def create_endpoint(body: NewEndpoint, caller: CallerDep) -> dict[str, Any]:
    """201 with the endpoint and its signing secret (shown this once)."""
    return endpoints.register(caller, body.url, body.event_types)


@router.get("/endpoints", response_model=list[Endpoint], summary="The caller's endpoints")
def list_endpoints(caller: CallerDep) -> list[dict[str, Any]]:
    return endpoints.list_endpoints(caller)


@router.delete("/endpoints/{endpoint_id}", response_model=Endpoint, summary="Disable an endpoint")
def disable_endpoint(endpoint_id: str, caller: CallerDep) -> dict[str, Any]:
    """No new events go to it; deliveries still pending end as failed."""
    return endpoints.disable(caller, endpoint_id)


@router.get("/callbacks", response_model=DeliveryPage, summary="Deliveries, newest first")
def list_deliveries(
    caller: CallerDep,
    endpoint_id: str | None = None,
    job_id: str | None = None,
    state: Annotated[
        str | None,
        Query(json_schema_extra={"enum": [delivery.PENDING, delivery.DELIVERED, delivery.FAILED]}),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    before: Annotated[str | None, Query(description="The previous page's `next`.")] = None,
) -> dict[str, Any]:
    items = delivery.list_deliveries(
        caller, endpoint_id=endpoint_id, job_id=job_id, state=state, limit=limit + 1, before=before
    )
    return page_of(items, limit)


@router.get("/callbacks/{delivery_id}", response_model=Delivery, summary="One delivery, every try")
def get_delivery(delivery_id: str, caller: CallerDep) -> dict[str, Any]:
    return delivery.get_delivery(caller, delivery_id)


@router.post(
    "/callbacks/{delivery_id}/redeliver", response_model=Delivery, summary="Post an event again"
)
def redeliver(delivery_id: str, caller: CallerDep) -> dict[str, Any]:
    """At the next tick, with a fresh retry schedule."""
    return delivery.redeliver(caller, delivery_id)
