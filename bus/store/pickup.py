"""Waking a claiming worker when new work may have arrived, instead of making it poll fast.

The fetch worker and the task worker claim their work from read models (readmodel.fetches,
readmodel.tasks). Polling those every half second made a new fetch or task wait up to half
a second before anyone started it. Every append to the event store already sends
`NOTIFY cairn_events` (bus/store/eventstore.py), so a worker LISTENs on it (the reconnecting
`Listener` of bus/store/feed.py) and looks at once.

A notification arrives before the work is claimable, though: it is sent when the event is
appended, and the read-model row appears only after the relay, Kafka and the projector
(usually tens of milliseconds later). So after each notification the worker looks at once
and then again on a short schedule (`CHASE`), until that is exhausted; a notification
meanwhile starts it over. A notification starts a look no sooner than `MIN_GAP` after the previous
one, so a busy event store (hundreds of appends a second) cannot turn the loop into a busy
loop.

The safety net stays: without a notification the worker still looks every `poll_every`
seconds, which is also how it finds work nothing announces (a lease that ran out because
its worker died) or an announcement lost while the LISTEN connection reconnected (the
listener also wakes the worker whenever it (re)connects). An idle system appends nothing,
so the wake-ups cost no idle CPU.
"""

from __future__ import annotations

import asyncio
import time

from bus.aio import sleep_unless_stopped
from bus.store.feed import Listener

# Seconds between the looks that follow a notification (0.8 s in all): the read model
# usually catches up within the first few (measured: a new fetch claimed 50-100 ms after
# its request, against 100-500 ms when polling every 0.5 s); the rest cover a slow projector.
CHASE = (0.02, 0.03, 0.05, 0.1, 0.2, 0.4)
# Notifications start a look at most this often (20 a second under a stream of appends).
MIN_GAP = 0.05


class Pickup:
    """Tells a claiming loop when to look for work next: `await wait(stop)` between looks."""

    def __init__(self, dsn: str, poll_every: float) -> None:
        self.poll_every = poll_every
        self.listener = Listener(dsn) if dsn else None
        self._chase: list[float] = []
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
        """Return when it is time to look again: a notification (or `nudge`), the next step
        of the chase after one, `poll_every` seconds, `at_most` seconds, or `stop`."""
        if self.listener is None:
            await sleep_unless_stopped(stop, self._cap(self.poll_every, at_most))
            self._last_look = time.monotonic()
            return
        wake = self.listener.wake
        timeout = self._cap(self._chase[0] if self._chase else self.poll_every, at_most)
        if not wake.is_set():
            waits = {asyncio.ensure_future(wake.wait()), asyncio.ensure_future(stop.wait())}
            _, pending = await asyncio.wait(waits, timeout=timeout, return_when="FIRST_COMPLETED")
            for w in pending:
                w.cancel()
        if wake.is_set():
            # Woken soon after the previous look: wait out MIN_GAP, so that a busy event
            # store's notifications coalesce into at most one look per MIN_GAP.
            gap = self._last_look + MIN_GAP - time.monotonic()
            if gap > 0:
                await sleep_unless_stopped(stop, gap)
            wake.clear()
            self._chase = list(CHASE)
        elif self._chase:
            self._chase.pop(0)
        self._last_look = time.monotonic()

    @staticmethod
    def _cap(seconds: float, at_most: float | None) -> float:
        return max(0.0, seconds if at_most is None else min(seconds, at_most))
