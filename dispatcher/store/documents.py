"""Where the documents' bytes live: the database by default, or an S3-compatible store.

Either way every host reaches them by URL, and nothing is kept on one host's disk. The
bytes are content-addressed (their sha256), so a document sent to many numbers is kept
once. They are encrypted first (``encryption``): whoever copies the database or the
bucket reads nothing. With the database store they are written in the same transaction as
the job rows: no job without its documents, no document without a job. An object store
is written inside that transaction, once the document's row is locked (so a purge of the
same content waits, ``dispatcher.retention``); an object whose transaction then failed is
unused, never wrong.

``DocumentUnavailable`` tells a document that is gone (``permanent``: its job cannot be
sent) from a store that cannot answer now (the job waits and is tried again).
"""

from __future__ import annotations

import hashlib
import logging
from abc import ABC, abstractmethod
from collections.abc import Collection, Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BindParameter,
    Connection,
    Engine,
    Executable,
    Select,
    bindparam,
    delete,
    select,
    update,
)

from config.settings import S3Settings
from dispatcher.errors import ConfigurationError, DocumentUnavailable
from dispatcher.store.db import upsert
from dispatcher.store.encryption import DocumentCipher, UnreadableDocument
from dispatcher.store.models import Document, DocumentContent

__all__ = ["DatabaseStore", "DocumentStore", "ObjectStore", "import_folder", "rotate_documents"]

log = logging.getLogger(__name__)

_SHAS: BindParameter[list[str]] = bindparam("shas", expanding=True)
_LOAD = select(DocumentContent.sha256, DocumentContent.content).where(
    DocumentContent.sha256.in_(_SHAS)
)


class DocumentStore(ABC):
    """The documents' bytes, by sha256, encrypted before they are kept (``encryption``).

    The address is the plaintext's sha256, so equal documents are still kept once."""

    def __init__(self, cipher: DocumentCipher) -> None:
        self.cipher = cipher

    def save(self, connection: Connection, documents: Mapping[str, bytes]) -> None:
        """Keep these documents; ``connection`` is the transaction writing their jobs."""
        if documents:
            encrypted = {sha: self.cipher.encrypt(content) for sha, content in documents.items()}
            self._put(connection, encrypted)

    def load(self, connection: Connection, shas: Collection[str]) -> dict[str, bytes]:
        """The bytes of each of ``shas``; raises ``DocumentUnavailable`` for one it lacks
        or cannot decrypt (not permanent: the job waits for the right key)."""
        found: dict[str, bytes] = {}
        for sha, stored in self._get(connection, shas).items():
            try:
                found[sha] = self.cipher.decrypt(stored)
            except UnreadableDocument as exc:
                raise DocumentUnavailable(sha, str(exc)) from exc
        return found

    def rotate(self, connection: Connection, shas: Collection[str]) -> tuple[int, list[str]]:
        """Re-encrypt with the first key each of ``shas`` that is not (documents stored
        before encryption are encrypted): how many were, and the shas that cannot be read."""
        stale: dict[str, bytes] = {}
        unreadable: list[str] = []
        for sha in shas:
            try:
                stored = self._get(connection, [sha])[sha]
                if not self.cipher.is_current(stored):
                    stale[sha] = self.cipher.reencrypt(stored)
            except (DocumentUnavailable, UnreadableDocument):
                unreadable.append(sha)
        if stale:
            self._put(connection, stale, replace=True)
        return len(stale), unreadable

    @abstractmethod
    def delete(self, connection: Connection, shas: Collection[str]) -> None:
        """Forget these documents' bytes (purge); a sha already gone is no error."""

    @abstractmethod
    def _put(
        self, connection: Connection, stored: Mapping[str, bytes], replace: bool = False
    ) -> None:
        """Keep stored bytes (``replace``: over the ones kept under the same sha)."""

    @abstractmethod
    def _get(self, connection: Connection, shas: Collection[str]) -> dict[str, bytes]:
        """The stored bytes of each of ``shas``; ``DocumentUnavailable`` for one missing."""


