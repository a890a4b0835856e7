"""Where the documents' bytes live: the database by default, or an S3-compatible store.

Either way every host reaches them by URL, and nothing is kept on one host's disk. The
bytes are content-addressed (their sha256), so a document sent to many numbers is kept
once. With the database store they are written in the same transaction as the job rows:
no job without its documents, no document without a job. An object store is written
before that transaction; an object whose transaction then failed is unused, never wrong.

``DocumentUnavailable`` tells a document that is gone (``permanent``: its job cannot be
sent) from a store that cannot answer now (the job waits and is tried again).
"""

from __future__ import annotations

import hashlib
import logging
from abc import ABC, abstractmethod
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import BindParameter, Connection, bindparam, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from config.settings import S3Settings
from dispatcher.errors import ConfigurationError, DocumentUnavailable
from dispatcher.store.models import Document, DocumentContent

__all__ = ["DatabaseStore", "DocumentStore", "ObjectStore", "import_folder"]

log = logging.getLogger(__name__)

_SHAS: BindParameter[list[str]] = bindparam("shas", expanding=True)
_LOAD = select(DocumentContent.sha256, DocumentContent.content).where(
    DocumentContent.sha256.in_(_SHAS)
)


class DocumentStore(ABC):
    """The documents' bytes, by sha256."""

    @abstractmethod
    def save(self, connection: Connection, documents: Mapping[str, bytes]) -> None:
        """Keep these documents; ``connection`` is the transaction writing their jobs."""

    @abstractmethod
    def load(self, connection: Connection, shas: Collection[str]) -> dict[str, bytes]:
        """The bytes of each of ``shas``; raises ``DocumentUnavailable`` for one it lacks."""


class DatabaseStore(DocumentStore):
    """The bytes in the ``document_contents`` table, beside the jobs that send them."""

    def save(self, connection: Connection, documents: Mapping[str, bytes]) -> None:
        if not documents:
            return
        dialect = connection.dialect.name
        upsert = pg_insert if dialect == "postgresql" else sqlite_insert
        rows = [{"sha256": sha, "content": content} for sha, content in documents.items()]
        connection.execute(upsert(DocumentContent).on_conflict_do_nothing(), rows)

    def load(self, connection: Connection, shas: Collection[str]) -> dict[str, bytes]:
        found = {
            sha: bytes(content) for sha, content in connection.execute(_LOAD, {"shas": list(shas)})
        }
        missing = set(shas) - found.keys()
        if missing:
            raise DocumentUnavailable(
                sorted(missing)[0], "missing from the database", permanent=True
            )
        return found


class ObjectStore(DocumentStore):
    """The bytes as objects ``<prefix><sha256>`` in one bucket of an S3-compatible store."""

    def __init__(self, settings: S3Settings, client: Any | None = None) -> None:
        if not settings.bucket:
            raise ConfigurationError("FAX_DOCUMENT_STORE=s3 needs FAX_S3__BUCKET")
        self.bucket = settings.bucket
        self.prefix = settings.prefix
        self._client = client or _s3_client(settings)

    def _key(self, sha: str) -> str:
        return f"{self.prefix}{sha}"

    def save(self, connection: Connection, documents: Mapping[str, bytes]) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        for sha, content in documents.items():
            try:
                self._client.put_object(Bucket=self.bucket, Key=self._key(sha), Body=content)
            except (BotoCoreError, ClientError) as exc:
                raise DocumentUnavailable(sha, f"the object store refused it: {exc}") from exc

    def load(self, connection: Connection, shas: Collection[str]) -> dict[str, bytes]:
        from botocore.exceptions import BotoCoreError, ClientError

        found: dict[str, bytes] = {}
        for sha in shas:
            try:
                answer = self._client.get_object(Bucket=self.bucket, Key=self._key(sha))
                found[sha] = answer["Body"].read()
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "")
                gone = code in ("NoSuchKey", "404", "NotFound")
                raise DocumentUnavailable(sha, f"object store: {code}", permanent=gone) from exc
            except BotoCoreError as exc:
                raise DocumentUnavailable(sha, f"object store unreachable: {exc}") from exc
        return found


def _s3_client(settings: S3Settings) -> Any:
    try:
        import boto3
    except ImportError as exc:  # pragma: no cover - boto3 is a dependency
        raise ConfigurationError("FAX_DOCUMENT_STORE=s3 needs boto3 installed") from exc
    from botocore.config import Config

    secret = settings.secret_access_key
    return boto3.client(
        "s3",
        endpoint_url=settings.endpoint_url,
        region_name=settings.region,
        aws_access_key_id=settings.access_key_id,
        aws_secret_access_key=secret.get_secret_value() if secret else None,
        # Fail fast: a job whose document cannot be read now waits and is tried again.
        config=Config(
            connect_timeout=5,
            read_timeout=30,
            retries={"mode": "standard", "total_max_attempts": 2},
        ),
    )


def import_folder(connection: Connection, store: DocumentStore, folder: Path) -> tuple[int, int]:
    """Move documents kept on disk by an earlier version (``<folder>/<sha[:2]>/<sha>``)
    into ``store``: (moved, already there). Each file is checked against its name."""
    known = set(connection.scalars(select(Document.sha256)))
    moved = present = 0
    for path in sorted(folder.glob("??/*")):
        sha = path.name
        if sha not in known or not path.is_file():
            continue
        content = path.read_bytes()
        if hashlib.sha256(content).hexdigest() != sha:
            log.warning("%s does not hash to its name; left where it is", path)
            continue
        try:
            store.load(connection, [sha])
            present += 1
            continue
        except DocumentUnavailable:
            pass
        store.save(connection, {sha: content})
        moved += 1
    return moved, present
