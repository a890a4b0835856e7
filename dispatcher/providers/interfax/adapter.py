"""InterFAX adapter: HTTP Basic, the document as the request body, the fax id in ``Location``.

Status codes are integers: below 0 in progress, 0 success, above 0 failed for good. They are
passed on as decimal text (``"-2"``, ``"0"``, ``"3931"``) for the catalogue to classify.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

import httpx

from dispatcher.errors import ConfigurationError, ProviderTransientError, ValidationError
from dispatcher.providers._http import HttpAdapter, ProviderHttp
from dispatcher.providers.base import (
    Callback,
    ProviderStatus,
    SendRequest,
    batches,
    fill_missing,
    lookback_start,
    parse_count,
    parse_number,
    parse_time,
)
from dispatcher.providers.interfax import api
from dispatcher.providers.interfax.settings import InterFaxSettings

__all__ = ["InterFaxAdapter"]


class InterFaxAdapter(HttpAdapter):
    """InterFAX REST with HTTP Basic on every call."""

    name = "interfax"

    def __init__(
        self,
        settings: InterFaxSettings,
        *,
        client: httpx.Client | None = None,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 30.0,
    ) -> None:
        if not settings.username or settings.password is None:
            raise ConfigurationError("interfax: username and password are required")
        self._http = ProviderHttp(
            self.name,
            settings.base_url,
            auth=httpx.BasicAuth(settings.username, settings.password.get_secret_value()),
            client=client,
            transport=transport,
            timeout=timeout,
        )

    def send(self, request: SendRequest) -> str:
        if len(request.reference) > api.MAX_REFERENCE_LENGTH:
            raise ValidationError(
                "reference", f"InterFAX keeps at most {api.MAX_REFERENCE_LENGTH} characters"
            )
        params = {api.PARAM_FAX_NUMBER: request.to, api.PARAM_REFERENCE: request.reference}
        response = self._http.request(
            "POST",
            api.SEND_PATH,
            params=params,
            sending=True,
            job_id=request.job_id,
            **_body(request),
        )
        location: str = response.headers.get("Location", "")
        fax_id = location.rstrip("/").rsplit("/", 1)[-1]
        if not fax_id.isdigit():
            raise ProviderTransientError(
                self.name, "protocol", "the fax was accepted without a fax id in Location"
            )
        return fax_id

    def status(self, fax_id: str) -> ProviderStatus:
        response = self._http.request("GET", api.FAX_PATH.format(fax_id=fax_id))
        return _from_record(self._http.json(response, dict))

    def statuses(self, fax_ids: Sequence[str]) -> dict[str, ProviderStatus]:
        """Search by ids, not ``completed``, so in-progress faxes come back too."""
        found: dict[str, ProviderStatus] = {}
        for batch in batches(fax_ids, api.BATCH_SIZE):
            params: dict[str, str | int] = {
                api.PARAM_IDS: ",".join(batch),
                api.PARAM_LIMIT: len(batch),
            }
            found |= {s.fax_id: s for s in map(_from_record, self._search(params))}
        return fill_missing(found, fax_ids, self.status)

    def cancel(self, fax_id: str) -> None:
        self._http.request("POST", api.CANCEL_PATH.format(fax_id=fax_id))

    def find_by_reference(self, reference: str, since: datetime) -> ProviderStatus | None:
        """Search by reference from the attempt's start, page by page. Only a record that
        carries our reference is ours: an API variant that ignores the filter, or leaves
        the field out, must not pass someone else's fax for this send."""
        params: dict[str, str | int] = {
            api.PARAM_REFERENCE: reference,
            api.PARAM_DATE_FROM: lookback_start(since).strftime(api.SEARCH_TIME_FORMAT),
            api.PARAM_LIMIT: api.SEARCH_PAGE,
            api.PARAM_OFFSET: 0,
        }
        while True:
            page = self._search(params)
            for record in page:
                if record.get(api.FIELD_REFERENCE) == reference:
                    return _from_record(record)
            if len(page) < api.SEARCH_PAGE:
                return None
            params[api.PARAM_OFFSET] = int(params[api.PARAM_OFFSET]) + len(page)

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> Callback:
        """A Web Feedback completion callback, form-encoded, sent once per finished fax."""
        try:
            form = {k: v[0] for k, v in parse_qs(body.decode(), strict_parsing=True).items()}
        except (UnicodeDecodeError, ValueError) as exc:
            raise ValidationError("body", f"not a form-encoded callback: {exc}") from exc
        fax_id = form.get(api.CALLBACK_TRANSACTION_ID, "")
        status = parse_count(form.get(api.CALLBACK_STATUS))
        if not fax_id.isdigit() or status is None:
            raise ValidationError(
                "body", "expected an InterFAX callback with TransactionID, Status"
            )
        return Callback(
            [
                ProviderStatus(
                    fax_id=fax_id,
                    code=str(status),
                    pages_sent=parse_count(form.get(api.CALLBACK_PAGES_SENT)),
                    cost=_cost(form.get(api.CALLBACK_UNITS), form.get(api.CALLBACK_COST_PER_UNIT)),
                    duration=parse_number(form.get(api.CALLBACK_DURATION)),
                    started_at=_callback_time(form.get(api.CALLBACK_SUBMIT_TIME)),
                    finished_at=_callback_time(form.get(api.CALLBACK_COMPLETION_TIME)),
                    raw=form,
                )
            ]
        )

    def _search(self, params: Mapping[str, str | int]) -> list[dict[str, Any]]:
        response = self._http.request("GET", api.SEARCH_PATH, params=params)
        return [r for r in self._http.json(response, list) if isinstance(r, dict)]


def _body(request: SendRequest) -> dict[str, Any]:
    """One document goes as the raw body; several as one multipart part each."""
    if len(request.documents) == 1:
        document = request.documents[0]
        return {"content": document.content, "headers": {"Content-Type": document.mime_type}}
    return {
        "files": [("file", (d.name, d.content, d.mime_type)) for d in request.documents],
    }


def _cost(units: object, cost_per_unit: object) -> float | None:
    units_n, per_unit = parse_number(units), parse_number(cost_per_unit)
    return None if units_n is None or per_unit is None else round(units_n * per_unit, 4)


def _callback_time(value: str | None) -> datetime | None:
    """Callback times are GMT ``dd/mm/yyyy hh:mm:ss``; tolerate ISO as well."""
    if not value:
        return None
    try:
        return datetime.strptime(value.strip(), api.CALLBACK_TIME_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return parse_time(value)


def _from_record(record: Mapping[str, Any]) -> ProviderStatus:
    if record.get(api.FIELD_ID) is None or parse_count(record.get(api.FIELD_STATUS)) is None:
        raise ProviderTransientError("interfax", "protocol", "a fax record without id or status")
    return ProviderStatus(
        fax_id=str(record[api.FIELD_ID]),
        code=str(parse_count(record[api.FIELD_STATUS])),
        pages_sent=parse_count(record.get(api.FIELD_PAGES_SENT)),
        cost=_cost(record.get(api.FIELD_UNITS), record.get(api.FIELD_COST_PER_UNIT)),
        duration=parse_number(record.get(api.FIELD_DURATION)),
        started_at=parse_time(record.get(api.FIELD_SUBMIT_TIME)),
        finished_at=parse_time(record.get(api.FIELD_COMPLETION_TIME)),
        reference=record.get(api.FIELD_REFERENCE),
        raw=record,
    )
