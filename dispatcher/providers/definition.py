"""What the service knows about one provider, in one place: a ``ProviderDefinition``.

Each provider is a package under ``dispatcher/providers/`` whose ``DEFINITION`` holds
its adapter, its status catalogue, its limits, how its webhooks are verified, and its
settings (``FAX_<NAME>__*``). The registry finds the
packages; nothing else in the service names a provider.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Self

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from dispatcher.providers.base import ProviderAdapter

if TYPE_CHECKING:  # the catalogue package asks the registry, which imports this module
    from dispatcher.catalogue.model import StatusEntry

__all__ = [
    "ProviderDefinition",
    "ProviderLimits",
    "ProviderSettings",
    "WebhookRule",
    "settings_config",
]


def settings_config(name: str) -> SettingsConfigDict:
    """A provider's settings read ``FAX_<NAME>__*`` from the environment or ``.env``,
    a blank value being no value."""
    return SettingsConfigDict(
        env_prefix=f"FAX_{name.upper()}__", env_file=".env", env_ignore_empty=True, extra="ignore"
    )


class ProviderSettings(BaseSettings):
    """One provider's account: where it is, its credentials, its webhook secret."""

    base_url: str
    webhook_secret: SecretStr | None = None

    @abstractmethod
    def configured(self) -> bool:
        """Whether real credentials are set (else the sandbox, when there is one, stands in)."""

    @abstractmethod
    def for_sandbox(self, sandbox_url: str) -> Self:
        """These settings pointed at the sandbox, with its well-known credentials."""


@dataclass(frozen=True, slots=True)
class ProviderLimits:
    """What one provider accepts, from its documentation (docs/providers/)."""

    mime_types: frozenset[str]
    max_files: int
    max_total_bytes: int
    max_pages: int
    countries: frozenset[str] | None = None  # region codes; None = anywhere


@dataclass(frozen=True, slots=True)
class WebhookRule:
    """How a provider's callbacks are verified: a secret in the URL (it does not sign
    them), or its signature, checked by the adapter's ``parse_webhook``, which also reads
    the event's id and time so that a replay is refused."""

    secret_in_url: bool


def _stripped(code: object) -> str:
    return str(code).strip()


@dataclass(frozen=True)
class ProviderDefinition:
    """Everything about one provider the rest of the service may ask for."""

    name: str
    settings: type[ProviderSettings]
    #: (settings, *, client=None, timeout=seconds) -> the adapter
    adapter: Callable[..., ProviderAdapter]
    table: Mapping[str, StatusEntry]
    #: the safe default entry of a code the table does not list
    unknown: Callable[[str], StatusEntry]
    limits: ProviderLimits
    webhook: WebhookRule
    #: the canonical text of a code (InterFAX's integers as decimal text)
    normalize: Callable[[object], str] = _stripped

    def classify(self, code: object) -> StatusEntry:
        key = self.normalize(code)
        return self.table.get(key) or self.unknown(key)

    def load_settings(self, **values: Any) -> ProviderSettings:
        """The provider's settings as the environment gives them now (``values`` win)."""
        return self.settings(**values)
