"""FAX.PLUS adapter: upload each file, send through the outbox, then read the fax record.

A send creates one outbox record (``submitted`` .. ``sending``) and returns one fax id per
destination. The fax record under ``/faxes/{id}`` exists only once transmission has ended, so
until then a 404 there means "still in the outbox", never a failure.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

import httpx

from dispatcher.errors import (
    ConfigurationError,
    ProviderRejected,
    ProviderTransientError,
    ValidationError,
)
from dispatcher.providers._http import BearerAuth, HttpAdapter, ProviderHttp
from dispatcher.providers.base import (
    Callback,
    Document,
    ProviderStatus,
    SendRequest,
    fill_missing,
    lookback_start,
    parse_count,
    parse_number,
    parse_time,
    webhook_json,
)
from dispatcher.providers.faxplus import api
from dispatcher.providers.faxplus.settings import FaxPlusSettings

__all__ = ["FaxPlusAdapter"]

_FORMATS = {"application/pdf": "pdf", "image/tiff": "tiff"}


class FaxPlusAdapter(HttpAdapter):
    """FAX.PLUS API v3 with a personal access token (or an OAuth2 token and its client id)."""

    name = "faxplus"

    def __init__(
        self,
        settings: FaxPlusSettings,
        *,
        client: httpx.Client | None = None,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 30.0,
    ) -> None:
        if settings.token is None:
            raise ConfigurationError("faxplus: no token configured")
        headers = {api.CLIENT_ID_HEADER: settings.client_id} if settings.client_id else None
        self._http = ProviderHttp(
            self.name,
            settings.base_url,
            auth=BearerAuth(settings.token),
            headers=headers,
            client=client,
            transport=transport,
            timeout=timeout,
        )
        self._from_number = settings.from_number

    def send(self, request: SendRequest) -> str:
        files = [self._upload(request, document) for document in request.documents]
        body = {
            "from": self._from_number,
            "to": [request.to],
            "files": files,
            "comment": {"text": request.reference, "tags": [api.COMMENT_TAG]},
            "return_ids": True,
        }
        response = self._http.request(
            "POST", _path(api.OUTBOX_PATH), json=body, sending=True, job_id=request.job_id
        )
        ids = self._http.json(response, dict, sending=True).get("ids")
        # One destination, so one id, whatever form the provider keys it by.
        fax_id = (
            ids.get(request.to) or next(iter(ids.values()), None) if isinstance(ids, dict) else None
        )
        if not fax_id:
            raise ProviderTransientError(
                self.name, "protocol", "the outbox accepted the fax but returned no fax id"
            )
        return str(fax_id)

    def status(self, fax_id: str) -> ProviderStatus:
        """The fax record once transmission has ended, until then the outbox record."""
        return self._fax_record(fax_id) or _pending(fax_id, self._outbox_by_fax_id())

    def statuses(self, fax_ids: Sequence[str]) -> dict[str, ProviderStatus]:
        """One listing of sent faxes, one of the outbox, then single reads for the rest."""
        wanted = set(fax_ids)
        recent = (r for r in self._sent_faxes() if isinstance(r, dict) and r.get("id"))
        found = {s.fax_id: s for s in map(_from_fax, recent) if s.fax_id in wanted}
        outbox = self._outbox_by_fax_id() if wanted - found.keys() else {}
        return fill_missing(
            found, fax_ids, lambda fax_id: self._fax_record(fax_id) or _pending(fax_id, outbox)
        )

    def cancel(self, fax_id: str) -> None:
        record = self._outbox_by_fax_id().get(fax_id)
        if record is None:
            raise ProviderRejected(
                self.name,
                "http_409",
                f"fax {fax_id} is not in the outbox: it has finished or does not exist",
                status_code=409,
            )
        self._http.request("DELETE", _path(api.OUTBOX_ITEM_PATH, outbox_id=record["id"]))

    def find_by_reference(self, reference: str, since: datetime) -> ProviderStatus | None:
        """The outbox first, then every sent fax since the attempt began, page by page: a
        fax leaves the outbox only for the fax list."""
        for record in self._outbox_records():
            if _comment_text(record.get("comment")) == reference:
                fax_ids = _outbox_fax_ids(record)
                if not fax_ids:
                    raise ProviderTransientError(
                        self.name,
                        "protocol",
                        "the fax is still in the outbox, which does not show its fax id; "
                        "look again once it has left",
                    )
                return _from_outbox(fax_ids[0], record)
        for record in self._sent_faxes_since(since):
            if _comment_text(record.get("comment")) == reference:
                return _from_fax(record)
        return None

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> Callback:
        """A ``fax_sent`` hook ``{"hook": ..., "data": ...}``; unsigned, so callers re-read."""
        data = webhook_json(body).get("data")
        if not isinstance(data, dict) or not data.get("id") or not data.get("status"):
            raise ValidationError("body", "expected a FAX.PLUS hook with data.id and data.status")
        return Callback([_from_fax(data)])

    def _upload(self, request: SendRequest, document: Document) -> str:
        params = {"format": _FORMATS[document.mime_type]} if document.mime_type in _FORMATS else {}
        response = self._http.request(
            "POST",
            _path(api.FILES_PATH),
            params=params,
            files={api.UPLOAD_FIELD: (document.name, document.content, document.mime_type)},
            job_id=request.job_id,
        )
        path = self._http.json(response, dict).get("path")
        if not isinstance(path, str) or not path:
            raise ProviderTransientError(self.name, "protocol", "the upload returned no file path")
        return path

    def _fax_record(self, fax_id: str) -> ProviderStatus | None:
        """The fax record; None (a 404) while the fax is still in the outbox."""
        response = self._http.request("GET", _path(api.FAX_PATH, fax_id=fax_id), allow=(404,))
        return None if response.status_code == 404 else _from_fax(self._http.json(response, dict))

    def _sent_faxes(self, **params: str | int) -> list[dict[str, Any]]:
        """One page of sent faxes, newest first (as the API gives it, unfiltered)."""
        response = self._http.request(
            "GET",
            _path(api.FAXES_PATH),
            params={"category": "sent", "limit": api.LIST_LIMIT, "order": "desc", **params},
        )
        data = self._http.json(response, dict).get("data") or {}
        records = data.get("records") or []
        return records if isinstance(records, list) else []

    def _sent_faxes_since(self, since: datetime) -> Iterator[dict[str, Any]]:
        """Every sent fax submitted after ``since``, newest first, across pages. A fax
        sent meanwhile shifts the pages back, so one may be seen twice, never missed."""
        after = lookback_start(since).strftime(api.TIME_FORMAT)
        offset = 0
        while True:
            page = self._sent_faxes(after=after, offset=offset)
            yield from (r for r in page if isinstance(r, dict) and r.get("id"))
            if len(page) < api.LIST_LIMIT:
                return
            offset += len(page)

    def _outbox_records(self) -> list[dict[str, Any]]:
        response = self._http.request("GET", _path(api.OUTBOX_PATH))
        records = self._http.json(response, dict).get("records") or []
        return [r for r in records if isinstance(r, dict)]

    def _outbox_by_fax_id(self) -> dict[str, dict[str, Any]]:
        """Outbox records keyed by the per-destination fax ids each one carries."""
        return {
            fax_id: record
            for record in self._outbox_records()
            for fax_id in _outbox_fax_ids(record)
        }


def _path(template: str, **values: str) -> str:
    return template.format(user_id=api.USER_ID, **values)


def _comment_text(comment: object) -> str | None:
    """A fax record's comment is a string; an outbox record's is ``{"text", "tags"}``."""
    if isinstance(comment, dict):
        comment = comment.get("text")
    return comment if isinstance(comment, str) else None


def _outbox_fax_ids(record: Mapping[str, Any]) -> list[str]:
    """The per-destination fax ids of an outbox record, where the API shows them."""
    ids = record.get(api.OUTBOX_FAX_IDS)
    return [str(v) for v in ids.values()] if isinstance(ids, dict) else []


def _from_fax(record: Mapping[str, Any]) -> ProviderStatus:
    """A fax record (CDR) or a hook's ``data``: the final status of one destination."""
    return ProviderStatus(
        fax_id=str(record["id"]),
        code=str(record["status"]),
        pages_sent=parse_count(record.get("pages")),
        cost=parse_number(record.get("cost")),
        duration=parse_number(record.get("duration")),
        started_at=parse_time(record.get("start_time")),
        finished_at=parse_time(record.get("last_update")),
        reference=_comment_text(record.get("comment")),
        raw=record,
    )


def _pending(fax_id: str, outbox: Mapping[str, Mapping[str, Any]]) -> ProviderStatus:
    """A fax with no fax record yet: its outbox status, else the first one (handing over)."""
    if fax_id in outbox:
        return _from_outbox(fax_id, outbox[fax_id])
    return ProviderStatus(fax_id=fax_id, code=api.OUTBOX_STATUSES[0])


def _from_outbox(fax_id: str, record: Mapping[str, Any]) -> ProviderStatus:
    """A fax still in the outbox: its outbox status (``submitted`` .. ``sending``)."""
    return ProviderStatus(
        fax_id=fax_id,
        code=str(record.get("status") or api.OUTBOX_STATUSES[0]),
        started_at=parse_time(record.get("submit_time")),
        reference=_comment_text(record.get("comment")),
        raw=record,
    )
