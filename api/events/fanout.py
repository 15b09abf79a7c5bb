"""One feed per API process, fanned out to every SSE and WebSocket subscription.

A single reader task follows the event store (bus/store/feed.py: LISTEN/NOTIFY wake-ups,
reads by position; the module explains why the store and not a Kafka consumer) and hands
each event to the subscriptions that may see it. Subscribers never query Postgres while
live, so 1,000 clients cost one query per batch of events, not 1,000.

Back-pressure: each subscription has a bounded queue. The reader hands out pages of at most
half a queue and lets every subscriber run between pages; a subscriber that still falls
`queue_size` events behind (its socket does not take its writes) is dropped with the reason `slow_consumer` (its queue is freed
at once) instead of slowing the others down or growing memory; it reconnects with its last
position and catches up from the store. A client that takes nothing at all stalls its
stream's writes; the connection is cut after CAIRN_EVENTS_SEND_TIMEOUT of that
(api/http/sendwatch.py), which ends the stream and frees its slot.

Hand-over from history to live, without gap or duplicate: a subscription first reads the
store itself (filtered in SQL) from its resume position up to the fan-out's `head`, the
position up to which the reader has already handed events out. When it has caught up
(`cursor >= head`), it attaches in the same synchronous step, so every later event reaches
its queue; anything at or below its cursor that still arrives (its history read may have
run ahead of the reader) is skipped by position.

Caught up: a subscription may be given `until`, the store's head when its request came
(a resume position was given). Its history read goes at least that far, even where the
reader has not read so far yet, and `caught_up` says when everything up to it has been
handed out, and `announce_caught_up` says it once per subscription: the SSE stream
(`event: caught_up`) and the WebSocket (`{"type": "caught_up", ...}`) both tell their
client then, for clients that print what is there and stop or want to know where history
ends and live begins. Without `until`, a subscription starts at `head` and is caught up
from the start.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from datetime import UTC, datetime

import asyncpg

from bus.aio import wait_event
from bus.config import metrics
from bus.config.logs import get_logger
from bus.store import feed
from bus.store.feed import FeedEvent, Selector

log = get_logger(__name__)

DELIVERY_LATENCY = metrics.EVENT_DELIVERY_LATENCY
ACTIVE = metrics.EVENT_SUBSCRIPTIONS
DROPPED = metrics.EVENT_SUBSCRIPTIONS_DROPPED

PAGE = 500  # events per history read (bounded memory per catching-up subscription)


class Dropped(Exception):
    """The server ended the subscription; `code` says why (slow_consumer, shutting_down)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Subscription:
    """One stream's view of the feed: history from the store, then live from the fan-out."""

    def __init__(
        self,
        fanout: FanOut,
        selector: Selector,
        after: int,
        transport: str,
        queue_size: int,
        until: int | None = None,
    ) -> None:
        self.fanout = fanout
        self.selector = selector
        self.cursor = after  # last position handed to the client (or skipped as not matching)
        # The store's head when the stream was asked for: up to it is "what is there".
        self.until = after if until is None else max(after, until)
        self.transport = transport
        self.queue_size = queue_size
        self.queue: deque[FeedEvent] = deque()
        self.ready = asyncio.Event()
        self.attached = False
        self.dropped: Dropped | None = None
        self.counted = False  # in the open-subscriptions gauge (from the first read on)
        self.live = False  # the last batch came from the fan-out (not from history)
        self.told_caught_up = False  # announce_caught_up has said so (it says it once)
        self._latency = DELIVERY_LATENCY.labels(transport)

    # -- called by the fan-out's reader (synchronously, one event at a time) ---------------
    def offer(self, ev: FeedEvent) -> None:
        if self.dropped is not None:
            return
        if len(self.queue) >= self.queue_size:
            self.drop(
                "slow_consumer",
                f"more than {self.queue_size} events behind; reconnect with the last position",
            )
            return
        self.queue.append(ev)
        self.ready.set()

    def drop(self, code: str, message: str) -> None:
        if self.dropped is None:
            self.dropped = Dropped(code, message)
            DROPPED.labels(code).inc()
            self.queue.clear()  # free the backlog now, whatever the client does next
            self.fanout.detach(self)
            self.ready.set()

    # -- called by the stream ---------------------------------------------------------------
    async def next(self, timeout: float | None) -> list[FeedEvent]:
        """The next events for this subscription ([] on timeout); raises Dropped."""
        if not self.counted:
            self.counted = True
            ACTIVE.labels(self.transport).inc()
        while not self.attached:
            if self.dropped is not None:
                raise self.dropped
            # Up to `until` too when the reader is not there yet: the events after the
            # reader's head that arrive once attached are skipped by position as above.
            head = max(self.fanout.head, self.until)
            if self.cursor >= head:
                self.fanout.attach(self)  # no await between the check and the attach
                break
            behind = not self.caught_up
            page = await feed.read_after(
                self.fanout.pool, self.cursor, head, self.selector, limit=PAGE
            )
            # Everything up to `head` has been scanned unless the page was full.
            self.cursor = page[-1].position if len(page) == PAGE else head
            # Returned even when empty on reaching `until`: the stream says it is caught up
            # now, not after the next live event or heartbeat.
            if page or (behind and self.caught_up):
                self.live = False
                return page
        if not self.queue and self.dropped is None:
            self.ready.clear()
            await wait_event(self.ready, timeout)
        if self.dropped is not None:
            raise self.dropped
        self.live = True
        out = []
        while self.queue:
            ev = self.queue.popleft()
            if ev.position > self.cursor:  # dedupe the hand-over by position
                out.append(ev)
                self.cursor = ev.position
        return out

    @property
    def caught_up(self) -> bool:
        """Every event up to `until` has been handed out (or skipped as not matching)."""
        return self.cursor >= self.until

    def announce_caught_up(self) -> bool:
        """True the first time it is asked once the subscription is caught up, then never:
        the stream tells its client then. Asked after writing each batch (and before the
        first), so the message follows the last event up to `until`, never precedes it."""
        if self.told_caught_up or not self.caught_up:
            return False
        self.told_caught_up = True
        return True

    def delivered(self, events: list[FeedEvent]) -> None:
        """Record the append-to-delivery latency of live events just written to the client
        (history read on a resume is not latency: it may be days old)."""
        if not self.live:
            return
        now = datetime.now(UTC)
        for ev in events:
            self._latency.observe(max(0.0, (now - ev.recorded_at).total_seconds()))

    def close(self) -> None:
        if self.dropped is None:
            self.dropped = Dropped("closed", "closed")
        self.fanout.detach(self)
        self.queue.clear()
        if self.counted:
            self.counted = False
            ACTIVE.labels(self.transport).dec()


