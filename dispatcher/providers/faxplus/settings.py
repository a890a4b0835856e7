"""FAX.PLUS account settings: ``FAX_FAXPLUS__*``."""

from __future__ import annotations

from typing import Self

from pydantic import SecretStr

from dispatcher.providers.definition import ProviderSettings, settings_config
from dispatcher.providers.faxplus import api

__all__ = ["SANDBOX_TOKEN", "FaxPlusSettings"]

#: The personal access token the sandbox accepts.
SANDBOX_TOKEN = "alohi_pat_sandbox"


class FaxPlusSettings(ProviderSettings):
    """A personal access token (or an OAuth2 access token and its client id) and a
    sender number."""

    model_config = settings_config("faxplus")

    base_url: str = api.BASE_URL
    token: SecretStr | None = None
    client_id: str | None = None
    from_number: str = api.NO_NUMBER

    def configured(self) -> bool:
        return self.token is not None

    def for_sandbox(self, sandbox_url: str) -> Self:
        return self.model_copy(
            update={
                "base_url": f"{sandbox_url.rstrip('/')}/faxplus/v3",
                "token": SecretStr(SANDBOX_TOKEN),
            }
        )
