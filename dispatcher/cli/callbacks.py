"""``faxctl callbacks``: the events posted to backend services, and redelivering them."""

from __future__ import annotations

from typing import Annotated

import typer

from dispatcher.callbacks import delivery
from dispatcher.cli._app import JsonOption, app, console, errors, print_json, print_rows
from dispatcher.tenants import OPERATOR

__all__ = ["list_", "redeliver", "show"]

callbacks_app = typer.Typer(
    help="Callback deliveries: list, show, redeliver.", no_args_is_help=True
)
app.add_typer(callbacks_app, name="callbacks")

DeliveryId = Annotated[str, typer.Argument(help="The delivery's id (msg_...).")]


@callbacks_app.command("list")
def list_(
    job: Annotated[str | None, typer.Option(help="Only this job's events.")] = None,
    endpoint: Annotated[str | None, typer.Option(help="Only this endpoint's.")] = None,
    state: Annotated[str | None, typer.Option(help="pending, delivered or failed.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
    as_json: JsonOption = False,
) -> None:
    """The newest deliveries, with their state and the receiver's last answer."""
    with errors():
        rows = delivery.list_deliveries(
            OPERATOR, endpoint_id=endpoint, job_id=job, state=state, limit=limit
        )
    if as_json:
        print_json(rows)
        return
    print_rows(rows, ("id", "event_type", "job_id", "url", "state", "attempts", "last_status"))


@callbacks_app.command()
def show(delivery_id: DeliveryId) -> None:
    """One delivery and every try of it (JSON)."""
    with errors():
        print_json(delivery.get_delivery(OPERATOR, delivery_id))


@callbacks_app.command()
def redeliver(delivery_id: DeliveryId) -> None:
    """Post the event again at the next tick, with a fresh retry schedule."""
    with errors():
        view = delivery.redeliver(OPERATOR, delivery_id)
    console.print(f"{delivery_id}: {view['state']}, next try at the next tick")
