"""InterFAX REST: HTTP Basic, the document as the request body, integer statuses (below
0 in progress, 0 success, above 0 failed). Webhooks are not signed: their URL carries our
secret."""

from __future__ import annotations

from dispatcher.documents import IMAGES, OFFICE, PDF_TIFF, TEXT, MiB
from dispatcher.providers.definition import ProviderDefinition, ProviderLimits, WebhookRule
from dispatcher.providers.interfax import catalogue
from dispatcher.providers.interfax.adapter import InterFaxAdapter
from dispatcher.providers.interfax.settings import InterFaxSettings

__all__ = ["DEFINITION"]


def _normalize(code: object) -> str:
    """InterFAX codes are integers: ``"-2"``, ``"0"``, ``"3931"`` whatever the input's form."""
    text = str(code).strip()
    try:
        return str(int(text))
    except ValueError:
        return text


DEFINITION = ProviderDefinition(
    name="interfax",
    settings=InterFaxSettings,
    adapter=InterFaxAdapter,
    table=catalogue.TABLE,
    unknown=catalogue.unknown,
    limits=ProviderLimits(
        PDF_TIFF | IMAGES | OFFICE | TEXT, max_files=20, max_total_bytes=20 * MiB, max_pages=100
    ),
    webhook=WebhookRule(secret_in_url=True),
    normalize=_normalize,
)
