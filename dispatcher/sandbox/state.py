"""In-memory sandbox state: the clock, fax timelines, the scenario cursor and the send log.

Statuses are computed lazily from the clock when read, so nothing needs a background thread
except webhook delivery, which pops due completions from ``Store.pop_due``. ``Store.snapshot``
and ``Store.restore`` carry the state across restarts (see ``persistence``); ``Store.version``
moves on every change so the snapshot writer knows when to write.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from dispatcher.sandbox.providers import PROVIDERS
from dispatcher.sandbox.scenarios import Outcome, Scenarios
from dispatcher.sandbox.traffic import RequestLog

__all__ = [
    "Clock",
    "Code",
    "Mark",
    "SendEntry",
    "Segment",
    "Store",
    "Timeline",
    "Transmission",
    "to_datetime",
]

Code = str | int


def to_datetime(moment: float) -> datetime:
    """A sandbox clock reading as an aware UTC datetime."""
    return datetime.fromtimestamp(moment, UTC)


class Clock:
    """Wall time plus an offset that ``advance`` moves forward, so tests need not sleep.

    A frozen clock only moves on ``advance``: tests that check in-progress statuses freeze it
    so a slow machine cannot skip a phase. Time never goes backwards, frozen or not.
    """

    def __init__(self) -> None:
        self._offset = 0.0
        self._frozen_at: float | None = None
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            base = time.time() if self._frozen_at is None else self._frozen_at
            return base + self._offset

    def advance(self, seconds: float) -> float:
        with self._lock:
            self._offset += seconds
            return self._offset

    def state(self) -> tuple[float, float | None]:
        """The offset and the frozen-at wall time: all a restarted clock needs to go on."""
        with self._lock:
            return self._offset, self._frozen_at

    def restore(self, offset: float, frozen_at: float | None) -> None:
        with self._lock:
            self._offset, self._frozen_at = offset, frozen_at

    def freeze(self, frozen: bool) -> None:
        with self._lock:
            if frozen and self._frozen_at is None:
                self._frozen_at = time.time()
            elif not frozen and self._frozen_at is not None:
                self._offset += self._frozen_at - time.time()
                self._frozen_at = None


@dataclass(slots=True)
class Segment:
    """A stretch of progress: ``phases`` spread evenly over ``hold``, then ``final``.

    ``stopped_at`` cuts it short (hold, cancel); a stopped segment never reaches ``final``.
    """

    started: float
    hold: float
    phases: tuple[Code, ...]
    final: Code
    stopped_at: float | None = None

    @property
    def due(self) -> float:
        return self.started + self.hold

    def events(self) -> list[tuple[Code, float]]:
        out: list[tuple[Code, float]] = []
        for i, phase in enumerate(self.phases):
            at = self.started + self.hold * i / len(self.phases)
            if i == 0 or self.stopped_at is None or at < self.stopped_at:
                out.append((phase, at))
        if self.stopped_at is None:
            out.append((self.final, self.due))
        return out


@dataclass(frozen=True, slots=True)
class Mark:
    """An explicit status change; ``informational`` ones appear in history but not as status."""

    code: Code
    at: float
    informational: bool = False

    def events(self) -> list[tuple[Code, float]]:
        return [(self.code, self.at)]


@dataclass(slots=True)
class Timeline:
    """A fax's status history, as segments and marks appended in time order."""

    entries: list[Segment | Mark] = field(default_factory=list)

    def history(self, now: float, informational: bool = True) -> list[tuple[Code, float]]:
        out: list[tuple[Code, float]] = []
        for entry in self.entries:
            if isinstance(entry, Mark) and entry.informational and not informational:
                continue
            out.extend(e for e in entry.events() if e[1] <= now)
        return out

    def status(self, now: float) -> Code:
        return self.history(now, informational=False)[-1][0]

    def changed_at(self, now: float) -> float:
        return self.history(now, informational=False)[-1][1]

    def running(self, now: float) -> Segment | None:
        """The segment still in progress at ``now``, if any."""
        last = self.entries[-1] if self.entries else None
        if isinstance(last, Segment) and last.stopped_at is None and last.due > now:
            return last
        return None

    def stop(self, now: float) -> None:
        segment = self.running(now)
        if segment is not None:
            segment.stopped_at = now


@dataclass(frozen=True, slots=True)
class Transmission:
    """One accepted transmission: the scenario outcome it drew and how long it is held."""

    outcome: Outcome
    started: float
    hold: float


@dataclass(frozen=True, slots=True)
class SendEntry:
    """One line of the send log: every transmission the sandbox accepted.

    ``pages`` is what the provider received (all files summed), so tests can tell a send of
    the whole document from one of a cut-down remainder.
    """

    provider: str
    fax_id: str
    to: str
    reference: str | None
    at: float
    attempt: int
    pages: int
    kind: str = "send"

    def to_json(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "fax_id": self.fax_id,
            "to": self.to,
            "reference": self.reference,
            "at": to_datetime(self.at).isoformat(),
            "attempt": self.attempt,
            "pages": self.pages,
            "kind": self.kind,
        }


