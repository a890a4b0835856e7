"""Bulk submission from a CSV file, in two passes, with no UI.

The first pass reads the whole file once: it hashes the bytes, decodes them as UTF-8,
checks every row, and spools the rows that passed to a temporary file, so a million rows
never sit in memory as Python objects. Nothing is written before that pass ends, so a
file that cannot be used changes nothing. The second pass submits the spooled rows in
chunks, each row with an idempotency key: its ``key`` cell when the file has that column,
else a hash of what the row asks for (number, provider, document, send time, metadata).
Running a file again, after a crash, Ctrl-C, or fixing its rejected rows, therefore
submits only the rows not in yet. (Two rows asking for the very same fax are one fax;
give them keys to send it twice.)

Documents come from a folder (``faxctl bulk`` on a host with the files) or from an upload
(``POST /v1/batches``); both name them in the ``document`` column.

Row numbers are what a spreadsheet shows: the header is row 1, the first data row is
row 2, and blank rows count (they are skipped, not rejected).
"""

from __future__ import annotations

import csv
import hashlib
import json
import pickle
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any, BinaryIO

from dispatcher.documents import DocumentInfo, inspect_document
from dispatcher.errors import IdempotencyConflict, ValidationError
from dispatcher.lanes import Priority
from dispatcher.privacy import mask_numbers
from dispatcher.submission import submit_valid
from dispatcher.validation import ValidFax, validate_fax

__all__ = [
    "COLUMNS",
    "BulkPlan",
    "ChunkResult",
    "FolderDocuments",
    "RowError",
    "UploadedDocuments",
    "check_csv",
    "check_stream",
    "submit_plan",
]

#: Columns with a meaning; ``meta_<name>`` columns become metadata ``<name>``.
COLUMNS = ("to", "provider", "document", "send_at", "key")
META_PREFIX = "meta_"
CHUNK_SIZE = 1000
MAX_KEY = 200
_Doc = tuple[str, bytes, DocumentInfo]
#: row, idempotency key, document key, and the checked fax's fields but its documents
_SpooledRow = tuple[int, str, str, str, str, datetime | None, Mapping[str, str], Mapping[str, Any]]


@dataclass(frozen=True, slots=True)
class RowError:
    row: int
    error: str


@dataclass(frozen=True, slots=True)
class ChunkResult:
    """What one committed chunk did; ``rows`` counts every row it handled."""

    rows: int
    accepted: int
    duplicates: int
    rejected: list[RowError]


@dataclass(frozen=True, slots=True)
class _Columns:
    """Where each known column sits in a row."""

    width: int
    to: int
    provider: int | None
    document: int | None
    send_at: int | None
    key: int | None
    meta: tuple[tuple[str, int], ...]
    ignored: tuple[str, ...]


class _Documents:
    """Each distinct document read and inspected once, however many rows name it."""

    #: whether a row with no document cell has a document to send
    has_default: bool = False

    def __init__(self) -> None:
        self.inspections: dict[bytes, DocumentInfo] = {}
        self._loaded: dict[str, _Doc | ValidationError] = {}

    def get(self, cell: str) -> _Doc:
        if cell not in self._loaded:
            try:
                self._loaded[cell] = self._load(cell)
            except ValidationError as exc:
                self._loaded[cell] = exc
        found = self._loaded[cell]
        if isinstance(found, ValidationError):
            # A fresh error per row: re-raising one instance would grow its traceback.
            raise ValidationError(found.field, found.reason)
        return found

    def _load(self, cell: str) -> _Doc:
        name, content = self._read(cell)
        info = inspect_document(content, "document")
        self.inspections[content] = info
        return name, content, info

    def _read(self, cell: str) -> tuple[str, bytes]:
        """The document a cell names (empty: the default), as (name, bytes)."""
        raise NotImplementedError


