"""Documents are encrypted at rest with Fernet (AES-128-CBC with HMAC-SHA256) keys from
FAX_DOCUMENT_KEYS: the first key encrypts, every key decrypts, so a key is rotated by
putting a new one first and running ``faxctl keys rotate-documents``.

A SQLite database lives on one host, so without keys configured the key is generated
beside its file (mode 0600) and a warning says so. Any other database may be shared by
several hosts, which must all hold the same keys: without them the process refuses to
start.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from sqlalchemy.engine import make_url

from config.settings import Settings
from dispatcher.errors import ConfigurationError

__all__ = ["DocumentCipher", "UnreadableDocument", "cipher_for", "key_file_for"]

log = logging.getLogger(__name__)

#: Every Fernet token begins with its version byte 0x80 and a 40-bit-clear timestamp.
_TOKEN_PREFIX = b"gAAAAA"


class UnreadableDocument(Exception):
    """Stored bytes no configured key decrypts."""


class DocumentCipher:
    """Encrypts documents with the first key; decrypts with any."""

    def __init__(self, keys: list[bytes]) -> None:
        if not keys:
            raise ConfigurationError("FAX_DOCUMENT_KEYS is empty")
        fernets = []
        for position, key in enumerate(keys):
            try:
                fernets.append(Fernet(key))
            except (ValueError, TypeError) as exc:
                raise ConfigurationError(
                    f"FAX_DOCUMENT_KEYS[{position}] is not a Fernet key (32 url-safe "
                    "base64-encoded bytes; make one with `faxctl keys new-document-key`)"
                ) from exc
        self._primary = fernets[0]
        self._all = MultiFernet(fernets)

    def encrypt(self, content: bytes) -> bytes:
        return self._primary.encrypt(content)

    def decrypt(self, stored: bytes) -> bytes:
        """The plaintext; bytes stored before encryption existed are returned as they are."""
        if not _is_encrypted(stored):
            return stored
        try:
            return self._all.decrypt(stored)
        except InvalidToken as exc:
            raise UnreadableDocument(
                "no key in FAX_DOCUMENT_KEYS decrypts it (a key is wrong or missing)"
            ) from exc

    def is_current(self, stored: bytes) -> bool:
        """Whether ``stored`` is encrypted with the first key (nothing to rotate)."""
        if not _is_encrypted(stored):
            return False
        try:
            self._primary.decrypt(stored)
        except InvalidToken:
            return False
        return True

    def reencrypt(self, stored: bytes) -> bytes:
        """``stored`` encrypted with the first key (plaintext from before is encrypted)."""
        return self.encrypt(self.decrypt(stored))


def _is_encrypted(stored: bytes) -> bool:
    return stored.startswith(_TOKEN_PREFIX)


def key_file_for(database_url: str) -> Path | None:
    """Where the generated key of a SQLite database lives; None when keys are required."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite":
        return None
    database = url.database
    if not database or database == ":memory:":
        return None
    return Path(database).resolve().with_name(Path(database).name + ".key")


def cipher_for(settings: Settings) -> DocumentCipher:
    """The cipher FAX_DOCUMENT_KEYS configures, or the embedded default's generated key."""
    if settings.document_keys:
        return DocumentCipher([k.get_secret_value().encode() for k in settings.document_keys])
    key_file = key_file_for(settings.resolved_database_url)
    if key_file is None or settings.document_store != "database":
        raise ConfigurationError(
            "FAX_DOCUMENT_KEYS is required when documents are shared by several hosts "
            "(a database other than a SQLite file, or FAX_DOCUMENT_STORE=s3): every host "
            "needs the same keys"
        )
    return DocumentCipher([_generated_key(key_file)])


def _generated_key(path: Path) -> bytes:
    """The key in ``path``, made once: written whole to a private file, then linked into
    place, so two processes starting together never read a half-written key."""
    if path.exists():
        return path.read_bytes().strip()
    key = Fernet.generate_key()
    descriptor, draft = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # 0600
    with os.fdopen(descriptor, "wb") as file:
        file.write(key)
        file.flush()
        os.fsync(file.fileno())
    try:
        os.link(draft, path)
    except FileExistsError:
        return path.read_bytes().strip()
    finally:
        os.unlink(draft)
    log.warning(
        "FAX_DOCUMENT_KEYS is not set: documents are encrypted with a key generated in %s; "
        "back it up with the database, or set FAX_DOCUMENT_KEYS",
        path,
    )
    return key
