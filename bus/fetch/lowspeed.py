"""The low-speed limit of URL fetches: CAIRN_FETCH_LOW_SPEED_BYTES per second over
CAIRN_FETCH_LOW_SPEED_TIME seconds, like curl's --speed-limit/--speed-time and aria2's
--lowest-speed-limit.

Why it exists: the read timeout (CAIRN_FETCH_TIMEOUT) ends an attempt whose origin sends
nothing, but an origin that trickles (a few bytes every 20 s: slow, broken or hostile)
never trips it and would hold a fetch slot (CAIRN_FETCH_CONCURRENCY, _PER_OWNER) for ever.
LowSpeed ends such an attempt as retryable (TooSlow), with the rate it measured.

No timer task: the meter is checked on each piece the origin sends. A trickle sends
pieces, so a check comes; an origin that sends nothing at all is the read timeout's job.
An attempt below the limit thus ends at most one window plus one read timeout after its
body began. The head before the body, which the meter cannot see, has a deadline of the
same length instead (head_within).

The clock counts the origin's time only: the time the worker waits for the origin's next
bytes, not the time it spends on its own (writing and fsyncing blobs, recording progress
through the broker, its own CAIRN_FETCH_RATE). A slow disk, a slow broker or a rate limit
of ours below the low-speed limit never blames the origin. Pure apart from the clock,
which tests replace.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from bus.fetch.origin import Retryable

# The window is kept as at most this many buckets (plus the one being filled), so a fast
# fetch (thousands of pieces a second) costs constant memory. A bucket counts whole while
# any of it is in the window: the rate is over-estimated by at most one bucket's bytes,
# which can only delay a trip, never cause one.
BUCKETS = 16


class TooSlow(Retryable):
    """The origin sent less than the low-speed limit over a whole window (`rate`: what it
    sent, bytes a second), or took too long over its answer's head (no rate)."""

    code = "too_slow"

    def __init__(self, message: str, rate: float | None = None) -> None:
        super().__init__(f"too_slow: {message}")
        self.rate = rate


class LowSpeed:
    """The bytes one connection's body brought over a sliding window of origin time."""

    def __init__(
        self, limit: int, window: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit = limit  # bytes per second; 0: off
        self.window = window
        self._clock = clock
        self._step = window / BUCKETS
        self._elapsed = 0.0  # origin time since the body began
        self._since: float | None = None
        self._buckets: deque[list[float]] = deque()  # [first, last, bytes], oldest first
        self._bytes = 0.0  # in the buckets

    def waiting(self) -> None:
        """The worker starts waiting for the origin's next bytes."""
        self._since = self._clock()

    def arrived(self, n: int) -> TooSlow | None:
        """`n` bytes arrived, ending the wait. TooSlow once a whole window has passed and
        the last window brought less than the limit asks of it."""
        if self._since is not None:
            self._elapsed += self._clock() - self._since
            self._since = None
        if self.limit <= 0:
            return None
        t = self._elapsed
        last = self._buckets[-1] if self._buckets else None
        if last is not None and t - last[0] < self._step:
            last[1] = t
            last[2] += n
        else:
            self._buckets.append([t, t, n])
        self._bytes += n
        while self._buckets and self._buckets[0][1] <= t - self.window:
            self._bytes -= self._buckets.popleft()[2]
        if t >= self.window and self._bytes < self.limit * self.window:
            rate = self._bytes / self.window
            return TooSlow(
                f"{rate:.0f} B/s over the last {self.window:g} s,"
                f" below the low-speed limit of {self.limit} B/s",
                rate,
            )
        return None


@asynccontextmanager
async def head_within(limit: int, read_timeout: float, window: float) -> AsyncIterator[None]:
    """Bounds the wait for an answer's head (connect, TLS, status line and headers): the
    read timeout bounds each silence only, and a head that trickles in (a byte every few
    seconds, up to the HTTP client's 100 KiB) would hold the slot for days, before any
    body the meter could measure. A deadline, not a rate: the silence the read timeout
    allows (an origin preparing its answer), then one window for the head, a few hundred
    bytes. TooSlow when it passes; nothing with the limit off (`limit` 0)."""
    if limit <= 0:
        yield
        return
    seconds = read_timeout + window
    deadline = asyncio.timeout(seconds)
    try:
        async with deadline:
            yield
    except TimeoutError:
        if deadline.expired():
            raise TooSlow(f"no complete answer head in {seconds:g} s") from None
        raise


def made_progress(gained: int, seconds: float, limit: int) -> bool:
    """Whether a failed attempt (or a segment's try) that gained `gained` bytes in
    `seconds` (since the fetch, or the segment, last gained bytes: the waits between tries
    included) made the progress that starts the count of failures in a row again.

    Only at the limit or faster on the whole (`limit` bytes a second), whatever ended the
    attempt: a trickle gains a few bytes every attempt, and so does an origin that breaks
    every connection after a few bytes (each answer too short for the meter's window);
    counting any byte, either was retried for ever, holding its fetch slot. An origin that
    starts fast and then slows down or breaks still brings the file in; one below the limit
    fails after CAIRN_FETCH_RETRIES. A rate, not a window's worth of bytes: one attempt of a
    segmented fetch holds up to CAIRN_FETCH_RETRIES + 1 tries of a trickling segment, each
    just under a window's worth, and together over it. With the limit off (0), any byte."""
    return gained > 0 and gained >= limit * seconds