class FolderDocuments(_Documents):
    """Documents on this host: a path in the CSV is relative to the CSV's folder and must
    stay inside it; the ``--document`` path comes from whoever runs the command and may
    be anywhere."""

    def __init__(self, folder: Path, default: Path | None) -> None:
        super().__init__()
        self.folder = folder.resolve()
        self.default = default
        self.has_default = default is not None

    def _read(self, cell: str) -> tuple[str, bytes]:
        if cell:
            path = (self.folder / cell).resolve()
            if not path.is_relative_to(self.folder):
                raise ValidationError("document", f"{cell!r} is outside the CSV's folder")
        elif self.default is not None:
            path = self.default
        else:
            raise ValidationError(
                "document", "no document in this row and no default document given"
            )
        try:
            return path.name, path.read_bytes()
        except OSError as exc:
            raise ValidationError("document", f"{cell or str(path)!r}: {exc.strerror}") from None


class UploadedDocuments(_Documents):
    """Documents uploaded with the CSV, by file name. A row with no document cell sends
    ``default`` (the name of one of them; by default, the only one uploaded)."""

    def __init__(self, files: Mapping[str, bytes], default: str | None = None) -> None:
        super().__init__()
        self.files = dict(files)
        if default is None and len(self.files) == 1:
            default = next(iter(self.files))
        self.default = default
        self.has_default = default is not None

    def _read(self, cell: str) -> tuple[str, bytes]:
        if not cell and self.default is not None:
            cell = self.default
        if cell not in self.files:
            raise ValidationError(
                "document", f"{cell!r} was not uploaded with the rows" if cell else "no document"
            )
        return cell, self.files[cell]


@dataclass
class BulkPlan:
    """The outcome of the checking pass: what was wrong, and a spool of what was not."""

    name: str
    sha256: str
    rows: int  # data rows that were not blank
    blank: int
    valid: int
    rejected: list[RowError]
    ignored_columns: tuple[str, ...]
    _spool: IO[bytes] = field(repr=False)
    _documents: _Documents = field(repr=False)

    def close(self) -> None:
        self._spool.close()

    def __enter__(self) -> BulkPlan:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def _columns(header: list[str], name: str, has_default_document: bool) -> _Columns:
    names = [cell.strip() for cell in header]
    lowered = [n.lower() for n in names]
    duplicated = sorted({n for n in lowered if n and lowered.count(n) > 1})
    if duplicated:
        raise ValidationError(name, f"the header repeats the columns {', '.join(duplicated)}")
    if "to" not in lowered:
        # A file without a header shows its first row here: mask the number in it.
        found = mask_numbers(", ".join(n for n in names if n)) or "nothing"
        raise ValidationError(name, f"the header has no 'to' column (found: {found})")
    if "document" not in lowered and not has_default_document:
        raise ValidationError(name, "no 'document' column and no --document to send")
    index = {n: i for i, n in enumerate(lowered)}
    meta = tuple(
        (original[len(META_PREFIX) :], i)
        for i, (original, n) in enumerate(zip(names, lowered, strict=True))
        if n.startswith(META_PREFIX) and len(n) > len(META_PREFIX)
    )
    known = set(COLUMNS) | {n for n in lowered if n.startswith(META_PREFIX)}
    return _Columns(
        width=len(names),
        to=index["to"],
        provider=index.get("provider"),
        document=index.get("document"),
        send_at=index.get("send_at"),
        key=index.get("key"),
        meta=meta,
        ignored=tuple(
            n or f"(unnamed column {i + 1})"
            for i, (n, low) in enumerate(zip(names, lowered, strict=True))
            if low not in known
        ),
    )


class _HashingLines:
    """The file's text line by line, hashing and counting the exact bytes as they pass."""

    def __init__(self, handle: BinaryIO, name: str) -> None:
        self.handle = handle
        self.name = name
        self.digest = hashlib.sha256()
        self.bytes_read = 0

    def __iter__(self) -> Iterator[str]:
        for number, raw in enumerate(self.handle, start=1):
            self.digest.update(raw)
            self.bytes_read += len(raw)
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ValidationError(
                    self.name,
                    f"line {number} is not UTF-8 (byte {raw[exc.start]:#04x} at column "
                    f"{exc.start + 1}); save the file as CSV UTF-8",
                ) from None
            yield text.removeprefix("\ufeff") if number == 1 else text


