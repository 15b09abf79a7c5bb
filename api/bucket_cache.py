"""Live buckets remembered by an API process, forgotten the moment one changes.

Every object request (PUT, GET, HEAD) first needs its bucket: who owns it, whether it is
public. That is a read of the bucket's event stream, a Postgres round trip and a fold, on
every request, for something that rarely changes. So each API process keeps the live
buckets it has read (at most `maxsize`, least recently used out), and forgets one when:

- this process sent a command to it (`forget`, called by AppContext.send before and after
  the command): the next request reads what the command wrote;
- any process appended an event to its stream: a trigger on `eventstore.events` NOTIFYs
  `cairn_buckets` with the bucket's name in the appending transaction
  (migrations/0017_bucket_notify.sql), and this process LISTENs to it;
- it is older than `max_age`: bounds what a LISTEN connection that died without anyone
  noticing (a half-open TCP connection) could leave stale.

Nothing is remembered while the LISTEN is not in place (before it is up, after its
connection is lost until it is back): a change made meanwhile could not be heard, so every
read goes to the store, and everything remembered before is dropped. A read that races
with a change is not remembered either: every forget bumps `generation`, and a read keeps
its result only if the generation it started under is still current (a notification is
delivered after its transaction commits, so a read started after it sees the change).
A missing bucket is never remembered: a name created by another process is seen at once,
and requests for random names cannot fill the cache.

What this allows: another process's change reaches this one's requests when its
notification arrives (milliseconds), not at once. A request in that gap acts on the bucket
as it was just before, as a request that arrived a moment earlier would have; the rules in
api/bucket_access.py already hold for that race (a file labelled with a deleted bucket is
in no bucket; the owner check keeps a name created again from exposing older objects).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from bus.aio import BoundedLRU
from bus.store.feed import Listener
from domain.buckets import BucketState

CHANNEL = "cairn_buckets"
MAX_AGE = 5.0


class BucketCache:
    """Live buckets by name; `get(name, read)` answers from memory or calls `read`."""

    def __init__(
        self,
        dsn: str,
        *,
        maxsize: int = 10_000,
        max_age: float = MAX_AGE,
        retry_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_age = max_age
        self.generation = 0
        self.listening = False
        self._clock = clock
        self._entries: BoundedLRU[str, tuple[float, BucketState]] = BoundedLRU(maxsize)
        self.listener = Listener(
            dsn,
            retry_interval,
            CHANNEL,
            on_payload=self.forget,
            on_listening=self._set_listening,
        )

    def start(self) -> None:
        self.listener.start()

    async def stop(self) -> None:
        await self.listener.stop()

    def _set_listening(self, now: bool) -> None:
        # Either way what is held may have missed a change: drop it all.
        self.listening = now
        self._forget_all()

    def _forget_all(self) -> None:
        self.generation += 1
        self._entries = BoundedLRU(self._entries.maxsize)

    def forget(self, name: str) -> None:
        self.generation += 1
        self._entries.pop(name)

    def holds(self, name: str) -> bool:
        """Is `name` remembered (fresh or not)?"""
        return name in self._entries

    async def get(
        self, name: str, read: Callable[[], Awaitable[BucketState | None]]
    ) -> BucketState | None:
        """The live bucket `name` (None: missing or deleted), from memory when it can be."""
        held = self._entries.get(name)
        if held is not None and self._clock() - held[0] < self.max_age:
            return held[1]
        generation, started = self.generation, self._clock()
        st = await read()
        live = None if st is None or st.deleted else st
        if live is not None and self.listening and self.generation == generation:
            self._entries[name] = (started, live)
        return live