@cache
def _insert_new(dialect: str) -> Executable:
    """Built once per dialect: an insert that leaves contents already kept alone."""
    return upsert(dialect, DocumentContent).on_conflict_do_nothing()


class DatabaseStore(DocumentStore):
    """The bytes in the ``document_contents`` table, beside the jobs that send them."""

    def _put(
        self, connection: Connection, stored: Mapping[str, bytes], replace: bool = False
    ) -> None:
        rows = [{"sha256": sha, "content": content} for sha, content in stored.items()]
        if replace:
            connection.execute(
                update(DocumentContent)
                .where(DocumentContent.sha256 == bindparam("sha"))
                .values(content=bindparam("stored")),
                [{"sha": r["sha256"], "stored": r["content"]} for r in rows],
            )
            return
        connection.execute(_insert_new(connection.dialect.name), rows)

    def _get(self, connection: Connection, shas: Collection[str]) -> dict[str, bytes]:
        found = {
            sha: bytes(content) for sha, content in connection.execute(_LOAD, {"shas": list(shas)})
        }
        missing = set(shas) - found.keys()
        if missing:
            raise DocumentUnavailable(
                sorted(missing)[0], "missing from the database", permanent=True
            )
        return found

    def delete(self, connection: Connection, shas: Collection[str]) -> None:
        connection.execute(delete(DocumentContent).where(DocumentContent.sha256.in_(list(shas))))


class ObjectStore(DocumentStore):
    """The bytes as objects ``<prefix><sha256>`` in one bucket of an S3-compatible store."""

    def __init__(
        self, settings: S3Settings, cipher: DocumentCipher, client: Any | None = None
    ) -> None:
        if not settings.bucket:
            raise ConfigurationError("FAX_DOCUMENT_STORE=s3 needs FAX_S3__BUCKET")
        super().__init__(cipher)
        self.bucket = settings.bucket
        self.prefix = settings.prefix
        self._client = client or _s3_client(settings)

    def _key(self, sha: str) -> str:
        return f"{self.prefix}{sha}"

    def _put(
        self, connection: Connection, stored: Mapping[str, bytes], replace: bool = False
    ) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        for sha, content in stored.items():
            try:
                self._client.put_object(Bucket=self.bucket, Key=self._key(sha), Body=content)
            except (BotoCoreError, ClientError) as exc:
                raise DocumentUnavailable(sha, f"the object store refused it: {exc}") from exc

    def _get(self, connection: Connection, shas: Collection[str]) -> dict[str, bytes]:
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

    def delete(self, connection: Connection, shas: Collection[str]) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        keys = [{"Key": self._key(sha)} for sha in shas]
        for start in range(0, len(keys), 1000):  # S3 deletes at most 1,000 per request
            try:
                answer = self._client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": keys[start : start + 1000]}
                )
            except (BotoCoreError, ClientError) as exc:
                raise DocumentUnavailable(keys[start]["Key"], f"object store: {exc}") from exc
            if answer.get("Errors"):
                error = answer["Errors"][0]
                raise DocumentUnavailable(error.get("Key", ""), f"object store: {error}")


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


def _locked(connection: Connection, query: Select[str]) -> Select[str]:
    """``query`` locking its rows on PostgreSQL (SQLite has one writer at a time)."""
    return query.with_for_update() if connection.dialect.name == "postgresql" else query


def rotate_documents(
    engine: Engine, store: DocumentStore, batch_size: int = 50
) -> Iterator[tuple[int, int, list[str]]]:
    """Re-encrypt every stored document with the first key, a transaction per batch in
    sha order; yields (looked at, re-encrypted, unreadable shas) per batch. Safe to stop
    and run again: a document already under the first key is left as it is."""
    after = ""
    while True:
        with engine.begin() as connection:
            shas = list(
                connection.scalars(
                    _locked(
                        connection,
                        select(Document.sha256)
                        .where(Document.sha256 > after)
                        .order_by(Document.sha256)
                        .limit(batch_size),
                    )
                )
            )
            if not shas:
                return
            rotated, unreadable = store.rotate(connection, shas)
        yield len(shas), rotated, unreadable
        after = shas[-1]


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
