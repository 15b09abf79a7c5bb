"""Small asyncio tools every long-running loop needs, written once.

- `Backoff`: bounded exponential backoff with jitter, so processes restarted together do
  not retry in step.
- `BoundedLRU`: a dict that forgets its least recently used entries past a size; the
  actor state cache, the handlers' upload shapes and the API's shapes use it.
- `wait_event`: wait for an event at most so long, letting an outside cancellation through
  (what `asyncio.wait_for` on Python 3.11 does not always do).
- `sleep_unless_stopped`: sleep, but return as soon as `stop` is set.
- `unless_stopped`: await an awaitable, abandoning (cancelling) it when `stop` is set first;
  for calls that may block a long time (a Kafka poll, joining a group, a retried batch).
- `map_bounded`: `fn` over items, at most `limit` at once, results in the items' order.
- `GroupFlush`: group commit for statements one process sends, each caller answered when
  the batch holding its item is done (the inline blob rows, the reply NOTIFYs, the state
  cache's shared reads).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")
T = TypeVar("T")
R = TypeVar("R")


class Backoff:
    """Bounded exponential backoff: `next()` gives the delay to wait, doubling each time up
    to `maximum`; `reset()` after a success. With `jitter`, each delay is drawn from
    [delay/2, delay]."""

    def __init__(self, initial: float, maximum: float, *, jitter: bool = True) -> None:
        self.initial = initial
        self.maximum = maximum
        self.jitter = jitter
        self.current = initial

    def next(self) -> float:
        delay = self.current
        self.current = min(self.current * 2, self.maximum)
        return delay * (0.5 + random.random() / 2) if self.jitter else delay

    def reset(self) -> None:
        self.current = self.initial


class BoundedLRU(Generic[K, V]):
    """At most `maxsize` entries; reading or writing an entry makes it the most recent."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._data: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        value = self._data.get(key)
        if value is not None:
            self._data.move_to_end(key)
        return value

    def __setitem__(self, key: K, value: V) -> None:
        self._data[key] = value
        self._data.move_to_end(key)
        while len(self._data) > self.maxsize:
            self._data.popitem(last=False)

    def pop(self, key: K) -> V | None:
        return self._data.pop(key, None)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __len__(self) -> int:
        return len(self._data)

    def __iter__(self) -> Iterator[K]:
        return iter(self._data)


async def wait_event(event: asyncio.Event, timeout: float | None) -> bool:
    """Wait until `event` is set, at most `timeout` seconds (None: no limit); True if set.

    Not `asyncio.wait_for(event.wait(), timeout)`: on Python 3.11 wait_for swallows a
    cancellation that arrives in the loop steps between the event being set and the waiting
    task resuming (it returns the result instead; python/cpython#86296, fixed in 3.12 by
    building wait_for on asyncio.timeout). A loop stopped by `task.cancel()` then went on
    looping, and whoever awaited the task after cancelling it waited forever (the event
    fan-out's stop, once in about a hundred runs of its test). `asyncio.timeout` converts
    only its own cancellation into TimeoutError.
    """
    if event.is_set():
        return True
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            await event.wait()
    return event.is_set()


async def sleep_unless_stopped(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep `seconds`, returning at once when `stop` is set; True if stopped."""
    return await wait_event(stop, seconds)


class Stopped(Exception):
    """`unless_stopped` gave up on its awaitable because `stop` was set."""


async def unless_stopped(aw: Awaitable[T], stop: asyncio.Event) -> T:
    """The result of `aw`, or `Stopped` if `stop` is set first (then `aw` is cancelled and
    awaited, so nothing it holds, e.g. a transaction, outlives this call)."""
    task = asyncio.ensure_future(aw)
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
        if not task.done():
            task.cancel()
            await asyncio.wait({task})
    if task.cancelled():
        raise Stopped
    return task.result()


async def map_bounded(fn: Callable[[K], Awaitable[T]], items: Iterable[K], limit: int) -> list[T]:
    """`fn(item)` for every item, at most `limit` running at once (a pool's worth of
    connections, not thousands of waiters on it); the results in the items' order."""
    gate = asyncio.Semaphore(limit)

    async def one(item: K) -> T:
        async with gate:
            return await fn(item)

    return list(await asyncio.gather(*map(one, items)))


def _cancel(future: asyncio.Future[R]) -> None:
    future.cancel()


class GroupFlush(Generic[T, R]):
    """Items submitted while a flush is in flight go together in the next one.

    One flush in flight at a time: an item that finds none starts one at once (nothing
    waits on a quiet process), and the items that arrive during it queue and go together
    as soon as it is done (at most `max_items` per flush). So batches grow with the load
    by themselves. Why not several in flight: a batch is one statement and one commit, and
    the queue is what makes batches form; several flushes would each carry fewer items.

    `flush(batch)` runs in a task of its own, so a caller that stops waiting for its
    future (its request cancelled) neither stops its batch nor the others. Each item's
    future gets its batch's outcome: `flush`'s result, or the exception it raised. Items
    left when the task itself is cancelled (the loop closing) are handed to `abandon`
    (by default their futures are cancelled)."""

    def __init__(
        self,
        flush: Callable[[list[T]], Awaitable[R]],
        *,
        max_items: int | None = None,
        abandon: Callable[[asyncio.Future[R]], None] | None = None,
    ) -> None:
        self._run = flush
        self._max = max_items
        self._abandon = abandon or _cancel
        self._queue: list[tuple[T, asyncio.Future[R]]] = []
        self._flushing: asyncio.Task[None] | None = None

    def submit(self, item: T) -> asyncio.Future[R]:
        done: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.append((item, done))
        if self._flushing is None:
            self._flushing = asyncio.create_task(self._flush())
        return done

    @property
    def idle(self) -> bool:
        """Nothing queued and no flush in flight."""
        return self._flushing is None and not self._queue

    async def drain(self) -> None:
        """Wait for what is queued to be flushed (its outcome is in the futures)."""
        while self._flushing is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._flushing)

    async def _flush(self) -> None:
        try:
            while self._queue:
                cut = len(self._queue) if self._max is None else self._max
                batch, self._queue = self._queue[:cut], self._queue[cut:]
                try:
                    result = await self._run([item for item, _ in batch])
                except Exception as exc:
                    for _, done in batch:
                        if not done.done():
                            done.set_exception(exc)
                except BaseException:
                    self._queue[:0] = batch  # cancelled: the finally below abandons them
                    raise
                else:
                    for _, done in batch:
                        if not done.done():
                            done.set_result(result)
        finally:
            self._flushing = None
            for _, done in self._queue:
                if not done.done():
                    self._abandon(done)
            self._queue = []
