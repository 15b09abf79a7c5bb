"""When a piece's bytes are all through a request's hashes, while it is still being stored.

A tus body is stored as pieces, each its own durable blob (api/tus/appender.py,
Appender). The request's hashes (the Upload-Checksum digest, the upload's running sha256)
must see the pieces in body order, so piece N+1 may only start streaming into the store
once piece N's last byte went through them. That moment comes well before piece N is
durable: the store still has to fsync its file, rename it and fsync the directory, the
slowest part of a piece on most disks. A PieceFeed, given to the store as the put's
`also_hash`, says when that moment comes, so the next piece is hashed and written while
this one is fsynced instead of after.

The store feeds it from its threads; the piece's size is known only when its last read
has come off the socket, on the loop. Whichever comes last, the last byte fed or the size,
resolves `fed`, under a lock, with the running digest's state at the piece's end (its copy
taken there and then: the next piece's bytes go into the same running digest).
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any


class PieceFeed:
    """`update` feeds the hashes (from the store's threads); `fed` resolves, with the
    running digest's copy at the piece's end (None without one), once `end(size)` was
    called and `size` bytes went through; without any hash, at once."""

    def __init__(self, checksum: Any, running: Any) -> None:
        self._hashers = [h for h in (checksum, running) if h is not None]
        self._running = running
        self._loop = asyncio.get_running_loop()
        self.fed: asyncio.Future[Any] = self._loop.create_future()
        # Guards `_count`/`_size`/`_told` between the store's thread and the loop.
        self._lock = threading.Lock()
        self._count = 0
        self._size: int | None = None
        self._told = False
        if not self._hashers:
            # No hash to keep in order: the next piece may start at once, and the store
            # need not feed this at all (see `feeds`).
            self._told = True
            self.fed.set_result(None)

    @property
    def feeds(self) -> bool:
        """Whether the store must feed it (as the put's `also_hash`): it holds hashes."""
        return bool(self._hashers)

    def update(self, data: bytes) -> None:
        for h in self._hashers:
            h.update(data)
        with self._lock:
            self._count += len(data)
            self._check()

    def end(self, size: int) -> None:
        """The piece has all its bytes: `size` of them."""
        with self._lock:
            self._size = size
            self._check()

    def _check(self) -> None:
        if self._told or self._size is None or self._count < self._size:
            return
        self._told = True
        state = self._running.copy() if self._running is not None else None
        # From a store thread, or from the loop itself (end() after the last update):
        # call_soon_threadsafe is right for both.
        self._loop.call_soon_threadsafe(_resolve, self.fed, state)


def _resolve(fut: asyncio.Future[Any], value: Any) -> None:
    if not fut.done():  # the request may be gone
        fut.set_result(value)