def _cell(cells: list[str], index: int | None) -> str:
    return cells[index] if index is not None and index < len(cells) else ""


def _send_at(text: str) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise ValidationError(
            "send_at", f"{text!r} is not an ISO 8601 time (e.g. 2030-01-31T09:00:00+00:00)"
        ) from None


def _check_row(
    cells: list[str], columns: _Columns, documents: _Documents, provider: str | None
) -> tuple[str, str, ValidFax]:
    """The row's idempotency key, document cell and validated fax; raises
    ``ValidationError``."""
    if len(cells) > columns.width:
        raise ValidationError(
            "row", f"{len(cells)} values but the header has {columns.width} columns"
        )
    key = _cell(cells, columns.key)
    if len(key) > MAX_KEY:
        raise ValidationError("key", f"at most {MAX_KEY} characters")
    document = _cell(cells, columns.document)
    name, content, _ = documents.get(document)
    fax = validate_fax(
        _cell(cells, columns.to),
        [(name, content)],
        _cell(cells, columns.provider).lower() or provider or None,
        _send_at(_cell(cells, columns.send_at)),
        {key: cells[i] for key, i in columns.meta if i < len(cells) and cells[i]},
        inspections=documents.inspections,
    )
    return f"bulk:key:{key}" if key else _content_key(fax), document, fax


def _content_key(fax: ValidFax) -> str:
    """A row's key from what it asks for: the same fax asked again is the same key."""
    asked = [
        fax.to,
        fax.provider,
        [info.sha256 for _, _, info in fax.documents],
        fax.send_at.isoformat() if fax.send_at else None,
        sorted(fax.metadata.items()),
    ]
    return "bulk:" + hashlib.sha256(json.dumps(asked).encode()).hexdigest()[:40]


