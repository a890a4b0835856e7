"""FAX.PLUS (Alohi), API v3: upload each file, send through the outbox, follow the fax
record. Webhooks are not signed: their URL carries our secret."""

from __future__ import annotations

from dispatcher.documents import IMAGES, OFFICE, PDF_TIFF, TEXT, MiB
from dispatcher.providers.definition import ProviderDefinition, ProviderLimits, WebhookRule
from dispatcher.providers.faxplus import catalogue
from dispatcher.providers.faxplus.adapter import FaxPlusAdapter
from dispatcher.providers.faxplus.settings import FaxPlusSettings

__all__ = ["DEFINITION"]

DEFINITION = ProviderDefinition(
    name="faxplus",
    settings=FaxPlusSettings,
    adapter=FaxPlusAdapter,
    table=catalogue.TABLE,
    unknown=catalogue.unknown,
    limits=ProviderLimits(
        PDF_TIFF | IMAGES | OFFICE | TEXT, max_files=10, max_total_bytes=30 * MiB, max_pages=500
    ),
    webhook=WebhookRule(secret_in_url=True),
)
