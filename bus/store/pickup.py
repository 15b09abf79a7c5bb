"""Waking a claiming worker when new work may have arrived, instead of making it poll fast.

The fetch worker and the task worker claim their work from read models (readmodel.fetches,
readmodel.tasks). Polling those every half second made a new fetch or task wait up to half
a second before anyone started it. So the projector, in the very transaction that changes
one of those tables, sends `NOTIFY` on the table's channel (`FETCHES_CHANGED`,
`TASKS_CHANGED`: `Projection.announces`, projections/runner.py), and a worker LISTENs on
its own (the reconnecting `Listener` of bus/store/feed.py) and looks at once. Postgres
delivers a notification only once its transaction commits, so the row is there when the
worker looks.

Why not the event store's own `cairn_events`: every append sends it, a few hundred a second
while files stream in, and it came before the read model had the row (the worker then
looked again on a schedule until the projector caught up). Both workers looked up to 20
times a second, each look a claiming query, while uploads that concern neither of them
were under way; on their tables' channels they look only when those tables change.

A notification starts a look no sooner than `MIN_GAP` after the previous one, so a busy
table (a fetch records its progress about once a second) cannot turn the loop into a busy
loop. The safety net stays: without a notification the worker still looks every
`poll_every` seconds, which is also how it finds work nothing announces (a lease that ran
out because its worker died) or an announcement lost while the LISTEN connection
reconnected (the listener also wakes the worker whenever it (re)connects). An idle system
changes nothing, so the wake-ups cost no idle CPU.
"""

from __future__ import annotations

import asyncio
import time

from bus.aio import sleep_unless_stopped
from bus.store.feed import Listener

# The channels the projector notifies when it changed readmodel.fetches / readmodel.tasks.
FETCHES_CHANGED = "cairn_fetches_changed"
TASKS_CHANGED = "cairn_tasks_changed"
# Notifications start a look at most this often (20 a second under a stream of changes).
MIN_GAP = 0.05


class Pickup:
    """Tells a claiming loop when to look for work next: `await wait(stop)` between looks;
    woken by notifications on `channel`."""

    def __init__(self, dsn: str, poll_every: float, channel: str) -> None:
        self.poll_every = poll_every
        self.listener = Listener(dsn, channel=channel) if dsn else None
        self._last_look = float("-inf")

    def start(self) -> None:
        if self.listener is not None:
            self.listener.start()

    async def stop(self) -> None:
        if self.listener is not None:
            await self.listener.stop()

    def nudge(self) -> None:
        """Look again now (a slot of this worker came free)."""
        if self.listener is not None:
            self.listener.wake.set()

    async def wait(self, stop: asyncio.Event, at_most: float | None = None) -> None:
        """Return when it is time to look again: a notification (or `nudge`), `poll_every`
        seconds, `at_most` seconds, or `stop`."""
        if self.listener is None:
            await sleep_unless_stopped(stop, self._cap(self.poll_every, at_most))
            self._last_look = time.monotonic()
            return
        wake = self.listener.wake
        timeout = self._cap(self.poll_every, at_most)
        if not wake.is_set():
            waits = {asyncio.ensure_future(wake.wait()), asyncio.ensure_future(stop.wait())}
            _, pending = await asyncio.wait(waits, timeout=timeout, return_when="FIRST_COMPLETED")
            for w in pending:
                w.cancel()
        if wake.is_set():
            # Woken soon after the previous look: wait out MIN_GAP, so that a busy table's
            # notifications coalesce into at most one look per MIN_GAP.
            gap = self._last_look + MIN_GAP - time.monotonic()
            if gap > 0:
                await sleep_unless_stopped(stop, gap)
            wake.clear()
        self._last_look = time.monotonic()

    @staticmethod
    def _cap(seconds: float, at_most: float | None) -> float:
        return max(0.0, seconds if at_most is None else min(seconds, at_most))