class Store:
    """All mutable sandbox state behind one re-entrant lock.

    ``records`` holds each provider's fax records by id (the provider modules own their
    shape); ``extras`` holds per-provider registrations (hooks, webhook endpoints);
    ``requests`` logs every provider request (see ``traffic``); ``tokens`` holds the access
    tokens providers issued (wall-clock expiry), kept across resets like a real identity
    provider.
    """

    #: what ``snapshot`` holds besides the clock; ``requests`` is left out (a traffic log of
    #: this process, up to 200,000 entries, that nothing reads across a restart)
    _SAVED = ("records", "extras", "sends", "deliveries", "tokens", "_cursor", "_due", "_seq")

    def __init__(
        self, scenarios: Scenarios, clock: Clock, time_scale: float, hold_seconds: float
    ) -> None:
        self.scenarios = scenarios
        self.clock = clock
        self.time_scale = time_scale
        self.hold_seconds = hold_seconds
        self.lock = threading.RLock()
        self.wakeup = threading.Event()
        self.version = 0
        self._seq = 0
        self.records: dict[str, dict[str, Any]] = {}
        self.extras: dict[str, dict[str, Any]] = {}
        self.sends: list[SendEntry] = []
        self.requests = RequestLog()
        self.deliveries: list[dict[str, Any]] = []
        self.tokens: dict[str, float] = {}
        self._cursor: Counter[tuple[str, str]] = Counter()
        self._due: list[tuple[float, int, str, str]] = []
        self.reset()

    def reset(self) -> None:
        with self.lock:
            for provider in PROVIDERS:  # cleared in place: routers hold these dicts
                self.records.setdefault(provider, {}).clear()
                self.extras.setdefault(provider, {}).clear()
            self.sends.clear()
            self.requests.clear()
            self.deliveries.clear()
            self._cursor.clear()
            self._due.clear()
            self.version += 1

    def touch(self) -> None:
        """Note a change, after making it, so the next snapshot includes it."""
        with self.lock:
            self.version += 1

    def snapshot(self) -> dict[str, Any]:
        """Everything a restarted sandbox needs, as one picklable object.

        It shares the live objects: take it and pickle it under ``lock``.
        """
        with self.lock:
            saved = {name: getattr(self, name) for name in self._SAVED}
            return {**saved, "clock": self.clock.state()}

    def restore(self, snapshot: dict[str, Any]) -> None:
        """Replace the state with a ``snapshot``'s; the per-provider dicts are refilled in place."""
        with self.lock:
            self.reset()
            for name in ("records", "extras"):
                for provider, values in snapshot[name].items():
                    getattr(self, name).setdefault(provider, {}).update(values)
            self.sends[:] = snapshot["sends"]
            self.deliveries[:] = snapshot["deliveries"]
            self.tokens.clear()
            self.tokens.update(snapshot["tokens"])
            self._cursor.update(snapshot["_cursor"])
            self._due[:] = snapshot["_due"]
            self._seq = snapshot["_seq"]
            self.clock.restore(*snapshot["clock"])
        self.wakeup.set()

    def now(self) -> float:
        return self.clock.now()

    def transmit(
        self,
        provider: str,
        fax_id: str,
        to: str,
        reference: str | None,
        pages: int,
        kind: str = "send",
    ) -> Transmission:
        """Accept one transmission: draw the next scenario code and log the send."""
        with self.lock:
            index = self._cursor[(provider, to)]
            self._cursor[(provider, to)] += 1
            outcome = self.scenarios.outcome(provider, to, index)
            now = self.now()
            hold = outcome.hold_seconds if outcome.hold_seconds is not None else self.hold_seconds
            self.sends.append(
                SendEntry(provider, fax_id, to, reference, now, outcome.attempt, pages, kind)
            )
            return Transmission(outcome, now, hold * self.time_scale)

    def schedule(self, due: float, provider: str, fax_id: str) -> None:
        """Ask the webhook thread to look at this fax at ``due``."""
        with self.lock:
            self._seq += 1
            heapq.heappush(self._due, (due, self._seq, provider, fax_id))
        self.wakeup.set()

    def pop_due(self) -> list[tuple[str, str]]:
        now = self.now()
        with self.lock:
            out = []
            while self._due and self._due[0][0] <= now:
                _, _, provider, fax_id = heapq.heappop(self._due)
                out.append((provider, fax_id))
            return out

    def next_due(self) -> float | None:
        with self.lock:
            return self._due[0][0] if self._due else None
