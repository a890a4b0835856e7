"""Bulk submission from a CSV file, in two passes, with no UI.

The first pass reads the whole file once: it hashes the bytes, decodes them as UTF-8,
checks every row, and spools the rows that passed to a temporary file, so a million rows
never sit in memory as Python objects. Nothing is written before that pass ends, so a
file that cannot be used changes nothing. The second pass submits the spooled rows in
chunks with the idempotency key ``bulk:<sha256 of the file>[:16]:<row>``: running the
same file again, after a crash or Ctrl-C, submits only what is not in the database yet.

Row numbers are what a spreadsheet shows: the header is row 1, the first data row is
row 2, and blank rows count (they are skipped, not rejected).
"""

from __future__ import annotations

import csv
import hashlib
import pickle
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any, BinaryIO

from dispatcher.catalogue import Provider
from dispatcher.documents import DocumentInfo, inspect_document
from dispatcher.errors import IdempotencyConflict, ValidationError
from dispatcher.submission import submit_valid
from dispatcher.validation import ValidFax, validate_fax

__all__ = ["COLUMNS", "BulkPlan", "ChunkResult", "RowError", "check_csv", "submit_plan"]

#: Columns with a meaning; ``meta_<name>`` columns become metadata ``<name>``.
COLUMNS = ("to", "provider", "document", "send_at")
META_PREFIX = "meta_"
CHUNK_SIZE = 1000
_Doc = tuple[str, bytes, DocumentInfo]
#: row, document key, and the checked fax's fields but its documents
_SpooledRow = tuple[int, str, str, Provider, datetime | None, Mapping[str, str], Mapping[str, Any]]


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
    meta: tuple[tuple[str, int], ...]
    ignored: tuple[str, ...]


class _Documents:
    """Each distinct document read and inspected once, however many rows name it.

    A path in the CSV is relative to the CSV's folder and must stay inside it; the
    ``--document`` path comes from whoever runs the command and may be anywhere.
    """

    def __init__(self, folder: Path, default: Path | None) -> None:
        self.folder = folder.resolve()
        self.default = default
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
            content = path.read_bytes()
        except OSError as exc:
            raise ValidationError("document", f"{cell or str(path)!r}: {exc.strerror}") from None
        info = inspect_document(content, "document")
        self.inspections[content] = info
        return path.name, content, info


@dataclass
class BulkPlan:
    """The outcome of the checking pass: what was wrong, and a spool of what was not."""

    path: Path
    sha256: str
    rows: int  # data rows that were not blank
    blank: int
    valid: int
    rejected: list[RowError]
    ignored_columns: tuple[str, ...]
    _spool: IO[bytes] = field(repr=False)
    _documents: _Documents = field(repr=False)

    def key(self, row: int) -> str:
        """The idempotency key of a row: the same file gives the same keys."""
        return f"bulk:{self.sha256[:16]}:{row}"

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
        found = ", ".join(n for n in names if n) or "nothing"
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
) -> tuple[str, ValidFax]:
    """The row's document key and its validated fax; raises ``ValidationError``."""
    if len(cells) > columns.width:
        raise ValidationError(
            "row", f"{len(cells)} values but the header has {columns.width} columns"
        )
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
    return document, fax


def check_csv(
    path: Path,
    *,
    document: Path | None = None,
    provider: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> BulkPlan:
    """Read and check every row of ``path``; raises ``ValidationError`` if the file as a
    whole cannot be used. ``progress`` is called now and then with the bytes read so far."""
    name = path.name
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise ValidationError(name, exc.strerror or "cannot be read") from None
    spool = tempfile.TemporaryFile(prefix="faxctl-bulk-")  # noqa: SIM115  (the plan closes it)
    try:
        with handle:
            plan = _check(handle, path, spool, document, provider, progress)
    except BaseException:
        spool.close()
        raise
    spool.seek(0)
    return plan


def _check(
    handle: BinaryIO,
    path: Path,
    spool: IO[bytes],
    document: Path | None,
    provider: str | None,
    progress: Callable[[int], None] | None,
) -> BulkPlan:
    name = path.name
    documents = _Documents(path.parent, document)
    if document is not None:
        documents.get("")  # an unusable default fails the file, not each of its rows
    lines = _HashingLines(handle, name)
    reader = csv.reader(lines)
    records = enumerate(reader, start=1)
    rejected: list[RowError] = []
    rows = blank = valid = 0
    batch: list[_SpooledRow] = []
    try:
        header = next((record for _, record in records if any(c.strip() for c in record)), None)
        if header is None:
            raise ValidationError(name, "the file is empty: it needs a header row")
        columns = _columns(header, name, document is not None)
        for row_number, record in records:
            cells = [cell.strip() for cell in record]
            if not any(cells):
                blank += 1
                continue
            rows += 1
            try:
                doc_key, fax = _check_row(cells, columns, documents, provider)
            except ValidationError as exc:
                rejected.append(RowError(row_number, str(exc)))
                continue
            valid += 1
            batch.append(_spooled_row(row_number, doc_key, fax))
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
        path,
        lines.digest.hexdigest(),
        rows,
        blank,
        valid,
        rejected,
        columns.ignored,
        spool,
        documents,
    )


def _spooled_row(row: int, doc_key: str, fax: ValidFax) -> _SpooledRow:
    """A checked row as plain values: they pickle fast, and the document bytes stay out."""
    return row, doc_key, fax.to, fax.provider, fax.send_at, fax.metadata, fax.options


def _spooled(plan: BulkPlan) -> Iterator[list[tuple[int, ValidFax]]]:
    documents = plan._documents
    while True:
        try:
            batch: list[_SpooledRow] = pickle.load(plan._spool)
        except EOFError:
            return
        yield [
            (row, ValidFax(to, provider, (documents.get(doc_key),), send_at, metadata, options))
            for row, doc_key, to, provider, send_at, metadata, options in batch
        ]


def _submit_chunk(plan: BulkPlan, chunk: list[tuple[int, ValidFax]]) -> ChunkResult:
    items = [(plan.key(row), fax) for row, fax in chunk]
    try:
        results = submit_valid(items, publish=False)
    except IdempotencyConflict:
        # Rare: a document or default changed since an earlier run of this very file.
        # Submit row by row so only the conflicting rows are rejected.
        accepted = duplicates = 0
        rejected = []
        for (row, _), item in zip(chunk, items, strict=True):
            try:
                created = submit_valid([item], publish=False)[0].created
            except IdempotencyConflict as exc:
                rejected.append(RowError(row, f"{exc} (did a document change since?)"))
                continue
            accepted += created
            duplicates += not created
        return ChunkResult(len(chunk), accepted, duplicates, rejected)
    accepted = sum(r.created for r in results)
    return ChunkResult(len(chunk), accepted, len(results) - accepted, [])


def submit_plan(plan: BulkPlan) -> Iterator[ChunkResult]:
    """Submit the checked rows, one committed chunk at a time.

    The jobs are committed with no broker message: they are due at once and the beat tick
    dispatches them in batches. Stopping between chunks (a crash, Ctrl-C, or simply not
    iterating further) loses nothing, and a re-run of the same file skips what is done.
    """
    for chunk in _spooled(plan):
        yield _submit_chunk(plan, chunk)
