"""``faxctl keys`` and ``faxctl tenants``: the API keys of backend services, and their
limits. A key is printed once, when it is made; the store keeps only its hash."""

from __future__ import annotations

from typing import Annotated

import typer

from dispatcher import tenants
from dispatcher.cli._app import JsonOption, app, console, errors, print_json, print_rows

__all__ = ["create", "limits", "list_", "revoke"]

keys_app = typer.Typer(
    help="Tenants' API keys, and the documents' encryption keys.", no_args_is_help=True
)
app.add_typer(keys_app, name="keys")
tenants_app = typer.Typer(help="Tenants: their send rate and daily quota.", no_args_is_help=True)
app.add_typer(tenants_app, name="tenants")


@keys_app.command()
def create(
    tenant: Annotated[str, typer.Option(help="The tenant; made with its first key.")],
    name: Annotated[str, typer.Option(help="What the key is for.")] = "default",
    as_json: JsonOption = False,
) -> None:
    """Make a key; it is shown this once."""
    with errors():
        issued = tenants.create_key(tenant, name)
    if as_json:
        print_json(
            {
                "key": issued.key,
                "key_id": issued.key_id,
                "tenant": issued.tenant,
                "callback_secret": issued.callback_secret,
            }
        )
        return
    console.print(f"key for {issued.tenant} (shown once): {issued.key}", highlight=False)
    if issued.callback_secret:
        console.print(
            f"new tenant; its callback_url events are signed with: {issued.callback_secret}",
            highlight=False,
        )


@keys_app.command("list")
def list_(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's keys.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Every key, newest first (never a secret)."""
    rows = tenants.list_keys(tenant)
    if as_json:
        print_json(rows)
        return
    print_rows(rows, ("id", "tenant", "name", "created_at", "last_used_at", "revoked_at"))


@keys_app.command()
def revoke(key_id: Annotated[str, typer.Argument(help="The key's id (keys list).")]) -> None:
    """The key stops working at once."""
    with errors():
        tenants.revoke_key(key_id)
    console.print(f"revoked {key_id}")


@tenants_app.command()
def limits(
    tenant: Annotated[str, typer.Argument(help="The tenant's name.")],
    rate: Annotated[
        float | None, typer.Option(help="Faxes a second it may submit; unset: no limit.")
    ] = None,
    quota: Annotated[
        int | None, typer.Option(help="Faxes a UTC day it may submit; unset: no quota.")
    ] = None,
) -> None:
    """Set a tenant's send rate and daily quota (both lifted when not given)."""
    with errors():
        tenants.set_limits(tenant, rate, quota)
    console.print(f"{tenant}: rate {rate or 'unlimited'}, daily quota {quota or 'none'}")
