"""The provider sandboxes: ``dispatcher.sandbox.<name>`` for every provider in the registry.

The shared sandbox code (app, control, scenarios, faults, errors, traffic) asks here and never
names a provider, so a new provider adds only its own module, which must meet
``ProviderSandbox``. The modules are imported on first use, not at import time: they import the
shared modules themselves.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from functools import cache
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from dispatcher.providers.registry import PROVIDERS

if TYPE_CHECKING:
    from fastapi import APIRouter
    from starlette.responses import Response

    from dispatcher.sandbox.context import Context
    from dispatcher.sandbox.lines import Call
    from dispatcher.sandbox.traffic import RequestRule
    from dispatcher.sandbox.webhooks import Notifier

__all__ = ["PROVIDERS", "ProviderSandbox", "credentials", "provider_of", "sandbox", "sandboxes"]


@runtime_checkable
class ProviderSandbox(Protocol):
    """What a provider's sandbox module defines, at module level."""

    #: Where its API is served: ``/<name>`` or a path under it (``/<name>/v3``). Every path
    #: under ``/<name>`` is the provider's: logged, faulted, and answered in its error shape.
    PREFIX: str
    #: The final code of a transmission to a number the scenarios do not script.
    SUCCESS: str | int
    #: The type of its scenario codes (``int`` or ``str``), checked when scenarios load.
    CODE_TYPE: type[str] | type[int]
    #: The credentials it accepts unless ``SandboxConfig.credentials`` replaces some: the
    #: ``SANDBOX_*`` values of ``dispatcher.providers.<name>.settings``.
    CREDENTIALS: Mapping[str, str]
    #: How the request log classes its requests (paths relative to ``PREFIX``); a request no
    #: rule matches is ``other``.
    REQUEST_KINDS: Sequence[RequestRule]

    def build_router(self, ctx: Context) -> APIRouter:
        """Its API, under ``PREFIX``."""
        ...

    def control_router(self, ctx: Context) -> APIRouter | None:
        """Its own control endpoints, served under ``/_sandbox/<name>``; None if it has none."""
        ...

    def notifier(self, ctx: Context) -> Notifier:
        """The webhook deliveries for a fax whose completion came due."""
        ...

    def calls(self, ctx: Context) -> list[Call]:
        """Every call it put on a line, for the overlap log."""
        ...

    def error_response(
        self, status: int, message: str, headers: Mapping[str, str] | None = None
    ) -> Response:
        """An error in its own shape, for an injected fault or an unknown route."""
        ...


@cache
def sandboxes() -> dict[str, ProviderSandbox]:
    """Every provider's sandbox module, by name, in the registry's order."""
    return {name: _load(name) for name in PROVIDERS}


def sandbox(name: str) -> ProviderSandbox:
    return sandboxes()[name]


def _load(name: str) -> ProviderSandbox:
    """``dispatcher.sandbox.<name>``, refused at startup if it breaks the contract."""
    module = importlib.import_module(f"dispatcher.sandbox.{name}")
    if not isinstance(module, ProviderSandbox):
        raise TypeError(f"{module.__name__} does not define all of ProviderSandbox")
    if not _owns(name, module.PREFIX):
        raise TypeError(f"{module.__name__}.PREFIX must be /{name} or a path under it")
    return module


def _owns(name: str, path: str) -> bool:
    return path == f"/{name}" or path.startswith(f"/{name}/")


def provider_of(path: str) -> str | None:
    """Which provider a request path belongs to: the one named by its first segment."""
    return next((name for name in PROVIDERS if _owns(name, path)), None)


def credentials(overrides: Mapping[str, Mapping[str, str]]) -> dict[str, dict[str, str]]:
    """Each provider's accepted credentials: its ``CREDENTIALS`` with ``overrides`` applied.

    An override for a provider or credential there is not is refused, so a typo cannot
    silently leave the well-known credential in force.
    """
    accepted = {name: dict(module.CREDENTIALS) for name, module in sandboxes().items()}
    for name, values in overrides.items():
        if name not in accepted:
            raise ValueError(f"credentials for unknown provider {name!r} (one of {PROVIDERS})")
        unknown = set(values) - set(accepted[name])
        if unknown:
            raise ValueError(f"{name} has no sandbox credential {sorted(unknown)}")
        accepted[name].update(values)
    return accepted
