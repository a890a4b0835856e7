"""Optum fax API settings: ``FAX_OPTUM__*``."""

from __future__ import annotations

from typing import Self

from pydantic import SecretStr

from dispatcher.providers.definition import ProviderSettings, settings_config

__all__ = ["SANDBOX_CLIENT_ID", "SANDBOX_CLIENT_SECRET", "OptumSettings"]

SANDBOX_CLIENT_ID = "sandbox"
SANDBOX_CLIENT_SECRET = "sandbox"


class OptumSettings(ProviderSettings):
    """OAuth2 client credentials and a tenant id sent on every call."""

    model_config = settings_config("optum")

    base_url: str = "https://api.optum.example/fax"
    token_url: str | None = None
    client_id: str | None = None
    client_secret: SecretStr | None = None
    tenant_id: str = "00000000-0000-0000-0000-000000000000"

    def configured(self) -> bool:
        return bool(self.client_id) and self.client_secret is not None

    def for_sandbox(self, sandbox_url: str) -> Self:
        base_url = f"{sandbox_url.rstrip('/')}/optum"
        return self.model_copy(
            update={
                "base_url": base_url,
                "token_url": f"{base_url}/oauth/token",
                "client_id": SANDBOX_CLIENT_ID,
                "client_secret": SecretStr(SANDBOX_CLIENT_SECRET),
            }
        )
