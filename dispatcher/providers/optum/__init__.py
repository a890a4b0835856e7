"""Optum Financial's fax management API: OAuth2 client credentials, a tenant header,
multipart send, and its own manual retry of a failed fax. Webhooks are signed (HMAC-SHA256
of the body, no timestamp), so replays are refused by event id and age."""

from __future__ import annotations

from dispatcher.documents import IMAGES, PDF_TIFF, MiB
from dispatcher.providers.definition import ProviderDefinition, ProviderLimits, WebhookRule
from dispatcher.providers.optum import catalogue
from dispatcher.providers.optum.adapter import OptumAdapter
from dispatcher.providers.optum.settings import OptumSettings

__all__ = ["DEFINITION"]

DEFINITION = ProviderDefinition(
    name="optum",
    settings=OptumSettings,
    adapter=OptumAdapter,
    table=catalogue.TABLE,
    unknown=catalogue.unknown,
    limits=ProviderLimits(
        PDF_TIFF | IMAGES,
        max_files=1,
        max_total_bytes=10 * MiB,
        max_pages=200,
        countries=frozenset({"US"}),
    ),
    webhook=WebhookRule(secret_in_url=False),
)
