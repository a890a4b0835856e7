"""InterFAX account settings: ``FAX_INTERFAX__*``."""

from __future__ import annotations

from typing import Self

from pydantic import SecretStr

from dispatcher.providers.definition import ProviderSettings, settings_config
from dispatcher.providers.interfax import api

__all__ = ["SANDBOX_PASSWORD", "SANDBOX_USERNAME", "InterFaxSettings"]

SANDBOX_USERNAME = "sandbox"
SANDBOX_PASSWORD = "sandbox"


class InterFaxSettings(ProviderSettings):
    """HTTP Basic on every request."""

    model_config = settings_config("interfax")

    base_url: str = api.BASE_URL
    username: str | None = None
    password: SecretStr | None = None

    def configured(self) -> bool:
        return bool(self.username) and self.password is not None

    def for_sandbox(self, sandbox_url: str) -> Self:
        return self.model_copy(
            update={
                "base_url": f"{sandbox_url.rstrip('/')}/interfax",
                "username": SANDBOX_USERNAME,
                "password": SecretStr(SANDBOX_PASSWORD),
            }
        )