def check_csv(
    path: Path,
    *,
    document: Path | None = None,
    provider: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> BulkPlan:
    """Read and check every row of ``path``, its documents in its folder; raises
    ``ValidationError`` if the file as a whole cannot be used. ``progress`` is called now
    and then with the bytes read so far."""
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise ValidationError(path.name, exc.strerror or "cannot be read") from None
    with handle:
        return check_stream(
            handle, path.name, FolderDocuments(path.parent, document), provider, progress
        )


def check_stream(
    handle: BinaryIO,
    name: str,
    documents: _Documents,
    provider: str | None = None,
    progress: Callable[[int], None] | None = None,
    first_row: int = 1,
) -> BulkPlan:
    """Check every row of a CSV read from ``handle`` (``first_row``: the header's row
    number in the whole file, for a file uploaded in parts)."""
    spool = tempfile.TemporaryFile(prefix="faxctl-bulk-")  # noqa: SIM115  (the plan closes it)
    try:
        plan = _check(handle, name, spool, documents, provider, progress, first_row)
    except BaseException:
        spool.close()
        raise
    spool.seek(0)
    return plan


def _check(
    handle: BinaryIO,
    name: str,
    spool: IO[bytes],
    documents: _Documents,
    provider: str | None,
    progress: Callable[[int], None] | None,
    first_row: int,
) -> BulkPlan:
    if documents.has_default:
        documents.get("")  # an unusable default fails the file, not each of its rows
    lines = _HashingLines(handle, name)
    reader = csv.reader(lines)
    records = enumerate(reader, start=first_row)
    rejected: list[RowError] = []
    rows = blank = valid = 0
    batch: list[_SpooledRow] = []
    try:
        header = next((record for _, record in records if any(c.strip() for c in record)), None)
        if header is None:
            raise ValidationError(name, "the file is empty: it needs a header row")
        columns = _columns(header, name, documents.has_default)
        for row_number, record in records:
            cells = [cell.strip() for cell in record]
            if not any(cells):
                blank += 1
                continue
            rows += 1
            try:
                key, doc_key, fax = _check_row(cells, columns, documents, provider)
            except ValidationError as exc:
                rejected.append(RowError(row_number, str(exc)))
                continue
            valid += 1
            batch.append(_spooled_row(row_number, key, doc_key, fax))
            if len(batch) == CHUNK_SIZE:
                pickle.dump(batch, spool, pickle.HIGHEST_PROTOCOL)
                batch = []
                if progress is not None:
                    progress(lines.bytes_read)
    except csv.Error as exc:
        raise ValidationError(name, f"line {reader.line_num}: {exc}") from None
    if rows == 0:
        raise ValidationError(name, "the file has a header but no data rows")
    if batch:
        pickle.dump(batch, spool, pickle.HIGHEST_PROTOCOL)
    if progress is not None:
        progress(lines.bytes_read)
    return BulkPlan(
        name,
        lines.digest.hexdigest(),
        rows,
        blank,
        valid,
        rejected,
        columns.ignored,
        spool,
        documents,
    )


def _spooled_row(row: int, key: str, doc_key: str, fax: ValidFax) -> _SpooledRow:
    """A checked row as plain values: they pickle fast, and the document bytes stay out."""
    return row, key, doc_key, fax.to, fax.provider, fax.send_at, fax.metadata, fax.options


def _spooled(plan: BulkPlan, priority: Priority) -> Iterator[list[tuple[int, str, ValidFax]]]:
    documents = plan._documents
    while True:
        try:
            batch: list[_SpooledRow] = pickle.load(plan._spool)
        except EOFError:
            return
        yield [
            (
                row,
                key,
                ValidFax(
                    to,
                    provider,
                    (documents.get(doc_key),),
                    send_at,
                    metadata,
                    options,
                    priority=priority,
                ),
            )
            for row, key, doc_key, to, provider, send_at, metadata, options in batch
        ]


def _submit_chunk(
    chunk: list[tuple[int, str, ValidFax]], batch_id: str | None, tenant_id: str | None
) -> ChunkResult:
    items = [(key, fax) for _, key, fax in chunk]
    owner = {"batch_id": batch_id, "tenant_id": tenant_id}
    try:
        results = submit_valid(items, publish=False, **owner)
    except IdempotencyConflict:
        # Rare: a document or default changed since an earlier run of this very file.
        # Submit row by row so only the conflicting rows are rejected.
        accepted = duplicates = 0
        rejected = []
        for (row, _, _), item in zip(chunk, items, strict=True):
            try:
                created = submit_valid([item], publish=False, **owner)[0].created
            except IdempotencyConflict as exc:
                rejected.append(RowError(row, f"{exc} (did a document change since?)"))
                continue
            accepted += created
            duplicates += not created
        return ChunkResult(len(chunk), accepted, duplicates, rejected)
    accepted = sum(r.created for r in results)
    return ChunkResult(len(chunk), accepted, len(results) - accepted, [])


def submit_plan(
    plan: BulkPlan,
    batch_id: str | None = None,
    *,
    tenant_id: str | None = None,
    priority: Priority = Priority.BULK,
) -> Iterator[ChunkResult]:
    """Submit the checked rows, one committed chunk at a time, as jobs of ``batch_id``
    (of the tenant's, in the bulk lane unless ``priority`` says otherwise).

    The jobs are committed with no broker message: they are due at once and the beat tick
    dispatches them in batches. Stopping between chunks (a crash, Ctrl-C, or simply not
    iterating further) loses nothing, and a re-run of the same file skips what is done.
    """
    for chunk in _spooled(plan, priority):
        yield _submit_chunk(chunk, batch_id, tenant_id)
