"""The bare baseline of item 1 (HTTP intake): a FastAPI endpoint served as ours is (by
uvicorn, one process), that takes the same multipart upload (a number, one document, an
``Idempotency-Key``) and writes one row to the same database with the same engine
settings. None of our work: no validation, no document store, no job rows, no publish.

Run by ``uvicorn dispatcher.bench.bare_api:app``; reads FAX_DATABASE_URL.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import FastAPI, File, Form, Header, UploadFile
from sqlalchemy import Column, Engine, Integer, MetaData, String, Table, insert

from dispatcher.store.db import engine_for

__all__ = ["app", "create_fax"]

_metadata = MetaData()
_faxes = Table(
    "bench_bare_faxes",
    _metadata,
    Column("id", String(32), primary_key=True),
    Column("to_number", String(32)),
    Column("idempotency_key", String(255), unique=True),
    Column("size", Integer),
)


def _engine() -> Engine:
    return engine_for(os.environ["FAX_DATABASE_URL"])


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    _metadata.create_all(_engine())
    yield


app = FastAPI(lifespan=_lifespan)


@app.post("/v1/faxes", status_code=201)
def create_fax(
    to: Annotated[str, Form()],
    documents: Annotated[list[UploadFile], File()],
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> dict[str, str]:
    size = sum(len(document.file.read()) for document in documents)
    fax_id = uuid.uuid4().hex
    with _engine().begin() as connection:
        connection.execute(
            insert(_faxes).values(
                id=fax_id, to_number=to, idempotency_key=idempotency_key, size=size
            )
        )
    return {"id": fax_id}