class FanOut:
    """The API process's one reader of the event store, and its subscriptions."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        dsn: str,
        queue_size: int = 1000,
        poll_interval: float = 5.0,
        batch: int = 1000,
    ) -> None:
        self.pool = pool
        self.queue_size = queue_size
        self.poll_interval = poll_interval
        # Pages of at most half a queue, so a burst (a replay, a big append) never fills
        # the queue of a client that keeps up.
        self.page = max(1, min(batch, queue_size // 2))
        self.listener = feed.Listener(dsn, on_payload=self._on_payload)
        self.head = 0  # every event at or below it has been offered to attached subscribers
        # The highest position the store's NOTIFYs named (each append sends its last one).
        self._notified = 0
        # By owner, so an event is matched only against its owner's and the admins' streams.
        self._by_owner: dict[str | None, set[Subscription]] = {}
        self._task: asyncio.Task[None] | None = None
        self.closing = False
        # Set with `closing`, for the streams that hold no subscription to end on (a
        # WebSocket between subscriptions): they end with the same reason as the others.
        self.stopping = asyncio.Event()

    async def start(self) -> None:
        self.head = await feed.head(self.pool)
        self.listener.start()
        self._task = asyncio.create_task(self._run(), name="event-fanout")

    async def stop(self) -> None:
        self.shutdown()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.listener.stop()

    def shutdown(self) -> None:
        """End every subscription (the server is stopping): clients resume elsewhere."""
        self.closing = True
        self.stopping.set()
        for subs in list(self._by_owner.values()):
            for sub in list(subs):
                sub.drop("shutting_down", "the server is shutting down; reconnect to resume")

    def subscribe(
        self, selector: Selector, after: int | None, transport: str, until: int | None = None
    ) -> Subscription:
        """A subscription resuming after position `after` (None: live from now), caught up
        once it has handed out everything up to `until` (the store's head when asked)."""
        if self.closing:
            raise Dropped("shutting_down", "the server is shutting down")
        return Subscription(
            self,
            selector,
            self.head if after is None else after,
            transport,
            self.queue_size,
            until=None if after is None else until,
        )

    def attach(self, sub: Subscription) -> None:
        sub.attached = True
        if self.closing:  # it was catching up when the shutdown began
            sub.drop("shutting_down", "the server is shutting down; reconnect to resume")
        elif sub.dropped is None:
            self._by_owner.setdefault(sub.selector.owner, set()).add(sub)

    def detach(self, sub: Subscription) -> None:
        subs = self._by_owner.get(sub.selector.owner)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._by_owner[sub.selector.owner]

    def subscriber_count(self) -> int:
        return sum(len(s) for s in self._by_owner.values())

    async def _run(self) -> None:
        wake = self.listener.wake
        while True:
            await wait_event(wake, self.poll_interval)
            wake.clear()  # before reading: a notify during the read wakes us again
            try:
                if not self._by_owner and await self._skip_ahead():
                    continue
                while True:
                    events = await feed.read_after(self.pool, self.head, limit=self.page)
                    self._publish(events)
                    if len(events) < self.page:
                        break
                    # Let the subscribers' tasks (all made ready by this page) drain their
                    # queues before the next page: only one that could not is "slow".
                    await asyncio.sleep(0)
            except (OSError, asyncpg.PostgresError) as e:
                log.warning("event fan-out: reading the store failed, retrying", error=str(e))

    def _on_payload(self, payload: str) -> None:
        if payload.isdigit():
            self._notified = max(self._notified, int(payload))

    async def _skip_ahead(self) -> bool:
        """With no subscription attached there is no one to hand events to: move `head` to
        the store's last position instead of reading and decoding every event, which every
        API process did for each upload (issue 13). Positions become visible in commit
        order, so nothing at or below that position can still appear.

        The position comes from the wake-up itself where it can: every append NOTIFYs its
        last position from its own transaction, delivered only once it has committed, so
        that position is as safe as the store's max() and costs no query (an object PUT
        paid one, issue 13). A wake-up that names nothing newer (the LISTEN connection came
        back, or the poll's timeout) asks the store (one indexed max()). False if a
        subscription attached during that query: it caught up to the old `head` only, so
        the events after it must be read and offered as usual."""
        if self._notified > self.head:
            self.head = self._notified
            return True
        latest = await feed.head(self.pool)
        if self._by_owner:
            return False
        self.head = max(self.head, latest)
        return True

    def _publish(self, events: list[FeedEvent]) -> None:
        # Synchronous: `head` and every queue move together (see the module docstring).
        admins = self._by_owner.get(None, ())
        for ev in events:
            for sub in list(admins):
                if sub.selector.matches(ev.event):
                    sub.offer(ev)
            if ev.event.owner is not None:
                for sub in list(self._by_owner.get(ev.event.owner, ())):
                    if sub.selector.matches(ev.event):
                        sub.offer(ev)
            self.head = ev.position
