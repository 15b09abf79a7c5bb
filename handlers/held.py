"""What a worker holds back because of an event of a newer schema version than it reads.

During a rolling upgrade (or after a rollback) the handlers meet events, and the actor
host refuses follow-up commands, of a schema version newer than this code reads
(`upgrade_in_progress`, domain.errors.NewerSchema). They are retried, never dropped, until
a process of the new version runs; nothing but time ends such a wait (another process's
upgrade), so each held thing is retried on a timer that backs off from FIRST to MOST
seconds. `Holds` keeps those timers for one worker (the event handlers, the fetch worker,
the task worker), logs the first hold of each event type and version once (as the actor
host does; not once per attempt), and counts what is held in `cairn_handler_events_held`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bus.config.logs import get_logger
from bus.config.metrics import HANDLER_EVENTS_HELD
from domain.errors import DomainError
from domain.events import RecordedEvent

log = get_logger(__name__)

UPGRADE_IN_PROGRESS = "upgrade_in_progress"
FIRST = 1.0  # seconds before the first retry of a held thing
MOST = 30.0  # ... doubling up to this
# Held things kept in memory at most (the oldest are forgotten past it: they are only
# timers, the thing itself is retried from the event store or the read model anyway).
MAX_HELD = 10_000


def upgrade_in_progress(e: BaseException) -> bool:
    """Whether `e` is the refusal (or the error) of an event of a newer schema version."""
    return isinstance(e, DomainError) and e.code == UPGRADE_IN_PROGRESS


@dataclass
class _Hold:
    delay: float  # the last wait given
    due: float  # when it may be tried again (clock seconds)


class Holds:
    """Retry timers of the things one worker holds (events, fetches, tasks), by key."""

    def __init__(
        self,
        worker: str,
        *,
        first: float = FIRST,
        most: float = MOST,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.worker = worker
        self.first, self.most, self.clock = first, most, clock
        self._held: dict[str, _Hold] = {}
        self._logged: set[tuple[str, int]] = set()
        self._gauge = HANDLER_EVENTS_HELD.labels(worker)
        self._gauge.set(0)

    def hold(self, key: str, error: DomainError, message: str, **fields: Any) -> float:
        """`key` waits for a process that reads `error`'s event: the seconds until it may be
        tried again (FIRST, then doubling to MOST). Logs `message` the first time this
        worker meets that event type and version."""
        self.prune()
        details = error.details or {}
        seen = (str(details.get("event_type")), int(details.get("stored_version") or 0))
        if seen not in self._logged:
            self._logged.add(seen)
            log.warning(message, worker=self.worker, code=error.code, **fields, **details)
        last = self._held.pop(key, None)
        delay = self.first if last is None else min(last.delay * 2, self.most)
        self._held[key] = _Hold(delay, self.clock() + delay)
        while len(self._held) > MAX_HELD:
            del self._held[next(iter(self._held))]
        self._gauge.set(len(self._held))
        return delay

    def hold_event(
        self, event: RecordedEvent, error: DomainError, message: str, **fields: Any
    ) -> float:
        """`hold` keyed by `event`'s id, its stream and version named in the log."""
        return self.hold(
            event.id, error, message, stream_id=event.stream_id, version=event.version, **fields
        )

    def attempt(self, key: str, what: str) -> Attempt:
        """One run of `key` (a `what`: "fetch", "task"); see `Attempt`."""
        return Attempt(self, key, what)

    def due(self, key: str) -> bool:
        """Whether `key` may be tried now (not held, or its wait is over)."""
        h = self._held.get(key)
        return h is None or h.due <= self.clock()

    def remaining(self, key: str) -> float:
        """Seconds until `key` may be tried again (0: now, or not held)."""
        h = self._held.get(key)
        return 0.0 if h is None else max(0.0, h.due - self.clock())

    def waiting(self) -> list[str]:
        """The keys whose wait is not over."""
        now = self.clock()
        return [k for k, h in self._held.items() if h.due > now]

    def release(self, key: str) -> None:
        """`key` went through (or ended otherwise): no longer held."""
        if self._held.pop(key, None) is not None:
            self._gauge.set(len(self._held))

    def prune(self) -> None:
        """Forget what was not tried again within MOST seconds of coming due (another
        process took it over, or it is no longer runnable here), so that the gauge counts
        only what this worker still holds."""
        stale = self.clock() - self.most
        gone = [k for k, h in self._held.items() if h.due < stale]
        for k in gone:
            del self._held[k]
        if gone:
            self._gauge.set(len(self._held))

    def __len__(self) -> int:
        return len(self._held)


class Attempt:
    """One run of a thing a worker may hold (a fetch, a task): `hold` when its stream holds
    an event of a newer schema version; `end` (in the run's `finally`) releases the thing
    unless the run held it, so that a run that went through, or ended otherwise, is no
    longer counted as held."""

    def __init__(self, holds: Holds, key: str, what: str) -> None:
        self.holds, self.key, self.what = holds, key, what
        self.held = False

    def hold(self, error: DomainError) -> float:
        """The thing waits for a process that reads `error`'s event (logged once per event
        type and version, with the thing's id under `what`): the seconds until it may be
        tried again."""
        self.held = True
        return self.holds.hold(
            self.key,
            error,
            f"{self.what} waits: its stream holds an event of a newer schema version than"
            " this process reads (upgrade in progress?); will retry",
            **{self.what: self.key},
        )

    def end(self) -> None:
        if not self.held:
            self.holds.release(self.key)
