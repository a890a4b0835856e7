"""``/v1/batches``: bulk sends from anywhere, and how far their delivery is.

A batch is a CSV (the columns of ``faxctl bulk``) and the documents its ``document``
column names, uploaded together; a large file goes up in parts, each naming the batch
the first part made. Every row is checked before any is written; the answer gives the
batch id and each rejected row by its row number. Rows are keyed by their ``key`` cell,
else by what they ask for, so uploading a file again (its rejected rows fixed) sends only
the rows not in yet.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Path, UploadFile

from dispatcher import batches
from dispatcher.api.auth import CallerDep, require_caller
from dispatcher.api.errors import ERROR_RESPONSES
from dispatcher.api.faxes import LANES, PROVIDER_ENUM, upload_name
from dispatcher.errors import BatchNotFound, ValidationError
from dispatcher.lanes import Priority, parse_priority
from dispatcher.providers.registry import provider_name
from dispatcher.schemas import Batch

__all__ = ["create_batch", "get_batch", "router"]

router = APIRouter(
    prefix="/v1/batches",
    tags=["batches"],
    dependencies=[Depends(require_caller)],
    responses=ERROR_RESPONSES,
)


def _batch_id(batch_id: Annotated[str, Path(description="The id a batch upload returned.")]) -> str:
    if len(batch_id) != 32 or not all(c in "0123456789abcdef" for c in batch_id):
        raise BatchNotFound(batch_id[:64])
    return batch_id


@router.post("", status_code=201, response_model=Batch, summary="Submit a CSV of faxes")
def create_batch(
    caller: CallerDep,
    rows: Annotated[UploadFile, File(description="UTF-8 CSV: to, provider, document, ...")],
    documents: Annotated[
        list[UploadFile], File(description="The documents the rows name, by file name.")
    ] = [],  # noqa: B006 - FastAPI reads the default, never mutates it
    provider: Annotated[
        str | None, Form(description="For rows with none.", json_schema_extra=PROVIDER_ENUM)
    ] = None,
    document: Annotated[
        str | None, Form(description="The document for rows with none (default: the only one).")
    ] = None,
    batch: Annotated[
        str | None, Form(description="Add these rows to this batch (a file's later part).")
    ] = None,
    first_row: Annotated[
        int, Form(ge=1, description="The header's row number in the whole file (parts).")
    ] = 1,
    priority: Annotated[
        str | None,
        Form(
            description="The rows' lane: bulk (default), normal or urgent.", json_schema_extra=LANES
        ),
    ] = None,
) -> dict[str, Any]:
    """201 with the batch: counts so far, every rejected row with its reason; 429 over
    the tenant's rate or daily quota."""
    files: dict[str, bytes] = {}
    for index, upload in enumerate(documents):
        name = upload_name(index, upload)
        if name in files:
            raise ValidationError(f"documents[{index}]", f"two documents are named {name!r}")
        files[name] = upload.file.read()
    return batches.submit_upload(
        rows.file,
        rows.filename or "rows.csv",
        files,
        provider=provider_name(provider) if provider else None,
        default_document=document,
        batch_id=_batch_id(batch) if batch else None,
        first_row=first_row,
        caller=caller,
        priority=parse_priority(priority) or Priority.BULK,
    )


@router.get("/{batch_id}", response_model=Batch, summary="A batch and its faxes by state")
def get_batch(batch_id: Annotated[str, Depends(_batch_id)], caller: CallerDep) -> dict[str, Any]:
    return batches.view(batch_id, caller)
