"""Descriptors of blobs read lately, kept open for the next small read on the event loop.

Many clients reading small ranges of one popular file (a video player seeking, a
download manager's 4 KiB probes) made the local store open, fstat and close the same blob
for every request: under 200 readers of 4 KiB ranges that was about 8 % of the API's event
loop (issue 13's follow-up profile), more than the read itself. A blob never changes once
written (it is named by its sha256), so a descriptor opened for one read serves the next
ones as well.

Rules that keep this safe:
- Only the event loop uses it (the local store's page-cache reads, bus/blobs/local.py
  `_read_resident`), and each use is synchronous: no read is in progress when an entry is
  evicted and closed, so a descriptor is never closed under a read, nor reused by the OS
  for another file while a reader still holds its number. Reads in pool threads open
  their own descriptors, as before.
- Bounded: at most `capacity` descriptors (the least recently used is closed first).
- Short-lived: an entry unused for `idle` seconds is closed by a timer. A blob the
  garbage collector deletes (in another process) keeps its disk space only while a
  descriptor is open, so for `idle` seconds at most after its last read; what such a
  descriptor reads is still exactly the blob's bytes (a name is its content).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import OrderedDict
from collections.abc import Callable


class OpenBlobs:
    """sha256 -> (fd, size) of blobs read lately; event loop only (see the module)."""

    def __init__(
        self, capacity: int = 256, idle: float = 2.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._capacity = capacity
        self._idle = idle
        self._clock = clock
        # sha256 -> (fd, size, last use on the monotonic clock), least recent first.
        self._open: OrderedDict[str, tuple[int, int, float]] = OrderedDict()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_loop: asyncio.AbstractEventLoop | None = None

    def __len__(self) -> int:
        return len(self._open)

    def get(self, sha256: str, opener: Callable[[str], tuple[int, int]]) -> tuple[int, int]:
        """The blob's open descriptor and size, opened with `opener` (which may raise) if
        it is not open yet. The descriptor stays owned by this cache: never close it."""
        now = self._clock()
        entry = self._open.get(sha256)
        if entry is not None:
            self._open[sha256] = (entry[0], entry[1], now)
            self._open.move_to_end(sha256)
            return entry[0], entry[1]
        fd, size = opener(sha256)
        self._open[sha256] = (fd, size, now)
        while len(self._open) > self._capacity:
            _, (old, _, _) = self._open.popitem(last=False)
            os.close(old)
        loop = asyncio.get_running_loop()
        if self._timer is None or self._timer_loop is not loop:
            # (A timer of a loop that has ended would never fire: start one on this loop.)
            self._timer_loop = loop
            self._timer = loop.call_later(self._idle, self.sweep)
        return fd, size

    def forget(self, sha256: str) -> None:
        """Close the blob's descriptor, if open (it is being deleted)."""
        entry = self._open.pop(sha256, None)
        if entry is not None:
            os.close(entry[0])

    def close(self) -> None:
        """Close every descriptor."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._open:
            _, (fd, _, _) = self._open.popitem(last=False)
            os.close(fd)

    def sweep(self) -> None:
        """Close what was not used for `idle` seconds; come back while anything is open.
        (Run by the timer.)"""
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None
        cutoff = self._clock() - self._idle
        while self._open:
            sha256, (fd, _, used) = next(iter(self._open.items()))
            if used > cutoff:
                break  # least recent first: the rest are younger
            del self._open[sha256]
            os.close(fd)
        if self._open:
            loop = asyncio.get_running_loop()
            self._timer_loop = loop
            self._timer = loop.call_later(self._idle, self.sweep)
