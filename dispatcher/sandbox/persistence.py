"""The sandbox's state file: read at start, written shortly after every change and at shutdown.

A real provider remembers its faxes when it restarts; with a state file the sandbox does too,
so a restarted ``faxctl up`` stack polls fax ids the sandbox still knows.

The file is a pickle of ``Store.snapshot`` (the fax records are the provider modules'
dataclasses). Pickle is acceptable because the file is the sandbox's own private state, written
and read only by it; loading a pickle runs code, so never point ``--state-file`` at a file
someone else can write. Each write goes to a temporary file in the same directory, then
``os.replace``: a killed sandbox leaves the previous snapshot or the new one, never a torn one,
and loses at most the changes of the last ``INTERVAL`` seconds.
"""

from __future__ import annotations

import logging
import os
import pickle
import tempfile
import threading
from pathlib import Path
from typing import Any, cast

from dispatcher.sandbox.state import Store

__all__ = [
    "FORMAT",
    "INTERVAL",
    "StateFileError",
    "StateWriter",
    "load_state",
    "read_state",
    "write_state",
]

log = logging.getLogger(__name__)
#: bumped when the snapshot's shape changes, so an old file is refused rather than misread
FORMAT = 1
#: seconds between snapshots while the state changes
INTERVAL = 0.5


class StateFileError(ValueError):
    """The state file exists but cannot be used."""


def read_state(path: Path) -> dict[str, Any] | None:
    """The snapshot saved in ``path``, or None when there is no file yet."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        data = pickle.loads(raw)
    except Exception as exc:  # unpickling raises many kinds; all mean the same here
        raise StateFileError(f"sandbox state file {path} is unreadable: {exc!r}") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise StateFileError(f"sandbox state file {path} is not a format {FORMAT} snapshot")
    return cast("dict[str, Any]", data["store"])  # our own snapshot: Store.snapshot()


def load_state(store: Store, path: Path) -> None:
    """Restore ``store`` from ``path`` if the file exists."""
    snapshot = read_state(path)
    if snapshot is not None:
        store.restore(snapshot)


def write_state(store: Store, path: Path) -> int:
    """Write the store's snapshot atomically; returns the store version it holds."""
    with store.lock:  # the snapshot shares live objects: pickle it before anyone changes them
        version = store.version
        data = pickle.dumps(
            {"format": FORMAT, "store": store.snapshot()}, protocol=pickle.HIGHEST_PROTOCOL
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return version


class StateWriter:
    """Writes the store to its file at most every ``interval`` seconds while it changes, and
    once more at ``stop`` (a clean shutdown loses nothing)."""

    def __init__(self, store: Store, path: Path, interval: float = INTERVAL) -> None:
        self.store = store
        self.path = path
        self.interval = interval
        self._written = store.version
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stopped.clear()
        self._thread = threading.Thread(target=self._run, name="sandbox-state", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        self._write_if_changed()

    def _run(self) -> None:
        while not self._stopped.wait(self.interval):
            self._write_if_changed()

    def _write_if_changed(self) -> None:
        if self.store.version == self._written:
            return
        try:
            self._written = write_state(self.store, self.path)
        except OSError:  # a full disk must not stop the sandbox; the next change tries again
            log.exception("sandbox: writing the state file %s failed", self.path)
